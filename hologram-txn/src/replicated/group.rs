//! [`ReplicatedParticipant`]: a shard group in this process, behind the
//! [`Participant`] seam.

use super::machine::{group_claims, Endorsement, ShardMachine};
use crate::participant::ParticipantCore;
use crate::receipts::{Group, GroupProof, Proof};
use crate::transaction::Participant;
use crate::wire::Refusal;
use crate::{Decision, Key, PrepareRequest, SignedReceipt, TxnError, TxnId, TxnMessage};
use async_trait::async_trait;
use futures::lock::Mutex;
use hologram_consensus::{
    Batch, Certificate, Command, CommandId, ConsensusError, ConsensusResult, HeightStatus,
    Proposal, ReceiptConsensus, ReplicatedStateMachine, Validator, ValidatorSet, Vote,
};
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Purpose, Receipt, Signature};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How many rounds one call proposes its command before it gives up with
/// a retryable [`TxnError::Transport`].
pub const MAX_ROUNDS: usize = 16;

/// How a group member behaves when it answers (tests model Byzantine
/// members with the last three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberBehaviour {
    /// Applies every decided command and endorses its true output.
    Honest,
    /// Applies, but never answers.
    Silent,
    /// Applies, but endorses a forged output (a refusal of every request)
    /// and answers reads with a forged value.
    Lying,
    /// Applies and endorses the true output, but signs each receipt claimed
    /// in the group's name for the wrong purpose (a vote as a commit, a
    /// decision or acknowledgement as a prepare).
    Forging,
}

/// One member of a shard group: its keys and its replica of the machine.
#[derive(Debug)]
pub struct GroupMember {
    keys: KeyPair,
    /// The machine it started from: a restart replays the certified log
    /// from it.
    initial: ShardMachine,
    machine: ReplicatedStateMachine<ShardMachine>,
    outputs: HashMap<CommandId, Option<TxnMessage>>,
    behaviour: MemberBehaviour,
}

impl GroupMember {
    /// A member with `keys` (a member of `set`) starting from `core`.
    pub fn new(
        keys: KeyPair,
        set: ValidatorSet,
        core: ParticipantCore,
        behaviour: MemberBehaviour,
    ) -> Self {
        let initial = ShardMachine::new(core);
        GroupMember {
            keys,
            machine: ReplicatedStateMachine::new(initial.clone(), set),
            initial,
            outputs: HashMap::new(),
            behaviour,
        }
    }

    /// This member after a restart: its keys and behaviour, back at its
    /// initial state with nothing applied.
    fn restarted(&self, set: ValidatorSet) -> Self {
        GroupMember {
            keys: self.keys.clone(),
            machine: ReplicatedStateMachine::new(self.initial.clone(), set),
            initial: self.initial.clone(),
            outputs: HashMap::new(),
            behaviour: self.behaviour,
        }
    }

    /// The member's id.
    pub fn id(&self) -> NodeId {
        self.keys.node_id()
    }

    /// Its replica of the shard machine.
    pub fn machine(&self) -> &ReplicatedStateMachine<ShardMachine> {
        &self.machine
    }

    /// Applies newly decided heights, remembering each command's output
    /// (a command decided again is skipped by the machine; its first output
    /// stands).
    fn apply(&mut self, decisions: &[hologram_consensus::Decision]) -> Result<(), TxnError> {
        for decision in decisions {
            let applied = self
                .machine
                .apply_decision(decision)
                .map_err(|e| TxnError::Transport(format!("decided height refused: {e}")))?;
            for done in applied {
                self.outputs.insert(done.entry.command, done.output);
            }
        }
        Ok(())
    }

    /// The member's answer to a read of `key`, as its behaviour has it.
    fn read(&self, key: &Key) -> Option<Option<Vec<u8>>> {
        let value = self.machine.state().value(key).map(<[u8]>::to_vec);
        match self.behaviour {
            MemberBehaviour::Honest | MemberBehaviour::Forging => Some(value),
            MemberBehaviour::Silent => None,
            MemberBehaviour::Lying => Some(Some(b"forged by a lying member".to_vec())),
        }
    }

