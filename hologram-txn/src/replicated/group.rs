//! [`ReplicatedParticipant`]: a shard group behind the
//! [`Participant`](crate::Participant) seam.

use super::calls::CallSession;
use super::machine::{group_claims, Endorsement};
use super::member::{GroupMember, Member, MemberSetup};
use crate::participant::ParticipantCore;
use crate::receipts::{Group, GroupProof, Proof};
use crate::remote::reply_to;
use crate::{Key, TxnError, TxnId, TxnMessage};
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use hologram_consensus::{Command, ReplicaConfig, ValidatorSet};
use hologram_lattice::transport::{MemoryNetwork, Timer};
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Signature};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a call waits for the first `f + 1` members it asks before it
/// asks the others too.
pub const DEFAULT_PATIENCE: Duration = Duration::from_millis(200);

/// How long a call waits in all for `f + 1` matching endorsements before it
/// fails with a retryable [`TxnError::Transport`].
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// A shard run by a replicated group of `n = 3f + 1` members, as a
/// [`Participant`](crate::Participant).
///
/// Each call becomes one command signed by the participant's client key,
/// numbered in the participant's client session (a retried call of the
/// same message, before it was answered, resends the same command, which
/// the members' session tables apply at most once; one participant per
/// client key), and handed to every member's replica; the group's consensus orders it
/// (concurrent calls share heights), every member applies it, and the call
/// returns the output `f + 1` distinct members endorsed alike, each receipt
/// it claims in the group's name completed with a [`GroupProof`] of their
/// signatures. It asks `f + 1` members first (in turn, so the load is
/// spread) and the others when those do not agree within the patience.
///
/// A shard group of `n = 3f + 1` validators runs the participant logic as a
/// [`ShardMachine`](crate::ShardMachine): the deterministic [`ParticipantCore`] (locks, prepared
/// state, values, decisions) applied to commands. Every step of two-phase
/// commit — prepare, the one-phase commit, the primary's commit or abort
/// decision, resolve, query — is a command, ordered by the group's
/// consensus (its members are the validators, `2f + 1` precommits per
/// decision) and applied by every member's
/// [`ReplicatedStateMachine`](hologram_consensus::ReplicatedStateMachine),
/// which checks the commit certificate. So a primary group's decision
/// record lives in a replicated log: neither the coordinator's loss nor any
/// `f` members' loss blocks anyone (the "best" option).
///
/// **Trusting the answer.** A member's answer is its machine's output,
/// endorsed with its own signature ([`Endorsement`], for
/// `Purpose::Transition`); [`ReplicatedParticipant`] returns an output only
/// when `f + 1` distinct members endorsed the same one, so at least one
/// honest member computed it. A lying or silent member (up to `f`) changes
/// nothing; a replica that votes wrongly is refused by consensus.
///
/// **The group's identity.** Towards the rest of the protocol a group is
/// one participant, and no member holds a key for it. Its id is
/// self-certifying: `BLAKE3("hologram shard-group v1\n" ‖ n u8 ‖ the n
/// member ids ascending)` ([`group_id`](crate::receipts::group_id), `n ≤`
/// [`MAX_GROUP`](crate::receipts::MAX_GROUP)). The group's
/// [`ShardMachine`](crate::ShardMachine) runs a core that signs as that
/// [`Group`](crate::receipts::Group) ([`Signer::Group`](crate::Signer::Group)):
/// its prepare votes, decisions and acknowledgements carry the group id as
/// signer and a [`GroupProof`](crate::receipts::GroupProof) with no
/// signature yet, so every replica computes the same output without a
/// secret. Each member's [`Endorsement`] adds its own signature of every
/// such receipt, for the purpose that receipt needs ([`group_claims`]);
/// [`ReplicatedParticipant::agree`] takes the output `f + 1` members
/// endorsed and completes each receipt's proof with `f + 1` of their
/// checked signatures. The coordinator and other participants — groups or
/// single-replica shards, mixed in one transaction — then verify it as any
/// [`SignedReceipt`](crate::SignedReceipt). A Byzantine member signing a
/// vote or decision in the group's name outside consensus has one
/// signature of the `f + 1` needed, and is refused
/// ([`TxnError::TooFewSignatures`]); a single signature claiming the group
/// id verifies under no key ([`TxnError::BadSignature`]).
///
/// A group's core does not hand keys off ([`crate::Transfer`] transfers are
/// signed by one node's keys): asked to, it refuses with
/// [`TxnError::InvalidHandOff`]. Hand-offs between groups are not built yet.
///
/// **Recovery.** The core's timers (a primary's unilateral abort, a
/// secondary's question) are not deterministic across replicas, so a group
/// does not run them; their work is a command anyone may submit: [`settle`](crate::settle)
/// asks the primary group to abort (which returns the decision already made,
/// commit included, if there is one) and resolves the prepared group with
/// it. A transaction whose coordinator crashed at any step is thereby
/// completed or aborted everywhere.
///
/// **Members are replicas.** Each member is a consensus
/// [`Replica`](hologram_consensus::Replica) of the group's validator set,
/// run by a [`ReplicaDriver`](hologram_consensus::ReplicaDriver) over a
/// `Transport` (with a [`DurableLog`](hologram_consensus::DurableLog) when
/// given a store), its decisions applied to its
/// [`ReplicatedStateMachine<ShardMachine>`](hologram_consensus::ReplicatedStateMachine)
/// ([`GroupMember`]). Everything consensus needs is the replica's: leaders
/// rotate and a failed round changes leader (no proposer to fail over),
/// heights are pipelined and batched (concurrent transactions share them),
/// a member that restarts recovers its log from its store and fetches what
/// it missed from its peers (catch-up, each certificate verified).
///
/// **Calls.** [`ReplicatedParticipant`] signs each 2PC step as a
/// [`Command`](hologram_consensus::Command) with its client key, hands it
/// to every member ([`Member::submit`]), and gathers endorsements
/// ([`Member::endorse`], which waits until the member applied the command)
/// until `f + 1` agree. The [`Member`] seam is what it asks: a
/// [`GroupMember`] in this process, or a wrapper of one (tests model silent,
/// lying and forging members that way, in `tests/support`).
///
/// **Where it runs.** [`ReplicatedParticipant::in_process`] runs a whole
/// group in this process, its members over a [`MemoryNetwork`] of their
/// own, each on a thread; [`GroupMember::start`] returns a member and the
/// future that runs it, for any executor and transport. A coordinator on
/// another node reaches the group through a
/// [`ParticipantService`](crate::ParticipantService) serving the
/// [`ReplicatedParticipant`] (`crate::TXN_CALL_PROTOCOL`), as any participant.
///
/// Not built yet: members on other nodes than the participant's (a member's
/// endorsements over a transport), log compaction (a replica replays its
/// log from height 0 on a restart), hand-offs of keys to or from a group.
///
/// [`MemoryNetwork`]: hologram_lattice::transport::MemoryNetwork
/// [`ParticipantCore`]: crate::ParticipantCore
pub struct ReplicatedParticipant {
    id: NodeId,
    /// The members, as the group's id is made of them.
    group: Group,
    client: CallSession,
    members: Vec<Arc<dyn Member>>,
    timer: Timer,
    patience: Duration,
    timeout: Duration,
    next: AtomicUsize,
    /// The members this participant started and stops when dropped.
    local: Vec<Arc<GroupMember>>,
}

