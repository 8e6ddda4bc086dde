//! The one error type of this crate.

use crate::{Key, TxnId};
use hologram_cam::CamError;
use hologram_lattice::transport::TransportError;
use hologram_lattice::wire::WireError;
use hologram_lattice::{NodeId, PeerId};
use hologram_receipt::ReceiptError;
use thiserror::Error;

/// Everything that can go wrong in `hologram-txn`.
///
/// [`TxnError::is_retryable`] says which failures a client should answer by
/// running the transaction again (with a fresh [`TxnId`]): lock conflicts,
/// routing with a stale shard map, timeouts and aborts forced by recovery.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TxnError {
    /// A key is locked by another transaction (no-wait: the requester loses).
    #[error("key {key} is locked by transaction {holder}")]
    Conflict {
        /// The contended key.
        key: Key,
        /// The transaction holding its lock.
        holder: TxnId,
    },
    /// A request was routed with a shard map that no longer places `key` on
    /// the node it reached.
    #[error("key {key} is not on this shard (its shard map is version {current})")]
    StaleShardMap {
        /// The key that is not here.
        key: Key,
        /// The version of the shard map the participant holds.
        current: u64,
    },
    /// An operation cannot be applied to the current state (e.g. a balance
    /// would go negative, or a counter is not 8 bytes).
    #[error("operation on {key} rejected: {reason}")]
    Rejected {
        /// The key of the rejected operation.
        key: Key,
        /// Why.
        reason: String,
    },
    /// The transaction was already decided (a late or repeated request).
    #[error("transaction {0} is already decided")]
    AlreadyDecided(TxnId),
    /// The participant knows nothing of this transaction.
    #[error("transaction {0} is unknown here")]
    UnknownTransaction(TxnId),
    /// The same transaction id arrived with different contents.
    #[error("transaction {0} was prepared with different contents")]
    ContentsDiffer(TxnId),
    /// The transaction's primary decided to abort it (the coordinator was too
    /// slow, crashed, or a participant refused).
    #[error("transaction {txn} aborted: {reason}")]
    Aborted {
        /// The transaction.
        txn: TxnId,
        /// Why, as the coordinator knows it.
        reason: String,
    },
    /// No answer came in time.
    #[error("transaction {0} timed out")]
    TimedOut(TxnId),
    /// A participant returned a receipt other than the one every honest
    /// participant computes.
    #[error("participant {participant} returned a receipt other than the expected one for {txn}")]
    ReceiptMismatch {
        /// The transaction.
        txn: TxnId,
        /// The participant.
        participant: NodeId,
    },
    /// A signed receipt was not signed by who it should be, or not for this.
    #[error("bad signature from {signer}: {source}")]
    BadSignature {
        /// Who claims to have signed.
        signer: NodeId,
        /// What verification said.
        source: ReceiptError,
    },
    /// A group proof with fewer than `f + 1` member signatures (an unsigned
    /// group receipt has none).
    #[error("group {group} signed with {got} of the {needed} member signatures needed")]
    TooFewSignatures {
        /// The group.
        group: NodeId,
        /// How many signatures the proof holds.
        got: usize,
        /// How many are needed (`f + 1`).
        needed: usize,
    },
    /// A group proof whose member list does not hash to the signer's id.
    #[error("the member list does not hash to group {group}")]
    NotTheGroup {
        /// The claimed group.
        group: NodeId,
    },
    /// A group proof's signature names a member index past the member list.
    #[error("group {group}: member index {index} out of range ({members} members)")]
    MemberIndexOutOfRange {
        /// The group.
        group: NodeId,
        /// The index.
        index: u8,
        /// How many members the proof lists.
        members: usize,
    },
    /// A group proof with two signatures for one member.
    #[error("group {group}: member index {index} signs twice")]
    DuplicateMemberIndex {
        /// The group.
        group: NodeId,
        /// The repeated index.
        index: u8,
    },
    /// A commit certificate does not prove what it claims (wrong set of
    /// participants, a prepare receipt missing, a composition that differs).
    #[error("invalid commit certificate for {txn}: {reason}")]
    InvalidCertificate {
        /// The transaction.
        txn: TxnId,
        /// What was wrong.
        reason: &'static str,
    },
    /// A transaction, key, value or message is outside the size bounds.
    #[error("{what} of {len} exceeds the limit of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A transaction with no operations, or a key with no bytes.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A message or record did not decode (see [`hologram_lattice::wire`]).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A message or record decoded but does not hold together (an answer
    /// to another request, a group proof out of order).
    #[error("malformed {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// A shard id that the shard map does not hold.
    #[error("shard {0} is not in the shard map")]
    UnknownShard(u32),
    /// A split point outside (or at the start of) the shard's range.
    #[error("cannot split shard {shard} at {at}: not strictly inside its range")]
    BadSplitPoint {
        /// The shard.
        shard: u32,
        /// The proposed split point.
        at: u64,
    },
    /// A hand-off of keys that does not check out (see [`crate::Transfer`]).
    #[error("invalid hand-off: {0}")]
    InvalidHandOff(&'static str),
    /// The participant's store failed.
    #[error("store error: {0}")]
    Store(#[from] CamError),
    /// A participant could not be reached, or (told by a participant that
    /// answered) enough of its group could not be: the reason as text, as
    /// it travels in a refusal.
    #[error("transport error: {0}")]
    Transport(String),
    /// A transaction was begun on a node that is not a coordinator.
    #[error("this node is a participant, not a coordinator")]
    NotACoordinator,
    /// The coordinator's driver stopped before the transaction ended (the
    /// primary's recovery settles it).
    #[error("the coordinator stopped")]
    CoordinatorStopped,
    /// A call to a participant's node failed on the way (no answer in time,
    /// the node down or unknown).
    #[error("participant {participant} at {peer}: {source}")]
    Unreachable {
        /// The participant called.
        participant: NodeId,
        /// The node that was asked.
        peer: PeerId,
        /// What the transport said.
        source: TransportError,
    },
}

impl TxnError {
    /// Whether running the transaction again (under a fresh id, after
    /// refreshing the shard map) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            TxnError::Conflict { .. }
                | TxnError::StaleShardMap { .. }
                | TxnError::Aborted { .. }
                | TxnError::TimedOut(_)
                | TxnError::Transport(_)
                | TxnError::CoordinatorStopped
                | TxnError::Unreachable { .. }
        )
    }
}