    /// The member's endorsement of `command`'s output, as its behaviour has it.
    fn endorse(&self, group: NodeId, command: &Command) -> Option<Endorsement> {
        let output = self.outputs.get(&command.id())?.clone();
        let output = match self.behaviour {
            MemberBehaviour::Honest | MemberBehaviour::Forging => output,
            MemberBehaviour::Silent => return None,
            MemberBehaviour::Lying => {
                let txn = output.as_ref().and_then(TxnMessage::txn)?;
                Some(TxnMessage::Refused {
                    txn,
                    refusal: Refusal::Invalid("forged by a lying member".into()),
                })
            }
        };
        let mut endorsement = Endorsement::sign(&self.keys, group, command, output).ok()?;
        if self.behaviour == MemberBehaviour::Forging {
            let mut output = endorsement.output.clone();
            let claims = output
                .as_mut()
                .map(|m| group_claims(m, &group))
                .unwrap_or_default();
            endorsement.shares = claims
                .into_iter()
                .map(|(purpose, s)| {
                    let wrong = match purpose {
                        Purpose::Prepare => Purpose::Commit,
                        _ => Purpose::Prepare,
                    };
                    self.keys.sign(wrong, &s.receipt.to_canonical_bytes())
                })
                .collect();
        }
        Some(endorsement)
    }
}

/// How many rounds in a row a proposer may fail before the next live
/// member takes over.
pub const FAILOVER_AFTER: usize = 4;

/// A validator that can be switched off (its member crashed).
struct Gate {
    inner: Arc<dyn Validator>,
    down: AtomicBool,
}

impl Gate {
    fn check(&self) -> Result<(), ConsensusError> {
        match self.down.load(Ordering::Relaxed) {
            true => Err(ConsensusError::Log(format!(
                "validator {} is down",
                self.inner.id()
            ))),
            false => Ok(()),
        }
    }
}

#[async_trait]
impl Validator for Gate {
    fn id(&self) -> NodeId {
        self.inner.id()
    }

    async fn prepare_vote(&self, proposal: &Proposal) -> Result<Vote, ConsensusError> {
        self.check()?;
        self.inner.prepare_vote(proposal).await
    }

    async fn commit(
        &self,
        proposal: &Proposal,
        polka: &Certificate,
    ) -> Result<Vote, ConsensusError> {
        self.check()?;
        self.inner.commit(proposal, polka).await
    }

    async fn finalize(
        &self,
        decision: &hologram_consensus::Decision,
    ) -> Result<(), ConsensusError> {
        self.check()?;
        self.inner.finalize(decision).await
    }

    async fn status(&self, height: u64) -> Result<HeightStatus, ConsensusError> {
        self.check()?;
        self.inner.status(height).await
    }
}

struct GroupState {
    consensus: ReceiptConsensus<Arc<dyn Validator>>,
    /// The member whose keys propose.
    proposer: usize,
    gates: Vec<Arc<Gate>>,
    members: Vec<GroupMember>,
    /// Every decided height, in order (across proposers).
    log: Vec<hologram_consensus::Decision>,
    /// How many of the current proposer's decisions are in `log`.
    taken: usize,
}

impl GroupState {
    /// Moves the current proposer's new decisions into the log.
    fn sync_log(&mut self) {
        let fresh = self
            .consensus
            .decisions()
            .get(self.taken..)
            .unwrap_or_default();
        self.log.extend_from_slice(fresh);
        self.taken = self.consensus.decisions().len();
    }

    /// The next live member takes over proposing at the next height, after
    /// learning from the validators what its predecessor left (a decided
    /// height is adopted, a locked value re-proposed).
    async fn fail_over(&mut self, set: &ValidatorSet) -> Result<(), TxnError> {
        self.sync_log();
        let n = self.members.len();
        let next = (1..=n)
            .map(|i| (self.proposer + i) % n)
            .find(|&i| self.members[i].behaviour != MemberBehaviour::Silent)
            .ok_or_else(|| TxnError::Transport("every member of the group is down".into()))?;
        let validators = self
            .gates
            .iter()
            .map(|g| Arc::clone(g) as Arc<dyn Validator>)
            .collect();
        let keys = self.members[next].keys.clone();
        self.consensus =
            ReceiptConsensus::new(keys, set.clone(), validators, self.log.len() as u64)
                .map_err(|e| TxnError::Transport(format!("consensus: {e}")))?;
        self.consensus.catch_up().await;
        self.proposer = next;
        self.taken = 0;
        Ok(())
    }
}

