//! BFT consensus on receipts, a replicated state machine, and Byzantine
//! detection.
//!
//! Run it with `cargo run --release --example consensus`.
//!
//! Part 1, `ReceiptConsensus` (the chapter's three phases): a proposer asks
//! four validators for signed prevotes on a batch's receipt, then for
//! precommits, and commits on 2f + 1 = 3 of them. One validator is
//! Byzantine: it answers with a signed vote for a value it made up, which
//! does not count toward the proposal's quorum, and consensus goes on. With two validators gone,
//! there is no quorum: `InsufficientVotes`, and nothing is committed.
//!
//! Part 2, `ReplicatedStateMachine`: the decisions feed a key-value machine;
//! two replicas that applied them have the same receipt chain head.
//!
//! Part 3, `ByzantineDetector`: two different signed votes for one slot make
//! an `EquivocationProof` a third party checks with nothing but the votes,
//! and a vote claiming an impossible budget (above 47) is flagged.

use futures::executor::block_on;
use hologram::consensus::HeightStatus;
use hologram::consensus::{
    Batch, ByzantineDetector, Certificate, ClientSession, Command, ConsensusError, ConsensusResult,
    Decision, LocalValidator, Offence, Proposal, ReceiptConsensus, ReplicatedStateMachine, Slot,
    StateMachine, Validator, ValidatorSet, Vote, VoteKind,
};
use hologram::lattice::transport::async_trait;
use hologram::lattice::NodeId;
use hologram::receipt::{Budget, KeyPair, Receipt};
use std::collections::BTreeMap;
use std::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A validator that signs votes for a value of its own invention, or stays
/// silent when switched off.
struct Liar {
    keys: KeyPair,
    honest: LocalValidator,
    down: AtomicBool,
}

#[async_trait]
impl Validator for Liar {
    fn id(&self) -> NodeId {
        self.keys.node_id()
    }
    async fn prepare_vote(&self, proposal: &Proposal) -> Result<Vote, ConsensusError> {
        let honest = self.honest.prepare_vote(proposal).await?;
        if self.down.load(Ordering::Relaxed) {
            return Err(ConsensusError::Log("unreachable".into()));
        }
        let forged = Receipt::from_bytes(b"a batch nobody proposed");
        Ok(Vote::sign(&self.keys, honest.slot, Some(forged)))
    }
    async fn commit(&self, p: &Proposal, polka: &Certificate) -> Result<Vote, ConsensusError> {
        self.honest.commit(p, polka).await
    }
    async fn finalize(&self, decision: &Decision) -> Result<(), ConsensusError> {
        self.honest.finalize(decision).await
    }
    async fn status(&self, height: u64) -> Result<HeightStatus, ConsensusError> {
        self.honest.status(height).await
    }
}

/// A key-value store: `set k v` commands.
#[derive(Default)]
struct Kv(BTreeMap<String, String>);

