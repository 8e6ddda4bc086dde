//! [`Executor`]: a replicated state machine as a replica's node runs it, so
//! that the node can snapshot it, check the checkpoints leaders propose and
//! restore it from a certified snapshot.

use super::Checkpoint;
use crate::membership::Membership;
use crate::message::Decision;
use crate::rsm::{ReplicatedStateMachine, StateMachine};
use crate::ConsensusError;
use hologram_cam::ChunkParams;
use hologram_receipt::ReceiptChain;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// When a node snapshots its machine, and how the snapshot is cut into
/// chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotConfig {
    /// A snapshot is taken each time the machine's next height is a
    /// multiple of this (at least 1). Every validator must use the same:
    /// a leader proposes its checkpoint and the others check it against
    /// theirs.
    pub interval: u64,
    /// The content-defined chunking of a snapshot into CAM objects (its
    /// `max` at most [`MAX_SNAPSHOT_PART_BYTES`](crate::MAX_SNAPSHOT_PART_BYTES)).
    /// Every validator must use the same (the address depends on it).
    pub chunks: ChunkParams,
}

impl SnapshotConfig {
    /// Every `interval` heights, in the CAM's default chunks (16 / 64 /
    /// 256 KiB).
    pub fn every(interval: u64) -> Self {
        Self {
            interval,
            chunks: ChunkParams::default(),
        }
    }

    /// Whether a snapshot is due when the machine's next height is `next`.
    pub fn due(&self, next: u64) -> bool {
        next > 0 && next.is_multiple_of(self.interval.max(1))
    }
}

/// A replicated state machine run by a replica's node
/// ([`SimReplica::with_machine`](crate::SimReplica::with_machine)): it
/// applies the decisions the replica delivers, snapshots itself and
/// restores from a snapshot. Object-safe, so a node holds any machine;
/// [`ReplicatedStateMachine`] implements it for every [`StateMachine`]
/// whose outputs serialize.
pub trait Executor: Send {
    /// Applies the next decided height ([`ReplicatedStateMachine::apply_decision`]).
    fn execute(&mut self, decision: &Decision) -> Result<(), ConsensusError>;
    /// The next height to apply.
    fn next_height(&self) -> u64;
    /// The receipt chain over every command applied.
    fn chain(&self) -> ReceiptChain;
    /// The snapshot's canonical bytes now ([`ReplicatedStateMachine::snapshot`]).
    fn snapshot(&self) -> Result<Vec<u8>, ConsensusError>;
    /// Replaces the state with the snapshot `bytes` hold, which must be the
    /// one `checkpoint` names ([`ReplicatedStateMachine::restore`]).
    fn restore(&mut self, bytes: &[u8], checkpoint: &Checkpoint) -> Result<(), ConsensusError>;
    /// The validator sets from the next height on ([`ReplicatedStateMachine::membership`]),
    /// by value: a machine shared behind a lock cannot lend it out (read
    /// when a snapshot is restored).
    fn membership(&self) -> Membership;
}

impl<S> Executor for ReplicatedStateMachine<S>
where
    S: StateMachine + Send,
    S::Output: Serialize + DeserializeOwned + Send,
{
    fn execute(&mut self, decision: &Decision) -> Result<(), ConsensusError> {
        self.apply_decision(decision).map(drop)
    }

    fn next_height(&self) -> u64 {
        ReplicatedStateMachine::next_height(self)
    }

    fn chain(&self) -> ReceiptChain {
        *self.receipt_chain()
    }

    fn snapshot(&self) -> Result<Vec<u8>, ConsensusError> {
        ReplicatedStateMachine::snapshot(self)
    }

    fn restore(&mut self, bytes: &[u8], checkpoint: &Checkpoint) -> Result<(), ConsensusError> {
        ReplicatedStateMachine::restore(self, bytes, Some(checkpoint))
    }

    fn membership(&self) -> Membership {
        ReplicatedStateMachine::membership(self).clone()
    }
}