impl core::fmt::Debug for ReplicatedParticipant {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplicatedParticipant")
            .field("id", &self.id)
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl ReplicatedParticipant {
    /// The [`Group`] of these members' keys: a group's core signs as it
    /// (`ParticipantCore::new(group, ...)`), and its id is the group's
    /// participant id.
    pub fn group_of(members: &[KeyPair]) -> Result<Group, TxnError> {
        Group::new(members.iter().map(KeyPair::node_id).collect())
    }

    /// The participant of `group`, asking `members` (distinct members of
    /// the group, typically all of them) and signing its commands with
    /// `client`'s keys; `timer` times its waits.
    pub fn new(
        group: Group,
        client: KeyPair,
        members: Vec<Arc<dyn Member>>,
        timer: Timer,
    ) -> Result<Self, TxnError> {
        let mut seen = BTreeSet::new();
        for member in &members {
            let id = member.id();
            if group.members().binary_search(&id).is_err() || !seen.insert(id) {
                return Err(TxnError::Decode {
                    what: "shard group",
                    reason: format!("member {id} is not a distinct member of the group"),
                });
            }
        }
        if members.is_empty() {
            return Err(TxnError::Empty("member list"));
        }
        Ok(ReplicatedParticipant {
            id: group.id(),
            group,
            client: CallSession::new(client),
            members,
            timer,
            patience: DEFAULT_PATIENCE,
            timeout: DEFAULT_CALL_TIMEOUT,
            next: AtomicUsize::new(0),
            local: Vec::new(),
        })
    }

    /// This participant with other waits: `patience` for the first `f + 1`
    /// members asked, `timeout` for the whole call.
    pub fn with_timeouts(mut self, patience: Duration, timeout: Duration) -> Self {
        self.patience = patience;
        self.timeout = timeout;
        self
    }

    /// A whole group in this process: one [`GroupMember`] per key of
    /// `members`, each starting from `core` (which signs as the
    /// [`Group`] of the members' ids, see [`group_of`](Self::group_of)),
    /// with `config(set)` as its replica's configuration, over a fault-free
    /// [`MemoryNetwork`] of their own, each run on a thread of its own
    /// until this participant is dropped. The first member's keys sign the
    /// commands.
    pub fn in_process(
        core: &ParticipantCore,
        members: &[KeyPair],
        config: impl Fn(ValidatorSet) -> ReplicaConfig,
    ) -> Result<Self, TxnError> {
        let group = Self::group_of(members)?;
        let set = ValidatorSet::new(group.members().to_vec())
            .map_err(|e| TxnError::Transport(format!("validator set: {e}")))?;
        let network = MemoryNetwork::new(u64::from_le_bytes(
            group.id().as_bytes()[..8].try_into().unwrap_or_default(),
        ));
        let mut local = Vec::new();
        for keys in members {
            let (handler, inbox) = hologram_consensus::inbox();
            let transport = network.join(keys.node_id(), Arc::new(handler));
            let setup = MemberSetup {
                keys: keys.clone(),
                core: core.clone(),
                config: config(set.clone()),
                transport: Arc::new(transport),
                inbox,
                timer: network.timer().clone(),
                store: None,
            };
            let (member, run) = futures::executor::block_on(GroupMember::start(setup))?;
            std::thread::Builder::new()
                .name(format!("group member {}", keys.node_id()))
                .spawn(move || futures::executor::block_on(run))
                .map_err(|e| TxnError::Transport(format!("member thread: {e}")))?;
            local.push(Arc::new(member));
        }
        let asked = local
            .iter()
            .map(|m| Arc::clone(m) as Arc<dyn Member>)
            .collect();
        let client = members.first().ok_or(TxnError::Empty("member list"))?;
        let mut participant = Self::new(group, client.clone(), asked, network.timer().clone())?;
        participant.local = local;
        Ok(participant)
    }

    /// The group.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// The members this participant started ([`in_process`](Self::in_process)),
    /// to inspect their replicas; none otherwise.
    pub fn local_members(&self) -> &[Arc<GroupMember>] {
        &self.local
    }

    /// A key's committed value, as `f + 1` members answer it alike.
    pub async fn value(&self, key: &Key) -> Result<Option<Vec<u8>>, TxnError> {
        let answers: Vec<_> = join_all(self.members.iter().map(|m| m.value(key)))
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        let needed = self.group.needed();
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
            self.group.needed()
        ))
    }

    /// Has `message` ordered by the group and returns the output that
    /// `f + 1` members endorsed (see the type's docs).
    pub async fn submit(&self, message: &TxnMessage) -> Result<Option<TxnMessage>, TxnError> {
        let command = self
            .client
            .command(message.to_wire()?)
            .map_err(|e| TxnError::Transport(format!("command: {e}")))?;
        let started = self.timer.now();
        join_all(self.members.iter().map(|m| m.submit(command.clone()))).await;
        let n = self.members.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut order = (0..n).map(|i| &self.members[(first + i) % n]);
        let mut asking = FuturesUnordered::new();
        asking.extend(
            order
                .by_ref()
                .take(self.group.needed())
                .map(|m| m.endorse(&command)),
        );
        let mut tally = Tally::new(&self.group, &command);
        loop {
            let left = self
                .timeout
                .saturating_sub(self.timer.now().saturating_duration_since(started));
            let more = order.len() > 0;
            let wait = match more {
                true => self.patience.min(left),
                false => left,
            };
            match self.timer.timeout(wait, asking.next()).await {
                Some(Some(Ok(endorsement))) => {
                    if let Some(output) = tally.add(endorsement) {
                        self.client.answered(&command);
                        return Ok(output);
                    }
                    if asking.is_empty() && more {
                        asking.extend(order.by_ref().map(|m| m.endorse(&command)));
                    }
                }
                Some(Some(Err(_))) | Some(None) | None if more => {
                    asking.extend(order.by_ref().map(|m| m.endorse(&command)));
                }
                Some(Some(Err(_))) => {}
                Some(None) | None => break,
            }
        }
        Err(self.no_quorum("no output", tally.signers.len()))
    }

    /// The output endorsed by `f + 1` distinct members of the group, each
    /// endorsement's signatures checked (forged and unknown ones are
    /// ignored), with each receipt it claims in the group's name proved by
    /// a [`GroupProof`] of the `f + 1` lowest-indexed of those members'
    /// shares.
    pub fn agree(
        &self,
        command: &Command,
        endorsements: Vec<Endorsement>,
    ) -> Result<Option<TxnMessage>, TxnError> {
        let mut tally = Tally::new(&self.group, command);
        for e in endorsements {
            if let Some(output) = tally.add(e) {
                return Ok(output);
            }
        }
        Err(self.no_quorum("no output", tally.signers.len()))
    }

    async fn ask(&self, txn: TxnId, message: TxnMessage) -> Result<TxnMessage, TxnError> {
        reply_to(txn, self.submit(&message).await?)
    }
}