/// A shard run by a replicated group of `n = 3f + 1` validators, as a
/// [`Participant`] (see the [module docs](super)).
///
/// Each call becomes one command, ordered by the group's
/// [`ReceiptConsensus`] (a decision needs `2f + 1` validators' precommits),
/// applied by every member's [`ReplicatedStateMachine`] (which checks the
/// commit certificate), and answered only when `f + 1` distinct members
/// endorsed the same output with their own signatures: at least one of them
/// is honest, so the answer is what the group's deterministic machine
/// returned. Calls are serialized (one command per height).
pub struct ReplicatedParticipant {
    id: NodeId,
    /// The members, as the group's id is made of them.
    shard_group: Group,
    set: ValidatorSet,
    group: Mutex<GroupState>,
}

impl ReplicatedParticipant {
    /// A group with validator set `set`: `members` apply what is decided,
    /// `validators` (one per member, in the same order) vote, and the first
    /// member proposes (the next live one takes over when it fails, see
    /// [`FAILOVER_AFTER`]). `members` must all be members of `set`,
    /// distinct, and start from equal cores signing as the
    /// [`Group`] of `set`'s validators (whose id is this participant's id).
    pub fn new(
        set: ValidatorSet,
        validators: Vec<Arc<dyn Validator>>,
        members: Vec<GroupMember>,
    ) -> Result<Self, TxnError> {
        let shard_group = Group::new(set.validators().to_vec())?;
        let id = shard_group.id();
        if members.is_empty() {
            return Err(TxnError::Empty("member list"));
        }
        let mut seen = BTreeSet::new();
        for m in &members {
            let member = m.id();
            if !set.contains(&member) || !seen.insert(member) {
                return Err(TxnError::Decode {
                    what: "shard group",
                    reason: format!("member {member} is not a distinct validator of the set"),
                });
            }
            if m.machine.state().core().id() != id {
                return Err(TxnError::Decode {
                    what: "shard group",
                    reason: "a member's core does not sign as the group of the validators".into(),
                });
            }
        }
        if validators.len() != members.len()
            || validators
                .iter()
                .zip(&members)
                .any(|(v, m)| v.id() != m.id())
        {
            return Err(TxnError::Decode {
                what: "shard group",
                reason: "not one validator per member, in the members' order".into(),
            });
        }
        let gates: Vec<Arc<Gate>> = validators
            .into_iter()
            .map(|inner| {
                Arc::new(Gate {
                    inner,
                    down: AtomicBool::new(false),
                })
            })
            .collect();
        let asked = gates
            .iter()
            .map(|g| Arc::clone(g) as Arc<dyn Validator>)
            .collect();
        let proposer = members[0].keys.clone();
        let consensus = ReceiptConsensus::new(proposer, set.clone(), asked, 0)
            .map_err(|e| TxnError::Transport(format!("consensus: {e}")))?;
        Ok(ReplicatedParticipant {
            id,
            shard_group,
            set,
            group: Mutex::new(GroupState {
                consensus,
                proposer: 0,
                gates,
                members,
                log: Vec::new(),
                taken: 0,
            }),
        })
    }

    /// The group's validator set.
    pub fn validators(&self) -> &ValidatorSet {
        &self.set
    }

    /// Member `index` crashes, losing everything it held in memory, and
    /// restarts: its machine is rebuilt from the initial state by applying
    /// the group's certified log again (each certificate checked), which is
    /// all a member needs to make durable.
    pub async fn restart_member(&self, index: usize) -> Result<(), TxnError> {
        let mut group = self.group.lock().await;
        group.sync_log();
        let GroupState { members, log, .. } = &mut *group;
        let member = members.get_mut(index).ok_or(TxnError::Decode {
            what: "member index",
            reason: format!("no member {index}"),
        })?;
        let mut fresh = member.restarted(self.set.clone());
        fresh.apply(log)?;
        *member = fresh;
        Ok(())
    }

