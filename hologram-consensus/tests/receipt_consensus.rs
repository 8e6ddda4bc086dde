//! `ReceiptConsensus` over the `Validator` seam: honest validators commit;
//! one Byzantine validator of four (forging, equivocating, replaying,
//! claiming impossible budgets, voting for another value, silent) cannot
//! stop it nor get a bad vote counted; two silent ones leave too few votes;
//! a lone Byzantine leader cannot make honest validators commit a value
//! without a certificate, nor unlock them; remote validators answer over a
//! `MemoryNetwork`; a durable validator keeps its votes across a restart.

mod support;

use async_trait::async_trait;
use futures::executor::block_on;
use hologram_cam::{MemoryStore, Store};
use hologram_consensus::Lock;
use hologram_consensus::Offence;
use hologram_consensus::{
    Batch, Certificate, ConsensusError, ConsensusResult, Decision, DurableLog, HeightStatus,
    LocalValidator, Proposal, ReceiptConsensus, RemoteValidator, ReplicatedStateMachine, Validator,
    ValidatorHandler, ValidatorSet, Vote,
};
use hologram_consensus::{SignedHeader, Slot, VoteKind};
use hologram_lattice::sim::Faults;
use hologram_lattice::transport::MemoryNetwork;
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use hologram_receipt::{Budget, KeyPair, Receipt, Signature};
use std::sync::Arc;
use std::time::Duration;
use support::decided::{commands, validators, Registers};

/// What a Byzantine validator does when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trick {
    /// Votes with a garbage signature.
    Forge,
    /// Prevotes for another value, then answers the commit with a prevote
    /// for the proposal's value in the same slot (equivocation).
    Equivocate,
    /// Answers with another validator's genuine vote.
    Replay,
    /// Votes for a receipt claiming budget 50.
    ImpossibleBudget,
    /// Never answers with a vote.
    Silent,
}

struct Byzantine {
    keys: KeyPair,
    trick: Trick,
    /// An honest validator's key whose votes it replays.
    victim: KeyPair,
}

impl Byzantine {
    fn vote(&self, slot: Slot, value: Receipt) -> Result<Vote, ConsensusError> {
        match self.trick {
            Trick::Forge => {
                let mut v = Vote::sign(&self.keys, slot, Some(value));
                v.signature = Signature::from_bytes([7; 64]);
                Ok(v)
            }
            Trick::Equivocate => {
                let other = Receipt::from_bytes(b"something else");
                let prevote = Slot {
                    kind: VoteKind::Prevote,
                    ..slot
                };
                if slot.kind == VoteKind::Prevote {
                    Ok(Vote::sign(&self.keys, prevote, Some(other)))
                } else {
                    Ok(Vote::sign(&self.keys, prevote, Some(value)))
                }
            }
            Trick::Replay => Ok(Vote::sign(&self.victim, slot, Some(value))),
            Trick::ImpossibleBudget => {
                let mut r = value;
                r.budget = Budget::new(50).expect("below 96");
                Ok(Vote::sign(&self.keys, slot, Some(r)))
            }
            Trick::Silent => Err(ConsensusError::Stopped(self.keys.node_id())),
        }
    }
}

#[async_trait]
impl Validator for Byzantine {
    fn id(&self) -> NodeId {
        self.keys.node_id()
    }

    async fn prepare_vote(&self, p: &Proposal) -> Result<Vote, ConsensusError> {
        let slot = Slot {
            height: p.header.height,
            round: p.header.round,
            kind: VoteKind::Prevote,
        };
        self.vote(slot, p.header.value)
    }

    async fn commit(&self, p: &Proposal, _: &Certificate) -> Result<Vote, ConsensusError> {
        let slot = Slot {
            height: p.header.height,
            round: p.header.round,
            kind: VoteKind::Precommit,
        };
        self.vote(slot, p.header.value)
    }

    async fn finalize(&self, _: &Decision) -> Result<(), ConsensusError> {
        Ok(())
    }

