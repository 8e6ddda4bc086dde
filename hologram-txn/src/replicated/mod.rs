//! Shards as replicated groups (the cross-shard transactions over
//! `ReplicatedStateMachine`s, the chapter's exercise 3).
//!
//! A shard group of `n = 3f + 1` validators runs the participant logic as a
//! [`ShardMachine`]: the deterministic [`ParticipantCore`] (locks, prepared
//! state, values, decisions) applied to commands. Every step of two-phase
//! commit — prepare, the one-phase commit, the primary's commit or abort
//! decision, resolve, query — is a command, ordered by the group's
//! consensus (its members are the validators, `2f + 1` precommits per
//! decision) and applied by every member's
//! [`ReplicatedStateMachine`](hologram_consensus::ReplicatedStateMachine),
//! which checks the commit certificate. So a primary group's decision
//! record lives in a replicated log: neither the coordinator's loss nor any
//! `f` members' loss blocks anyone (the "best" option).
//!
//! **Trusting the answer.** A member's answer is its machine's output,
//! endorsed with its own signature ([`Endorsement`], for
//! `Purpose::Transition`); [`ReplicatedParticipant`] returns an output only
//! when `f + 1` distinct members endorsed the same one, so at least one
//! honest member computed it. A lying or silent member (up to `f`) changes
//! nothing; a replica that votes wrongly is refused by consensus.
//!
//! **The group's identity.** Towards the rest of the protocol a group is
//! one participant, and no member holds a key for it. Its id is
//! self-certifying: `BLAKE3("hologram shard-group v1\n" ‖ n u8 ‖ the n
//! member ids ascending)` ([`group_id`](crate::receipts::group_id), `n ≤`
//! [`MAX_GROUP`](crate::receipts::MAX_GROUP)). The group's
//! [`ShardMachine`] runs a core that signs as that
//! [`Group`](crate::receipts::Group) ([`Signer::Group`](crate::Signer::Group)):
//! its prepare votes, decisions and acknowledgements carry the group id as
//! signer and a [`GroupProof`](crate::receipts::GroupProof) with no
//! signature yet, so every replica computes the same output without a
//! secret. Each member's [`Endorsement`] adds its own signature of every
//! such receipt, for the purpose that receipt needs ([`group_claims`]);
//! [`ReplicatedParticipant::agree`] takes the output `f + 1` members
//! endorsed and completes each receipt's proof with `f + 1` of their
//! checked signatures. The coordinator and other participants — groups or
//! single-replica shards, mixed in one transaction — then verify it as any
//! [`SignedReceipt`]. A Byzantine member signing a
//! vote or decision in the group's name outside consensus has one
//! signature of the `f + 1` needed, and is refused
//! ([`TxnError::TooFewSignatures`]); a single signature claiming the group
//! id verifies under no key ([`TxnError::BadSignature`]).
//!
//! A group's core does not hand keys off ([`crate::handoff`] transfers are
//! signed by one node's keys): asked to, it refuses with
//! [`TxnError::InvalidHandOff`]. Hand-offs between groups are not built yet.
//!
//! **Recovery.** The core's timers (a primary's unilateral abort, a
//! secondary's question) are not deterministic across replicas, so a group
//! does not run them; their work is a command anyone may submit: [`settle`]
//! asks the primary group to abort (which returns the decision already made,
//! commit included, if there is one) and resolves the prepared group with
//! it. A transaction whose coordinator crashed at any step is thereby
//! completed or aborted everywhere.
//!
//! **Members are replicas.** Each member is a consensus
//! [`Replica`](hologram_consensus::Replica) of the group's validator set,
//! run by a [`ReplicaDriver`](hologram_consensus::ReplicaDriver) over a
//! `Transport` (with a [`DurableLog`](hologram_consensus::DurableLog) when
//! given a store), its decisions applied to its
//! [`ReplicatedStateMachine<ShardMachine>`](hologram_consensus::ReplicatedStateMachine)
//! ([`GroupMember`]). Everything consensus needs is the replica's: leaders
//! rotate and a failed round changes leader (no proposer to fail over),
//! heights are pipelined and batched (concurrent transactions share them),
//! a member that restarts recovers its log from its store and fetches what
//! it missed from its peers (catch-up, each certificate verified).
//!
//! **Calls.** [`ReplicatedParticipant`] signs each 2PC step as a
//! [`Command`](hologram_consensus::Command) with its client key, hands it
//! to every member ([`Member::submit`]), and gathers endorsements
//! ([`Member::endorse`], which waits until the member applied the command)
//! until `f + 1` agree. The [`Member`] seam is what it asks: a
//! [`GroupMember`] in this process, or a wrapper of one (tests model silent,
//! lying and forging members that way, in `tests/support`).
//!
//! **Where it runs.** [`ReplicatedParticipant::in_process`] runs a whole
//! group in this process, its members over a [`MemoryNetwork`] of their
//! own, each on a thread; [`GroupMember::start`] returns a member and the
//! future that runs it, for any executor and transport. A coordinator on
//! another node reaches the group through a
//! [`ParticipantService`](crate::ParticipantService) serving the
//! [`ReplicatedParticipant`] (`Protocol::TXN_CALL`), as any participant.
//!
//! Not built yet: members on other nodes than the participant's (a member's
//! endorsements over a transport), log compaction (a replica replays its
//! log from height 0 on a restart), hand-offs of keys to or from a group.
//!
//! [`MemoryNetwork`]: hologram_lattice::transport::MemoryNetwork
//! [`ParticipantCore`]: crate::ParticipantCore

mod group;
mod machine;
pub mod member;

pub use group::{ReplicatedParticipant, DEFAULT_CALL_TIMEOUT, DEFAULT_PATIENCE};
pub use machine::{group_claims, Endorsement, ShardMachine, ENDORSEMENT_TAG};
pub use member::{
    GroupMember, Member, MemberRun, MemberSetup, DEFAULT_WAIT, MAX_OUTPUTS, MAX_WAITING,
};

use crate::transaction::Participant;
use crate::{SignedReceipt, TxnError, TxnId};

/// Settles `txn` at `prepared` (a participant left prepared, e.g. by a
/// coordinator that crashed): asks `primary` to decide abort — which
/// returns the decision already made if there is one, a commit included —
/// and resolves `prepared` with that decision. Returns `prepared`'s signed
/// acknowledgement.
pub async fn settle(
    prepared: &dyn Participant,
    primary: &dyn Participant,
    txn: TxnId,
) -> Result<SignedReceipt, TxnError> {
    let decision = primary.abort(txn).await?;
    decision.verify(&txn, &primary.id())?;
    prepared.resolve(txn, decision).await
}