    /// The member whose keys propose now.
    pub async fn proposer(&self) -> NodeId {
        let group = self.group.lock().await;
        group.members[group.proposer].id()
    }

    /// Member `index` crashes and stays down: its validator fails every
    /// request, it answers nothing, and if it was proposing, the next live
    /// member takes over. `f` members down leave the group working.
    pub async fn crash_member(&self, index: usize) -> Result<(), TxnError> {
        let mut group = self.group.lock().await;
        let gate = group.gates.get(index).ok_or(TxnError::Decode {
            what: "member index",
            reason: format!("no member {index}"),
        })?;
        gate.down.store(true, Ordering::Relaxed);
        group.members[index].behaviour = MemberBehaviour::Silent;
        Ok(())
    }

    /// Runs `f` on the members (to inspect their replicas).
    pub async fn with_members<R>(&self, f: impl FnOnce(&[GroupMember]) -> R) -> R {
        f(&self.group.lock().await.members)
    }

    /// A key's committed value, as `f + 1` members answer it alike.
    pub async fn value(&self, key: &Key) -> Result<Option<Vec<u8>>, TxnError> {
        let answers: Vec<_> = self
            .with_members(|members| members.iter().filter_map(|m| m.read(key)).collect())
            .await;
        let needed = self.set.max_faulty() + 1;
        answers
            .iter()
            .find(|v| answers.iter().filter(|w| w == v).count() >= needed)
            .cloned()
            .ok_or_else(|| self.no_quorum("value", answers.len()))
    }

    fn no_quorum(&self, what: &str, got: usize) -> TxnError {
        TxnError::Transport(format!(
            "group {}: {what} endorsed by {got} members, {} needed",
            self.id,
            self.set.max_faulty() + 1
        ))
    }

    /// Orders `message` through consensus, applies it on every member and
    /// returns the output that `f + 1` members endorsed.
    pub async fn submit(&self, message: &TxnMessage) -> Result<Option<TxnMessage>, TxnError> {
        let command = Command::new(message.to_wire()?)
            .map_err(|e| TxnError::Transport(format!("command: {e}")))?;
        let batch = Batch::new(vec![command.clone()])
            .map_err(|e| TxnError::Transport(format!("batch: {e}")))?;
        let mut group = self.group.lock().await;
        let mut last = String::new();
        let mut decided = false;
        let mut failed = 0;
        for _ in 0..MAX_ROUNDS {
            let proposer_down = group.members[group.proposer].behaviour == MemberBehaviour::Silent;
            if proposer_down || failed >= FAILOVER_AFTER {
                group.fail_over(&self.set).await?;
                failed = 0;
            }
            failed += 1;
            match group.consensus.achieve_consensus(batch.clone()).await {
                // Another value, locked in an earlier round, was committed:
                // propose ours at the next height.
                ConsensusResult::Committed(r) if r != batch.receipt() => continue,
                ConsensusResult::Committed(_) => {
                    decided = true;
                    break;
                }
                other => last = format!("{other:?}"),
            }
        }
        group.sync_log();
        let GroupState { members, log, .. } = &mut *group;
        for member in members.iter_mut() {
            member.apply(
                log.get(member.machine.next_height() as usize..)
                    .unwrap_or_default(),
            )?;
        }
        if !decided {
            return Err(TxnError::Transport(format!(
                "group {}: command not decided in {MAX_ROUNDS} rounds: {last}",
                self.id
            )));
        }
        let endorsements = members
            .iter()
            .filter_map(|m| m.endorse(self.id, &command))
            .collect();
        self.agree(&command, endorsements)
    }