    /// Claims a decision and a lock it cannot certify, and a far round
    /// (a silent one answers nothing).
    async fn status(&self, height: u64) -> Result<HeightStatus, ConsensusError> {
        if self.trick == Trick::Silent {
            return Err(ConsensusError::Stopped(self.keys.node_id()));
        }
        let fake = batch("fake");
        let slot = Slot {
            height,
            round: 0,
            kind: VoteKind::Precommit,
        };
        let own = Vote::sign(&self.keys, slot, Some(fake.receipt()));
        let thin = Certificate::from_votes(slot, fake.receipt(), &[own]);
        Ok(HeightStatus {
            next_height: height + 1,
            decided: Some(Decision {
                batch: fake.clone(),
                certificate: thin.clone(),
            }),
            locked: Some(Lock {
                batch: fake,
                proof: thin,
            }),
            last_round: Some(u32::MAX - 1),
        })
    }
}

/// Either kind of validator behind one type.
enum Member {
    Honest(Arc<LocalValidator>),
    Byzantine(Box<Byzantine>),
}

#[async_trait]
impl Validator for Member {
    fn id(&self) -> NodeId {
        match self {
            Member::Honest(v) => v.id(),
            Member::Byzantine(v) => v.id(),
        }
    }
    async fn prepare_vote(&self, p: &Proposal) -> Result<Vote, ConsensusError> {
        match self {
            Member::Honest(v) => v.prepare_vote(p).await,
            Member::Byzantine(v) => v.prepare_vote(p).await,
        }
    }
    async fn commit(&self, p: &Proposal, c: &Certificate) -> Result<Vote, ConsensusError> {
        match self {
            Member::Honest(v) => v.commit(p, c).await,
            Member::Byzantine(v) => v.commit(p, c).await,
        }
    }
    async fn finalize(&self, d: &Decision) -> Result<(), ConsensusError> {
        match self {
            Member::Honest(v) => v.finalize(d).await,
            Member::Byzantine(v) => v.finalize(d).await,
        }
    }
    async fn status(&self, h: u64) -> Result<HeightStatus, ConsensusError> {
        match self {
            Member::Honest(v) => v.status(h).await,
            Member::Byzantine(v) => v.status(h).await,
        }
    }
}

fn batch(tag: &str) -> Batch {
    Batch::new(commands(tag, 4)).expect("batch")
}

/// Validators 0..4, those in `byzantine` playing `trick`; the proposer is 0.
fn cluster(
    byzantine: &[usize],
    trick: Trick,
) -> (
    Vec<KeyPair>,
    ValidatorSet,
    Vec<Arc<LocalValidator>>,
    ReceiptConsensus<Member>,
) {
    let (keys, set) = validators();
    let mut honest = Vec::new();
    let members = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            if byzantine.contains(&i) {
                Member::Byzantine(Box::new(Byzantine {
                    keys: k.clone(),
                    trick,
                    victim: keys[(i + 1) % 4].clone(),
                }))
            } else {
                let v = Arc::new(LocalValidator::new(k.clone(), set.clone()));
                honest.push(v.clone());
                Member::Honest(v)
            }
        })
        .collect();
    let rc = ReceiptConsensus::new(keys[0].clone(), set.clone(), members, 0).expect("members");
    (keys, set, honest, rc)
}

#[test]
fn honest_validators_commit_height_after_height() {
    let (_, set, honest, mut rc) = cluster(&[], Trick::Silent);
    assert_eq!(rc.threshold(), 3);
    let mut rsm = ReplicatedStateMachine::new(Registers::default(), set.clone());
    for i in 0..5 {
        let b = batch(&format!("h{i}-"));
        let result = block_on(rc.achieve_consensus(b.clone()));
        assert_eq!(result, ConsensusResult::Committed(b.receipt()));
    }
    assert_eq!(rc.height(), 5);
    for d in rc.decisions() {
        d.verify(&set).expect("a certificate anyone can verify");
    }
    rsm.apply_all(rc.decisions()).expect("certified");
    assert_eq!(rsm.next_height(), 5);
    for v in &honest {
        assert_eq!(block_on(v.next_height()), 5);
    }
}