impl StateMachine for Kv {
    type Output = Option<String>;
    fn apply(&mut self, command: &Command) -> Option<String> {
        let text = String::from_utf8_lossy(command.bytes());
        let mut words = text.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("set"), Some(k), Some(v)) => self.0.insert(k.into(), v.into()),
            _ => None, // not a command this machine knows: applied as a no-op
        }
    }
    fn state_receipt(&self) -> Receipt {
        let mut bytes = Vec::new();
        for (k, v) in &self.0 {
            bytes.extend_from_slice(&(k.len() as u32).to_le_bytes());
            bytes.extend_from_slice(k.as_bytes());
            bytes.extend_from_slice(&(v.len() as u32).to_le_bytes());
            bytes.extend_from_slice(v.as_bytes());
        }
        Receipt::from_bytes(&bytes)
    }
    fn snapshot(&self) -> Result<Vec<u8>, String> {
        postcard::to_allocvec(&self.0).map_err(|e| e.to_string())
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.0 = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let keys: Vec<KeyPair> = (1..=4u8).map(|i| KeyPair::from_seed([i; 32])).collect();
    let set = ValidatorSet::new(keys.iter().map(KeyPair::node_id).collect())?;
    let liar = Arc::new(Liar {
        keys: keys[3].clone(),
        honest: LocalValidator::new(keys[3].clone(), set.clone()),
        down: AtomicBool::new(false),
    });
    // The seam is a trait: honest local validators and the liar side by side.
    let mut members: Vec<Arc<dyn Validator>> = keys[..3]
        .iter()
        .map(|k| Arc::new(LocalValidator::new(k.clone(), set.clone())) as Arc<dyn Validator>)
        .collect();
    members.push(liar.clone());

    // --- Part 1: commit on 2f + 1 ------------------------------------------
    // Commands are signed by the client that issues them; validators refuse
    // a proposal holding one whose signature fails.
    // Each client numbers its commands in its session.
    let mut client = ClientSession::new(KeyPair::from_seed([0xc1; 32]));
    let mut consensus = ReceiptConsensus::new(keys[0].clone(), set.clone(), members, 0)?;
    println!(
        "1. {} validators, f = {}, threshold {} (validator 4 is Byzantine)",
        set.len(),
        set.max_faulty(),
        consensus.threshold()
    );
    for batch in [
        ["set colour blue", "set size 3"],
        ["set colour green", "set owner ada"],
    ] {
        let commands = batch
            .iter()
            .map(|c| client.command(c.as_bytes().to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        let result = block_on(consensus.achieve_consensus(Batch::new(commands)?));
        match &result {
            ConsensusResult::Committed(receipt) => println!(
                "   height {}: Committed({}…)",
                consensus.height() - 1,
                &receipt.content.to_string()[..8]
            ),
            other => return Err(format!("expected a commit, got {other:?}").into()),
        }
    }
    println!("   validator 4's votes were for a value nobody proposed: they did not count, 3 honest ones did");

    // Take down a second validator: 2 of 4 answer, 3 are needed.
    liar.down.store(true, Ordering::Relaxed);
    let mut short_handed: Vec<Arc<dyn Validator>> = keys[..2]
        .iter()
        .map(|k| Arc::new(LocalValidator::new(k.clone(), set.clone())) as Arc<dyn Validator>)
        .collect();
    short_handed.push(liar.clone());
    let mut stalled = ReceiptConsensus::new(keys[0].clone(), set.clone(), short_handed, 0)?;
    let command = client.command(b"set colour red".to_vec())?;
    match block_on(stalled.achieve_consensus(Batch::new(vec![command])?)) {
        ConsensusResult::InsufficientVotes { got, needed, .. } => println!(
            "   with two validators gone: InsufficientVotes (got {got}, needed {needed}); nothing committed"
        ),
        other => return Err(format!("expected too few votes, got {other:?}").into()),
    }

    // --- Part 2: a replicated state machine ---------------------------------
    let replicas: Vec<ReplicatedStateMachine<Kv>> = (0..2)
        .map(|_| {
            let mut rsm = ReplicatedStateMachine::new(Kv::default(), set.clone());
            rsm.apply_all(consensus.decisions()).map(|_| rsm)
        })
        .collect::<Result<_, _>>()?;
    println!(
        "\n2. replicated state: {:?}; chain of {} transitions, heads equal: {}",
        replicas[0].state().0,
        replicas[0].applied_count(),
        replicas[0].verify_replica(&replicas[1])
    );
    assert!(replicas[0].verify_replica(&replicas[1]));

    // --- Part 3: the detector -----------------------------------------------
    let mut detector = ByzantineDetector::new(set.clone());
    let slot = Slot {
        height: 9,
        round: 0,
        kind: VoteKind::Precommit,
    };
    let one = Vote::sign(&keys[2], slot, Some(Receipt::from_bytes(b"value A")));
    let two = Vote::sign(&keys[2], slot, Some(Receipt::from_bytes(b"value B")));
    assert!(detector.check_vote(keys[2].node_id(), &one).is_ok());
    match detector.check_vote(keys[2].node_id(), &two) {
        Err(m) => match m.offence {
            Offence::Equivocation(proof) => println!(
                "\n3. equivocation: proof checks out against validator {}… with nothing but the two votes",
                &proof.verify()?.to_string()[..6]
            ),
            other => return Err(format!("expected equivocation, got {other:?}").into()),
        },
        Ok(_) => return Err("an equivocation went unnoticed".into()),
    }
    let mut greedy = Receipt::from_bytes(b"spent more than it had");
    greedy.budget = Budget::new(60)?;
    let vote = Vote::sign(
        &keys[1],
        Slot {
            height: 9,
            round: 1,
            ..slot
        },
        Some(greedy),
    );
    if let Err(m) = detector.check_vote(keys[1].node_id(), &vote) {
        println!(
            "   a vote claiming budget 60 (> 47): {:?}",
            short_offence(&m.offence)
        );
    }
    println!(
        "   detected so far: {} validators",
        detector.detected().len()
    );
    Ok(())
}

/// An offence without its (long) evidence.
fn short_offence(offence: &Offence) -> String {
    match offence {
        Offence::Equivocation(_) => "Equivocation".into(),
        Offence::ConflictingProposals(_) => "ConflictingProposals".into(),
        other => format!("{other:?}"),
    }
}
