//! [`ReplicatedParticipant`]: a shard group in this process, behind the
//! [`Participant`](crate::Participant) seam.

use super::machine::{group_claims, Endorsement, ShardMachine};
use super::member::{Ask, Member, MemberReply, MemberRequest, MAX_SYNC_DECISIONS};
use crate::participant::ParticipantCore;
use crate::receipts::{Group, GroupProof, Proof};
use crate::remote::reply_to;
use crate::wire::Refusal;
use crate::{Key, TxnError, TxnId, TxnMessage};
use async_trait::async_trait;
use futures::future::join_all;
use futures::lock::Mutex;
use hologram_consensus::{
    Batch, Certificate, Command, CommandId, ConsensusError, ConsensusResult, HeightStatus,
    Proposal, ReceiptConsensus, ReplicatedStateMachine, Validator, ValidatorSet, Vote,
};
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Purpose, Signature};
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
    /// Crashed ([`ReplicatedParticipant::crash_member`]): silent until it
    /// restarts.
    down: bool,
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
            down: false,
        }
    }

    /// This member after a restart: its keys and behaviour, up, back at
    /// its initial state with nothing applied.
    fn restarted(&self, set: ValidatorSet) -> Self {
        GroupMember {
            keys: self.keys.clone(),
            machine: ReplicatedStateMachine::new(self.initial.clone(), set),
            initial: self.initial.clone(),
            outputs: HashMap::new(),
            behaviour: self.behaviour,
            down: false,
        }
    }

    /// How it answers now: as its behaviour has it, or not at all while down.
    fn answering(&self) -> MemberBehaviour {
        match self.down {
            true => MemberBehaviour::Silent,
            false => self.behaviour,
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
    pub(super) fn apply(
        &mut self,
        decisions: &[hologram_consensus::Decision],
    ) -> Result<(), TxnError> {
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
    pub(super) fn read(&self, key: &Key) -> Option<Option<Vec<u8>>> {
        let value = self.machine.state().value(key).map(<[u8]>::to_vec);
        match self.answering() {
            MemberBehaviour::Honest | MemberBehaviour::Forging => Some(value),
            MemberBehaviour::Silent => None,
            MemberBehaviour::Lying => Some(Some(b"forged by a lying member".to_vec())),
        }
    }

    /// The member's endorsement of `command`'s output, as its behaviour has it.
    pub(super) fn endorse(&self, group: NodeId, command: &Command) -> Option<Endorsement> {
        let output = self.outputs.get(&command.id())?.clone();
        let output = match self.answering() {
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

/// A validator that can be switched off (its member crashed), whose calls
/// that fail on the transport (lost, late) are retried up to
/// [`MEMBER_ATTEMPTS`] times: a validator answers a repeated request as it
/// did the first (the same vote in a slot), so retrying is safe.
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

    /// Runs `call` on the validator, again while it fails on the transport.
    async fn retry<'a, R, F>(
        &'a self,
        call: impl Fn(&'a dyn Validator) -> F,
    ) -> Result<R, ConsensusError>
    where
        F: std::future::Future<Output = Result<R, ConsensusError>> + 'a,
    {
        let mut attempts = 0;
        loop {
            self.check()?;
            attempts += 1;
            match call(self.inner.as_ref()).await {
                Err(ConsensusError::Transport(_)) if attempts < MEMBER_ATTEMPTS => continue,
                other => return other,
            }
        }
    }
}

#[async_trait]
impl Validator for Gate {
    fn id(&self) -> NodeId {
        self.inner.id()
    }

    async fn prepare_vote(&self, proposal: &Proposal) -> Result<Vote, ConsensusError> {
        self.retry(|v| v.prepare_vote(proposal)).await
    }

    async fn commit(
        &self,
        proposal: &Proposal,
        polka: &Certificate,
    ) -> Result<Vote, ConsensusError> {
        self.retry(|v| v.commit(proposal, polka)).await
    }

    async fn finalize(
        &self,
        decision: &hologram_consensus::Decision,
    ) -> Result<(), ConsensusError> {
        self.retry(|v| v.finalize(decision)).await
    }

    async fn status(&self, height: u64) -> Result<HeightStatus, ConsensusError> {
        self.retry(|v| v.status(height)).await
    }
}

/// A member on another node (or behind the [`Member`] seam), as the
/// proposer tracks it.
struct MemberSlot {
    member: Arc<dyn Member>,
    /// The height the member is believed to apply next (its answers correct
    /// it).
    known: u64,
    /// Crashed ([`ReplicatedParticipant::crash_member`]): not asked.
    down: bool,
}

/// How many times in a row a member's request may fail (lost, late) in
/// one call before the member is counted as not answering.
pub const MEMBER_ATTEMPTS: usize = 3;

impl MemberSlot {
    /// Sends the member the decided heights it may lack, then `ask`; returns
    /// its answer, or `None` when it gave none that is not `Behind` (down,
    /// lost requests, or nothing to endorse).
    async fn sync(
        &mut self,
        group: NodeId,
        log: &[hologram_consensus::Decision],
        ask: &Ask,
    ) -> Option<MemberReply> {
        if self.down {
            return None;
        }
        let len = log.len() as u64;
        let mut from = self.known.min(len);
        let mut failures = 0;
        // Enough requests to send the whole log in chunks, and to retry.
        let limit = log.len() / MAX_SYNC_DECISIONS + 2 * MEMBER_ATTEMPTS + 2;
        for _ in 0..limit {
            let end = (from as usize)
                .saturating_add(MAX_SYNC_DECISIONS)
                .min(log.len());
            let request = MemberRequest {
                group,
                from,
                decisions: log.get(from as usize..end).unwrap_or_default().to_vec(),
                ask: ask.clone(),
            };
            match self.member.ask(request).await {
                Err(_) => {
                    failures += 1;
                    if failures >= MEMBER_ATTEMPTS {
                        return None;
                    }
                }
                Ok(MemberReply::Behind { next_height }) => {
                    // A member that claims more than the log has is lying
                    // or from another group: nothing more to send it.
                    self.known = next_height.min(len);
                    if next_height >= len || (next_height == from && end == log.len()) {
                        return None;
                    }
                    from = next_height;
                }
                Ok(reply) => {
                    self.known = self.known.max(end as u64);
                    return Some(reply);
                }
            }
        }
        None
    }
}

struct GroupState {
    consensus: ReceiptConsensus<Arc<dyn Validator>>,
    /// The keys this proposer may propose with, in failover order (every
    /// member's for a group in one process).
    proposers: Vec<KeyPair>,
    /// The index in `proposers` of the keys that propose now.
    proposer: usize,
    gates: Vec<Arc<Gate>>,
    /// The members in this process (none for a group built [`over`]
    /// members behind the [`Member`] seam).
    ///
    /// [`over`]: ReplicatedParticipant::over
    members: Vec<GroupMember>,
    /// The members behind the [`Member`] seam.
    remote: Vec<MemberSlot>,
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
        let n = self.proposers.len();
        let next = (1..=n)
            .map(|i| (self.proposer + i) % n)
            .find(|&i| self.live(i))
            .ok_or_else(|| TxnError::Transport("every member of the group is down".into()))?;
        let validators = self
            .gates
            .iter()
            .map(|g| Arc::clone(g) as Arc<dyn Validator>)
            .collect();
        let keys = self.proposers[next].clone();
        self.consensus =
            ReceiptConsensus::new(keys, set.clone(), validators, self.log.len() as u64)
                .map_err(|e| TxnError::Transport(format!("consensus: {e}")))?;
        self.consensus.catch_up().await;
        self.proposer = next;
        self.taken = 0;
        Ok(())
    }

    /// Whether proposer keys `i` belong to a member that is up: not
    /// crashed, and (in this process) not silent.
    fn live(&self, i: usize) -> bool {
        let id = self.proposers[i].node_id();
        if let Some(m) = self.members.iter().find(|m| m.id() == id) {
            return m.answering() != MemberBehaviour::Silent;
        }
        !self
            .gates
            .iter()
            .any(|g| g.inner.id() == id && g.down.load(Ordering::Relaxed))
    }
}

/// A shard run by a replicated group of `n = 3f + 1` validators, as a
/// [`Participant`](crate::Participant) (see the [module docs](super)).
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
        let id = Group::new(set.validators().to_vec())?.id();
        check_members(&set, members.iter().map(GroupMember::id))?;
        for m in &members {
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
        let proposers = members.iter().map(|m| m.keys.clone()).collect();
        Self::assemble(set, validators, proposers, members, Vec::new())
    }

    /// A group whose members and validators are anywhere — typically on
    /// other nodes, as [`RemoteMember`](super::RemoteMember)s and
    /// [`RemoteValidator`](hologram_consensus::RemoteValidator)s (see the
    /// [`member`](super::member) docs for the deployment) — driven from
    /// this node with `proposers`' keys (members of `set`, tried in order:
    /// the next takes over when one fails [`FAILOVER_AFTER`] rounds in a
    /// row).
    ///
    /// `validators` and `members` must each be distinct members of `set`;
    /// the members must start from equal cores signing as the [`Group`] of
    /// `set`'s validators (not checked here: a member that started
    /// elsewhere endorses outputs the others do not, which count only when
    /// `f + 1` members endorse one alike). The log starts at height 0: a
    /// proposer started after another one adopts the heights the
    /// validators decided (and still keep) before its first proposal
    /// ([`ReceiptConsensus::catch_up`]), and members it finds behind are
    /// sent them. Member `i` of `members` and validator `i` of
    /// `validators` are what [`crash_member`](Self::crash_member)`(i)`
    /// switches off.
    pub fn over(
        set: ValidatorSet,
        validators: Vec<Arc<dyn Validator>>,
        members: Vec<Arc<dyn Member>>,
        proposers: Vec<KeyPair>,
    ) -> Result<Self, TxnError> {
        if proposers.is_empty() {
            return Err(TxnError::Empty("proposer key list"));
        }
        check_members(&set, members.iter().map(|m| m.id()))?;
        let remote = members
            .into_iter()
            .map(|member| MemberSlot {
                member,
                known: 0,
                down: false,
            })
            .collect();
        Self::assemble(set, validators, proposers, Vec::new(), remote)
    }

    /// The group over `validators` (each behind a [`Gate`] that
    /// [`crash_member`](Self::crash_member) closes), proposing with the
    /// first of `proposers`.
    fn assemble(
        set: ValidatorSet,
        validators: Vec<Arc<dyn Validator>>,
        proposers: Vec<KeyPair>,
        members: Vec<GroupMember>,
        remote: Vec<MemberSlot>,
    ) -> Result<Self, TxnError> {
        let shard_group = Group::new(set.validators().to_vec())?;
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
        let consensus = ReceiptConsensus::new(proposers[0].clone(), set.clone(), asked, 0)
            .map_err(|e| TxnError::Transport(format!("consensus: {e}")))?;
        Ok(ReplicatedParticipant {
            id: shard_group.id(),
            shard_group,
            set,
            group: Mutex::new(GroupState {
                consensus,
                proposers,
                proposer: 0,
                gates,
                members,
                remote,
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
    /// all a member needs to make durable. A member stopped by
    /// [`crash_member`](Self::crash_member) comes back up: it answers again
    /// and its validator votes again.
    ///
    /// For a group built [`over`](Self::over) members elsewhere, the member
    /// restarts on its node; this only makes the proposer ask it again (it
    /// answers [`MemberReply::Behind`] and is sent the log).
    pub async fn restart_member(&self, index: usize) -> Result<(), TxnError> {
        let mut group = self.group.lock().await;
        if let Some(slot) = group.remote.get_mut(index) {
            slot.down = false;
            slot.known = 0;
            if let Some(gate) = group.gates.get(index) {
                gate.down.store(false, Ordering::Relaxed);
            }
            return Ok(());
        }
        group.sync_log();
        let GroupState { members, log, .. } = &mut *group;
        let member = members.get_mut(index).ok_or(TxnError::Decode {
            what: "member index",
            reason: format!("no member {index}"),
        })?;
        let mut fresh = member.restarted(self.set.clone());
        fresh.apply(log)?;
        *member = fresh;
        // Back up: its validator answers again (its voting record is kept,
        // as a durable one would be).
        if let Some(gate) = group.gates.get(index) {
            gate.down.store(false, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The member whose keys propose now.
    pub async fn proposer(&self) -> NodeId {
        let group = self.group.lock().await;
        group.proposers[group.proposer].node_id()
    }

    /// Member `index` crashes and stays down: its validator fails every
    /// request, it answers nothing, and if it was proposing, the next live
    /// member takes over. `f` members down leave the group working.
    ///
    /// For a group built [`over`](Self::over) members elsewhere, `index`
    /// is the member's (and its validator's) position in the lists given;
    /// the proposer stops asking them (the node itself crashes on its own).
    pub async fn crash_member(&self, index: usize) -> Result<(), TxnError> {
        let mut group = self.group.lock().await;
        let gate = group.gates.get(index).ok_or(TxnError::Decode {
            what: "member index",
            reason: format!("no member {index}"),
        })?;
        gate.down.store(true, Ordering::Relaxed);
        if let Some(member) = group.members.get_mut(index) {
            member.down = true;
        }
        if let Some(slot) = group.remote.get_mut(index) {
            slot.down = true;
        }
        Ok(())
    }

    /// Runs `f` on the members in this process (to inspect their replicas;
    /// none for a group built [`over`](Self::over) members elsewhere).
    pub async fn with_members<R>(&self, f: impl FnOnce(&[GroupMember]) -> R) -> R {
        f(&self.group.lock().await.members)
    }

    /// A key's committed value, as `f + 1` members answer it alike.
    pub async fn value(&self, key: &Key) -> Result<Option<Vec<u8>>, TxnError> {
        let answers: Vec<_> = {
            let mut group = self.group.lock().await;
            group.sync_log();
            let GroupState {
                members,
                remote,
                log,
                ..
            } = &mut *group;
            let mut answers: Vec<_> = members.iter().filter_map(|m| m.read(key)).collect();
            let ask = Ask::Read(key.clone());
            let replies = join_all(remote.iter_mut().map(|s| s.sync(self.id, log, &ask))).await;
            answers.extend(replies.into_iter().filter_map(|r| match r {
                Some(MemberReply::Value(v)) => Some(v),
                _ => None,
            }));
            answers
        };
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
    /// returns the output that `f + 1` members endorsed. The command is
    /// signed, as its client, with the keys proposing now.
    pub async fn submit(&self, message: &TxnMessage) -> Result<Option<TxnMessage>, TxnError> {
        let mut group = self.group.lock().await;
        let client = group
            .proposers
            .get(group.proposer)
            .ok_or(TxnError::Empty("proposer key list"))?;
        let command = Command::sign(client, message.to_wire()?)
            .map_err(|e| TxnError::Transport(format!("command: {e}")))?;
        let batch = Batch::new(vec![command.clone()])
            .map_err(|e| TxnError::Transport(format!("batch: {e}")))?;
        let mut last = String::new();
        let mut decided = false;
        let mut failed = 0;
        for _ in 0..MAX_ROUNDS {
            let proposer_down = !group.live(group.proposer);
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
        let GroupState {
            members,
            remote,
            log,
            ..
        } = &mut *group;
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
        let mut endorsements: Vec<Endorsement> = members
            .iter()
            .filter_map(|m| m.endorse(self.id, &command))
            .collect();
        let ask = Ask::Endorse(command.clone());
        let replies = join_all(remote.iter_mut().map(|s| s.sync(self.id, log, &ask))).await;
        endorsements.extend(replies.into_iter().filter_map(|r| match r {
            Some(MemberReply::Endorsed(e)) => Some(*e),
            _ => None,
        }));
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
        reply_to(txn, self.submit(&message).await?)
    }
}

crate::remote::participant_by_messages!(ReplicatedParticipant);

/// Checks that `members` is not empty and lists distinct validators of `set`.
fn check_members(
    set: &ValidatorSet,
    members: impl Iterator<Item = NodeId>,
) -> Result<(), TxnError> {
    let mut seen = BTreeSet::new();
    for member in members {
        if !set.contains(&member) || !seen.insert(member) {
            return Err(TxnError::Decode {
                what: "shard group",
                reason: format!("member {member} is not a distinct validator of the set"),
            });
        }
    }
    if seen.is_empty() {
        return Err(TxnError::Empty("member list"));
    }
    Ok(())
}