#[test]
fn one_byzantine_validator_of_four_is_outvoted_and_reported() {
    for trick in [
        Trick::Forge,
        Trick::Equivocate,
        Trick::Replay,
        Trick::ImpossibleBudget,
        Trick::Silent,
    ] {
        for bad in 1..4 {
            let (keys, set, _, mut rc) = cluster(&[bad], trick);
            for i in 0..2 {
                let b = batch(&format!("{trick:?}{i}-"));
                let result = block_on(rc.achieve_consensus(b.clone()));
                assert_eq!(result, ConsensusResult::Committed(b.receipt()), "{trick:?}");
            }
            let liar = keys[bad].node_id();
            for d in rc.decisions() {
                d.verify(&set).expect("valid certificate");
                assert_eq!(d.certificate.signatures.len(), 3);
                assert!(d.certificate.signatures.iter().all(|(s, _)| *s != liar));
            }
            let offences: Vec<&Offence> = rc
                .misbehaviour()
                .iter()
                .filter(|m| m.node == liar)
                .map(|m| &m.offence)
                .collect();
            match trick {
                Trick::Forge => assert!(matches!(offences[..], [Offence::InvalidSignature(_), ..])),
                Trick::ImpossibleBudget => {
                    assert!(matches!(offences[..], [Offence::ImpossibleBudget(50), ..]))
                }
                Trick::Equivocate => {
                    let proof = offences.iter().find_map(|o| match o {
                        Offence::Equivocation(p) => Some(p),
                        _ => None,
                    });
                    let proof = proof.expect("equivocation proved");
                    assert_eq!(proof.verify().expect("verifiable by anyone"), liar);
                    assert!(rc.detector().is_detected(&liar));
                }
                Trick::Replay | Trick::Silent => assert!(offences.is_empty()),
            }
        }
    }
}

#[test]
fn two_silent_validators_of_four_leave_too_few_votes() {
    let (_, _, honest, mut rc) = cluster(&[2, 3], Trick::Silent);
    let result = block_on(rc.achieve_consensus(batch("x")));
    match result {
        ConsensusResult::InsufficientVotes {
            phase,
            got,
            needed,
            refusals,
            ..
        } => {
            assert_eq!((phase, got, needed), (VoteKind::Prevote, 2, 3));
            assert_eq!(refusals.len(), 2);
        }
        other => panic!("expected too few votes, got {other:?}"),
    }
    assert_eq!(rc.height(), 0);
    assert!(rc.decisions().is_empty());
    assert_eq!(block_on(honest[0].next_height()), 0);
}

#[test]
fn locked_validators_accept_only_the_locked_value_or_a_newer_polka() {
    // Three validators lock on A in round 0 (its decision is never
    // delivered); round 1's leader can only re-propose A, with its polka.
    let (keys, set) = validators();
    let vals: Vec<Arc<LocalValidator>> = keys
        .iter()
        .map(|k| Arc::new(LocalValidator::new(k.clone(), set.clone())))
        .collect();
    let a = batch("a");
    let (_, polka, _) = lock_on(&keys, &set, &vals[..3], 0, 0, &a);
    // Round 1's leader proposes B without proof of lock: the locked refuse.
    let leader1 = index_of(&keys, set.leader(0, 1));
    let b = batch("b");
    let pb = Proposal {
        header: SignedHeader::sign(&keys[leader1], 0, 1, None, b.receipt()),
        batch: b,
        proof_of_lock: None,
    };
    for v in &vals[..3] {
        let err = block_on(v.prepare_vote(&pb)).expect_err("locked");
        assert!(err.to_string().contains("locked"), "{err}");
    }
    // Re-proposing A with its polka is accepted.
    let pa1 = Proposal {
        header: SignedHeader::sign(&keys[leader1], 0, 1, Some(0), a.receipt()),
        batch: a,
        proof_of_lock: Some(polka),
    };
    for v in &vals[..3] {
        block_on(v.prepare_vote(&pa1)).expect("locked value");
    }
}

/// `vals` prevote and precommit `batch`, proposed by the leader of
/// (`height`, `round`): the proposal, the polka and the precommits.
fn lock_on(
    keys: &[KeyPair],
    set: &ValidatorSet,
    vals: &[Arc<LocalValidator>],
    height: u64,
    round: u32,
    batch: &Batch,
) -> (Proposal, Certificate, Vec<Vote>) {
    let leader = index_of(keys, set.leader(height, round));
    let proposal = Proposal {
        header: SignedHeader::sign(&keys[leader], height, round, None, batch.receipt()),
        batch: batch.clone(),
        proof_of_lock: None,
    };
    let prevotes: Vec<Vote> = vals
        .iter()
        .map(|v| block_on(v.prepare_vote(&proposal)).expect("prevote"))
        .collect();
    let polka = Certificate::from_votes(prevotes[0].slot, batch.receipt(), &prevotes);
    let precommits = vals
        .iter()
        .map(|v| block_on(v.commit(&proposal, &polka)).expect("precommit"))
        .collect();
    (proposal, polka, precommits)
}