    /// The output endorsed by `f + 1` distinct members of the set, each
    /// endorsement's signatures checked (forged and unknown ones are
    /// ignored), with each receipt it claims in the group's name proved by
    /// a [`GroupProof`] of the `f + 1` lowest-indexed of those members'
    /// shares.
    pub fn agree(
        &self,
        command: &Command,
        endorsements: Vec<Endorsement>,
    ) -> Result<Option<TxnMessage>, TxnError> {
        let members = self.shard_group.members();
        let mut signers = BTreeSet::new();
        type Shares = Vec<(u8, Vec<Signature>)>;
        let mut tally: Vec<(Option<TxnMessage>, Shares)> = Vec::new();
        for e in endorsements {
            // `verify` checks the endorsement and every share.
            let Ok(signer) = e.verify(&self.id, command) else {
                continue;
            };
            let Ok(index) = members.binary_search(&signer) else {
                continue;
            };
            if !signers.insert(signer) {
                continue;
            }
            // A group has at most MAX_GROUP (64) members.
            let share = (index as u8, e.shares);
            match tally.iter_mut().find(|(o, _)| *o == e.output) {
                Some((_, shares)) => shares.push(share),
                None => tally.push((e.output, vec![share])),
            }
        }
        let needed = self.shard_group.needed();
        let (mut output, mut shares) = tally
            .into_iter()
            .find(|(_, shares)| shares.len() >= needed)
            .ok_or_else(|| self.no_quorum("no output", signers.len()))?;
        shares.sort_unstable_by_key(|(index, _)| *index);
        shares.truncate(needed);
        if let Some(message) = output.as_mut() {
            for (k, (_, claim)) in group_claims(message, &self.id).into_iter().enumerate() {
                claim.proof = Proof::Group(GroupProof {
                    members: members.to_vec(),
                    signatures: shares.iter().map(|(i, s)| (*i, s[k])).collect(),
                });
            }
        }
        Ok(output)
    }

    async fn ask(&self, txn: TxnId, message: TxnMessage) -> Result<TxnMessage, TxnError> {
        match self.submit(&message).await? {
            Some(TxnMessage::Refused { refusal, .. }) => Err(refusal.into_error(txn)),
            Some(reply) if reply.txn() == Some(txn) => Ok(reply),
            other => Err(unexpected(txn, other)),
        }
    }

    async fn decision(&self, txn: TxnId, message: TxnMessage) -> Result<Decision, TxnError> {
        match self.ask(txn, message).await? {
            TxnMessage::Decided { decision, .. } => Ok(decision),
            other => Err(unexpected(txn, Some(other))),
        }
    }
}

fn unexpected(txn: TxnId, reply: Option<TxnMessage>) -> TxnError {
    TxnError::Decode {
        what: "group answer",
        reason: format!("unexpected answer for {txn}: {reply:?}"),
    }
}

#[async_trait]
impl Participant for ReplicatedParticipant {
    fn id(&self) -> NodeId {
        self.id
    }

    async fn prepare(&self, request: PrepareRequest) -> Result<SignedReceipt, TxnError> {
        let txn = request.txn;
        match self.ask(txn, TxnMessage::Prepare(request)).await? {
            TxnMessage::Prepared { vote, .. } => Ok(vote),
            other => Err(unexpected(txn, Some(other))),
        }
    }

    async fn commit_one_phase(
        &self,
        request: PrepareRequest,
        expected: Receipt,
    ) -> Result<Decision, TxnError> {
        let txn = request.txn;
        let message = TxnMessage::CommitOnePhase { request, expected };
        self.decision(txn, message).await
    }

    async fn commit(&self, txn: TxnId, prepares: Vec<SignedReceipt>) -> Result<Decision, TxnError> {
        self.decision(txn, TxnMessage::Commit { txn, prepares })
            .await
    }

    async fn abort(&self, txn: TxnId) -> Result<Decision, TxnError> {
        self.decision(txn, TxnMessage::Abort { txn }).await
    }

    async fn resolve(&self, txn: TxnId, decision: Decision) -> Result<SignedReceipt, TxnError> {
        match self.ask(txn, TxnMessage::Resolve { txn, decision }).await? {
            TxnMessage::Ack { ack, .. } => Ok(ack),
            other => Err(unexpected(txn, Some(other))),
        }
    }
}