impl Drop for ReplicatedParticipant {
    fn drop(&mut self) {
        for member in &self.local {
            member.stop();
        }
    }
}

crate::remote::participant_by_messages!(ReplicatedParticipant);

/// Member shares of one output.
type Shares = Vec<(u8, Vec<Signature>)>;

/// Endorsements of one command's output, counted as they come.
struct Tally<'a> {
    group: &'a Group,
    command: &'a Command,
    signers: BTreeSet<NodeId>,
    outputs: Vec<(Option<TxnMessage>, Shares)>,
}

impl<'a> Tally<'a> {
    fn new(group: &'a Group, command: &'a Command) -> Self {
        Tally {
            group,
            command,
            signers: BTreeSet::new(),
            outputs: Vec::new(),
        }
    }

    /// Counts `e` if it verifies and its signer is a member not counted
    /// yet; the output with its group proofs once `f + 1` endorsed it.
    fn add(&mut self, e: Endorsement) -> Option<Option<TxnMessage>> {
        let members = self.group.members();
        // `verify` checks the endorsement and every share.
        let signer = e.verify(&self.group.id(), self.command).ok()?;
        let index = members.binary_search(&signer).ok()?;
        if !self.signers.insert(signer) {
            return None;
        }
        // A group has at most MAX_GROUP (64) members.
        let share = (index as u8, e.shares);
        let slot = match self.outputs.iter().position(|(o, _)| *o == e.output) {
            Some(i) => i,
            None => {
                self.outputs.push((e.output, Vec::new()));
                self.outputs.len() - 1
            }
        };
        let shares = &mut self.outputs[slot].1;
        shares.push(share);
        let needed = self.group.needed();
        if shares.len() < needed {
            return None;
        }
        let (mut output, mut shares) = self.outputs.swap_remove(slot);
        shares.sort_unstable_by_key(|(index, _)| *index);
        shares.truncate(needed);
        if let Some(message) = output.as_mut() {
            for (k, (_, claim)) in group_claims(message, &self.group.id())
                .into_iter()
                .enumerate()
            {
                claim.proof = Proof::Group(GroupProof {
                    members: members.to_vec(),
                    signatures: shares
                        .iter()
                        .filter_map(|(i, s)| Some((*i, *s.get(k)?)))
                        .collect(),
                });
            }
        }
        Some(output)
    }
}