fn index_of(keys: &[KeyPair], id: NodeId) -> usize {
    keys.iter().position(|k| k.node_id() == id).expect("member")
}

#[test]
fn a_lone_byzantine_leader_cannot_commit_without_a_certificate() {
    let (keys, set) = validators();
    let honest: Vec<LocalValidator> = keys
        .iter()
        .map(|k| LocalValidator::new(k.clone(), set.clone()))
        .collect();
    let leader = index_of(&keys, set.leader(0, 0));
    let bad = &keys[leader];
    let a = batch("a");
    let b = batch("b");
    let pa = Proposal {
        header: SignedHeader::sign(bad, 0, 0, None, a.receipt()),
        batch: a.clone(),
        proof_of_lock: None,
    };
    // It equivocates: B to the same validators in the same slot.
    let pb = Proposal {
        header: SignedHeader::sign(bad, 0, 0, None, b.receipt()),
        batch: b.clone(),
        proof_of_lock: None,
    };
    let others: Vec<&LocalValidator> = (0..4)
        .filter(|i| *i != leader)
        .map(|i| &honest[i])
        .collect();
    let va = block_on(others[0].prepare_vote(&pa)).expect("first proposal");
    assert!(
        block_on(others[0].prepare_vote(&pb)).is_err(),
        "one prevote per slot"
    );
    // A polka of its own vote plus one honest prevote is not a polka.
    let own = Vote::sign(bad, va.slot, Some(b.receipt()));
    let vb = block_on(others[1].prepare_vote(&pb)).expect("prevote B");
    let thin = Certificate::from_votes(va.slot, b.receipt(), &[own, vb]);
    assert!(matches!(
        block_on(others[1].commit(&pb, &thin)),
        Err(ConsensusError::InsufficientSignatures { .. })
    ));
    // A "decision" without a quorum of precommits is refused.
    let pre = Slot {
        kind: VoteKind::Precommit,
        ..va.slot
    };
    let fake = Decision {
        batch: b.clone(),
        certificate: Certificate::from_votes(
            pre,
            b.receipt(),
            &[Vote::sign(bad, pre, Some(b.receipt()))],
        ),
    };
    for v in &others {
        assert!(block_on(v.finalize(&fake)).is_err());
        assert_eq!(block_on(v.next_height()), 0);
    }
    // A proposal signed by someone who does not lead the round is refused.
    let not_leader = &keys[(leader + 1) % 4];
    let wrong = Proposal {
        header: SignedHeader::sign(not_leader, 0, 0, None, b.receipt()),
        batch: b,
        proof_of_lock: None,
    };
    assert!(matches!(
        block_on(others[2].prepare_vote(&wrong)),
        Err(ConsensusError::WrongProposer { .. })
    ));
    // A batch swapped under a signed header is refused.
    let swapped = Proposal {
        batch: batch("c"),
        ..pa
    };
    assert!(matches!(
        block_on(others[2].prepare_vote(&swapped)),
        Err(ConsensusError::BatchMismatch { .. })
    ));
}

/// Local validators served on `network`, and validator 0 proposing to all
/// of them (itself included) through it, each answer awaited `timeout`.
fn remote_cluster(
    network: &MemoryNetwork,
    keys: &[KeyPair],
    set: &ValidatorSet,
    timeout: Duration,
) -> (Vec<Arc<LocalValidator>>, ReceiptConsensus<RemoteValidator>) {
    let locals: Vec<Arc<LocalValidator>> = keys
        .iter()
        .map(|k| Arc::new(LocalValidator::new(k.clone(), set.clone())))
        .collect();
    for (k, v) in keys.iter().zip(&locals) {
        network.join(k.node_id(), Arc::new(ValidatorHandler::new(v.clone())));
    }
    let client = Arc::new(network.join(
        NodeId::from_bytes([0xEE; 32]),
        Arc::new(ValidatorHandler::new(locals[0].clone())),
    ));
    let remotes: Vec<RemoteValidator> = keys
        .iter()
        .map(|k| RemoteValidator::new(k.node_id(), client.clone(), timeout))
        .collect();
    let rc = ReceiptConsensus::new(keys[0].clone(), set.clone(), remotes, 0).expect("members");
    (locals, rc)
}

#[test]
fn remote_validators_answer_over_a_memory_network() {
    let (keys, set) = validators();
    let network = MemoryNetwork::new(3);
    let (locals, mut rc) = remote_cluster(&network, &keys, &set, Duration::from_secs(5));
    for i in 0..3 {
        let b = batch(&format!("r{i}-"));
        assert_eq!(
            block_on(rc.achieve_consensus(b.clone())),
            ConsensusResult::Committed(b.receipt())
        );
    }
    for v in &locals {
        assert_eq!(block_on(v.next_height()), 3);
    }
}

#[test]
fn a_durable_validator_keeps_its_votes_across_a_restart() {
    block_on(async {
        let (keys, set) = validators();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let leader = index_of(&keys, set.leader(0, 0));
        let me = (leader + 1) % 4;
        let (log, recovered) = DurableLog::open(store.clone(), set.clone())
            .await
            .expect("open");
        let v = LocalValidator::durable(keys[me].clone(), log, recovered).expect("record");
        let a = batch("a");
        let pa = Proposal {
            header: SignedHeader::sign(&keys[leader], 0, 0, None, a.receipt()),
            batch: a.clone(),
            proof_of_lock: None,
        };
        let vote = v.prepare_vote(&pa).await.expect("prevote");
        drop(v);
        // Restarted: asked again it returns the same vote; asked for another
        // value in the same slot it refuses.
        let (log, recovered) = DurableLog::open(store.clone(), set.clone())
            .await
            .expect("open");
        let v = LocalValidator::durable(keys[me].clone(), log, recovered).expect("record");
        assert_eq!(v.prepare_vote(&pa).await.expect("same vote"), vote);
        let b = batch("b");
        let pb = Proposal {
            header: SignedHeader::sign(&keys[leader], 0, 0, None, b.receipt()),
            batch: b,
            proof_of_lock: None,
        };
        assert!(v.prepare_vote(&pb).await.is_err());
        // A decision it finalizes is in its log after another restart.
        let mut rc = ReceiptConsensus::new(
            keys[0].clone(),
            set.clone(),
            keys.iter()
                .map(|k| Arc::new(LocalValidator::new(k.clone(), set.clone())))
                .collect::<Vec<_>>(),
            0,
        )
        .expect("members");
        let c = batch("c");
        assert_eq!(
            rc.achieve_consensus(c.clone()).await,
            ConsensusResult::Committed(c.receipt())
        );
        v.finalize(&rc.decisions()[0]).await.expect("certified");
        drop(v);
        let (_, recovered) = DurableLog::open(store, set).await.expect("open");
        assert_eq!(recovered.decisions, rc.decisions().to_vec());
    });
}

#[test]
fn a_new_proposer_takes_over_what_a_failed_one_left() {
    let (keys, set) = validators();
    let vals: Vec<Arc<LocalValidator>> = keys
        .iter()
        .map(|k| Arc::new(LocalValidator::new(k.clone(), set.clone())))
        .collect();
    // Height 0: the first proposer commits A but only validator 1 hears the
    // decision before the proposer fails.
    let mut first = ReceiptConsensus::new(keys[0].clone(), set.clone(), vec![vals[1].clone()], 0)
        .expect("members");
    assert!(matches!(
        block_on(first.achieve_consensus(batch("lost"))),
        ConsensusResult::InsufficientVotes { .. }
    ));
    let a = batch("a");
    let (_, _, precommits) = lock_on(&keys, &set, &vals[..3], 0, 4, &a);
    let decided_a = Decision {
        batch: a.clone(),
        certificate: Certificate::from_votes(precommits[0].slot, a.receipt(), &precommits),
    };
    block_on(vals[1].finalize(&decided_a)).expect("certified");

    // Height 1: validators 0..3 lock on B in round 5, nobody learns a decision.
    let b = batch("b");
    lock_on(&keys, &set, &vals[..3], 1, 5, &b);

    // A new proposer (validator 3, with a Byzantine validator 2 lying about
    // what it knows) takes over at height 0.
    let members: Vec<Member> = (0..4)
        .map(|i| {
            if i == 2 {
                Member::Byzantine(Box::new(Byzantine {
                    keys: keys[2].clone(),
                    trick: Trick::Forge,
                    victim: keys[0].clone(),
                }))
            } else {
                Member::Honest(vals[i].clone())
            }
        })
        .collect();
    let mut second =
        ReceiptConsensus::new(keys[3].clone(), set.clone(), members, 0).expect("members");
    let c = batch("c");
    // It adopts A (decided), then must re-propose the locked B at height 1.
    let result = block_on(second.achieve_consensus(c.clone()));
    assert_eq!(result, ConsensusResult::Committed(b.receipt()));
    assert_eq!(second.decisions()[0], decided_a);
    assert_eq!(second.decisions()[1].batch, b);
    // Its own batch goes in the next height.
    let result = block_on(second.achieve_consensus(c.clone()));
    assert_eq!(result, ConsensusResult::Committed(c.receipt()));
    assert_eq!(second.height(), 3);
    for d in second.decisions() {
        d.verify(&set).expect("certified");
    }
}

#[test]
fn remote_validators_commit_through_loss_corruption_and_a_crash() {
    let (keys, set) = validators();
    let network = MemoryNetwork::new(11);
    network.set_faults(Faults {
        loss: 0.15,
        duplicate: 0.05,
        corrupt: 0.02,
        latency_ms: (0, 3),
    });
    let (locals, mut rc) = remote_cluster(&network, &keys, &set, Duration::from_millis(40));
    let mut attempts = 0;
    for i in 0..5 {
        if i == 3 {
            // One validator goes down for good: three still make a quorum.
            network.crash(keys[2].node_id());
        }
        let b = batch(&format!("lossy{i}-"));
        loop {
            attempts += 1;
            assert!(attempts < 300, "no progress");
            if block_on(rc.achieve_consensus(b.clone())) == ConsensusResult::Committed(b.receipt())
            {
                break;
            }
        }
    }
    // Every decision is certified, and no validator knows another value for
    // any height.
    for (h, d) in rc.decisions().iter().enumerate() {
        d.verify(&set).expect("certified");
        for v in &locals {
            let status = block_on(v.status(h as u64)).expect("local");
            if let Some(known) = status.decided {
                assert_eq!(known.batch, d.batch, "height {h}");
            }
        }
    }
    assert!(rc.height() >= 5);
}

#[test]
fn a_validator_handler_serves_each_decision_once_per_node_and_interval() {
    use hologram_consensus::{ValidatorRequest, ValidatorResponse};
    use hologram_lattice::transport::Handler;
    let (keys, set) = validators();
    let vals: Vec<Arc<LocalValidator>> = keys
        .iter()
        .map(|k| Arc::new(LocalValidator::new(k.clone(), set.clone())))
        .collect();
    let mut rc = ReceiptConsensus::new(keys[0].clone(), set.clone(), vals.clone(), 0).expect("ok");
    let a = batch("a");
    assert_eq!(
        block_on(rc.achieve_consensus(a.clone())),
        ConsensusResult::Committed(a.receipt())
    );
    let handler = ValidatorHandler::new(vals[1].clone());
    let status = |from: NodeId| {
        let ask = ValidatorRequest::Status(0).to_wire().expect("encode");
        let answer = block_on(handler.request(from, hologram_consensus::VALIDATOR_PROTOCOL, ask))
            .expect("served");
        match ValidatorResponse::from_wire(&answer).expect("decode") {
            ValidatorResponse::Status(s) => s.decided,
            other => panic!("answered {other:?}"),
        }
    };
    let (p, q) = (
        NodeId::from_bytes([0xEE; 32]),
        NodeId::from_bytes([0xEF; 32]),
    );
    let started = std::time::Instant::now();
    assert_eq!(status(p).as_ref(), Some(&rc.decisions()[0]));
    let again = status(p);
    assert_eq!(status(q).as_ref(), Some(&rc.decisions()[0]), "another node");
    // Within the interval the same node is not sent the height again.
    if started.elapsed() < Duration::from_millis(100) {
        assert_eq!(again, None);
    }
    std::thread::sleep(Duration::from_millis(110));
    assert_eq!(
        status(p).as_ref(),
        Some(&rc.decisions()[0]),
        "next interval"
    );
}
