//! A replica's configuration, its timers and what it asks its driver to do.

use super::{Restore, SnapshotRead};
use crate::detector::Misbehaviour;
use crate::membership::{DEFAULT_SET_CHANGE_DELAY, MAX_SET_CHANGE_DELAY};
use crate::message::{ConsensusMessage, Decision};
use crate::{ConsensusError, ValidatorSet};
use hologram_lattice::NodeId;

/// Timeouts in milliseconds. Round `r` waits `base + r * round_increase_ms`,
/// so after the network stabilises some round lasts long enough to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long to wait for the leader's proposal.
    pub propose_ms: u64,
    /// How long to wait after a quorum of prevotes (of any values).
    pub prevote_ms: u64,
    /// How long to wait after a quorum of precommits (of any values).
    pub precommit_ms: u64,
    /// How much each later round adds to each timeout.
    pub round_increase_ms: u64,
    /// How often own votes, proposals and pending commands are sent again
    /// while something is in flight (repairs message loss).
    pub resend_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            propose_ms: 100,
            prevote_ms: 50,
            precommit_ms: 50,
            round_increase_ms: 50,
            resend_ms: 100,
        }
    }
}

impl Timeouts {
    /// The timeout of `base` in `round`.
    pub fn in_round(&self, base: u64, round: u32) -> u64 {
        base.saturating_add(self.round_increase_ms.saturating_mul(u64::from(round)))
    }
}

/// The default of [`ReplicaConfig::sync_bytes_per_interval`]: 4 MiB, room
/// for a full `sync_batch` of 32 decisions of about 128 KiB each (1,024
/// commands of ~100 bytes) in every resend interval.
pub const DEFAULT_SYNC_BYTES_PER_INTERVAL: usize = 4 << 20;

/// The default of [`ReplicaConfig::retain_decision_bytes`]: 16 MiB of
/// delivered decisions kept in memory (older ones are served from the
/// durable log).
pub const DEFAULT_RETAIN_DECISION_BYTES: usize = 16 << 20;

/// How a replica runs.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// The validators at height 0 (the genesis set; later sets come from
    /// decided [`SetChange`](crate::SetChange)s, see [`Membership`](crate::Membership)).
    pub validators: ValidatorSet,
    /// How many heights after the height deciding it a validator-set change
    /// takes effect. Every validator of the group must use the same, and it
    /// must be at least `max_pipeline_depth` (see
    /// [`Membership`](crate::Membership) for why).
    pub set_change_delay: u64,
    /// The most commands a leader puts into one proposal.
    pub max_batch: usize,
    /// Heights decided concurrently (the chapter's `max_pipeline_depth`); 1 is
    /// plain sequential Tendermint.
    pub max_pipeline_depth: usize,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// The most commands waiting in the mempool; more are rejected.
    pub mempool_capacity: usize,
    /// Decisions sent per catch-up request.
    pub sync_batch: usize,
    /// The most bytes of decisions (catch-up answers and pushes) one peer is
    /// sent per resend interval; requests past it are dropped until the next
    /// interval (the peer asks again). See [`Replica`](crate::Replica) on catch-up.
    /// Must be at least 1; one decision larger than the budget is still sent
    /// when it is the first of the peer's interval.
    pub sync_bytes_per_interval: usize,
    /// Delivered decisions kept in memory to serve catch-up requests (the
    /// newest ones; older heights are read from the durable log, see
    /// [`Outputs::log_reads`]).
    pub retain_decisions: usize,
    /// The most bytes of delivered decisions kept in memory (by their
    /// encoded size), whatever `retain_decisions` allows: the newest one is
    /// always kept. Must be at least 1.
    pub retain_decision_bytes: usize,
    /// Fuller blocks: while a height is in flight, another is started only
    /// once this many unclaimed commands wait (at most `max_batch` are
    /// asked for), or `fill_ms` after the first of them arrived. An idle
    /// replica starts a height at the first command. 0 or 1: start one as
    /// soon as any command is unclaimed.
    pub fill_commands: usize,
    /// How long unclaimed commands below `fill_commands` wait for another
    /// height while one is in flight (milliseconds, at least 1).
    pub fill_ms: u64,
}

impl ReplicaConfig {
    /// The defaults for `validators`: batches of 1,024 commands, depth 1.
    pub fn new(validators: ValidatorSet) -> Self {
        Self {
            validators,
            set_change_delay: DEFAULT_SET_CHANGE_DELAY,
            max_batch: 1024,
            max_pipeline_depth: 1,
            timeouts: Timeouts::default(),
            mempool_capacity: 1 << 20,
            sync_batch: 32,
            sync_bytes_per_interval: DEFAULT_SYNC_BYTES_PER_INTERVAL,
            retain_decisions: 4096,
            retain_decision_bytes: DEFAULT_RETAIN_DECISION_BYTES,
            fill_commands: 256,
            fill_ms: 2,
        }
    }

    /// Checks that every value is usable.
    pub fn check(&self) -> Result<(), ConsensusError> {
        let bad = |what: &str| Err(ConsensusError::InvalidConfig(what.to_string()));
        if self.max_batch == 0 || self.max_batch > crate::batch::MAX_BATCH_COMMANDS {
            return bad("max_batch must be between 1 and MAX_BATCH_COMMANDS");
        }
        if self.max_pipeline_depth == 0 || self.max_pipeline_depth > 256 {
            return bad("max_pipeline_depth must be between 1 and 256");
        }
        if self.set_change_delay < self.max_pipeline_depth as u64
            || self.set_change_delay > MAX_SET_CHANGE_DELAY
        {
            return bad("set_change_delay must be at least max_pipeline_depth and at most MAX_SET_CHANGE_DELAY: a height in flight must be under a set every replica knows");
        }
        if self.sync_batch == 0 || self.retain_decisions < self.sync_batch {
            return bad("sync_batch must be at least 1 and at most retain_decisions");
        }
        if self.retain_decision_bytes == 0 {
            return bad("retain_decision_bytes must be at least 1");
        }
        if self.sync_bytes_per_interval == 0 {
            return bad("sync_bytes_per_interval must be at least 1");
        }
        if self.mempool_capacity == 0 {
            return bad("mempool_capacity must be at least 1");
        }
        if self.fill_ms == 0 {
            return bad("fill_ms must be at least 1");
        }
        if self.timeouts.resend_ms == 0 {
            return bad("timeouts.resend_ms must be at least 1");
        }
        Ok(())
    }
}

/// A timer the replica asked for; hand it back with
/// [`Replica::handle_timer`](super::Replica::handle_timer) when it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// No proposal arrived in time.
    Propose {
        /// The height.
        height: u64,
        /// The round.
        round: u32,
    },
    /// The prevotes did not agree in time.
    Prevote {
        /// The height.
        height: u64,
        /// The round.
        round: u32,
    },
    /// The precommits did not agree in time: next round.
    Precommit {
        /// The height.
        height: u64,
        /// The round.
        round: u32,
    },
    /// Time to resend what may have been lost.
    Resend,
    /// Unclaimed commands waited long enough for a fuller block: start a
    /// height for them (see [`ReplicaConfig::fill_commands`]).
    Fill,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// To every other validator.
    Broadcast(ConsensusMessage),
    /// To one node.
    To(NodeId, ConsensusMessage),
}

/// Decisions a peer asked for that the replica no longer keeps in memory:
/// read the heights `first .. end` from the durable log
/// ([`DurableLog::read`](crate::DurableLog::read), stopping after
/// `max_bytes`), then hand what was read to
/// [`Replica::serve_stored`](super::Replica::serve_stored), which answers
/// within the peer's catch-up budget. A replica asks for at most one read
/// per peer at a time (until it is served or the peer's interval ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRead {
    /// The peer that asked.
    pub peer: NodeId,
    /// The first height to read.
    pub first: u64,
    /// The height after the last one to read.
    pub end: u64,
    /// What is left of the peer's byte budget: stop reading once the
    /// decisions read reach it (at least one is read).
    pub max_bytes: usize,
}

/// What one call into a replica produced: messages to send, timers to set,
/// decisions made (in height order, each height once), misbehaviour seen and
/// catch-up reads from the durable log.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Messages to send.
    pub messages: Vec<Outgoing>,
    /// Timers to set: `(after_ms, timer)`.
    pub timers: Vec<(u64, Timer)>,
    /// Decisions delivered, in height order.
    pub decisions: Vec<Decision>,
    /// Misbehaviour detected.
    pub misbehaviour: Vec<Misbehaviour>,
    /// Decisions to read from the durable log for a peer's catch-up.
    pub log_reads: Vec<LogRead>,
    /// Snapshot parts to read from the node's store for a peer's state
    /// sync (answer each with [`Replica::serve_snapshot_part`](super::Replica::serve_snapshot_part)).
    pub snapshot_reads: Vec<SnapshotRead>,
    /// A fetched snapshot, verified: restore the node's machine from it,
    /// then call [`Replica::install_snapshot`](super::Replica::install_snapshot).
    pub restore: Option<Restore>,
}

impl Outputs {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.timers.is_empty()
            && self.decisions.is_empty()
            && self.misbehaviour.is_empty()
            && self.log_reads.is_empty()
            && self.snapshot_reads.is_empty()
            && self.restore.is_none()
    }

    /// Empties every list (keeps their memory).
    pub fn clear(&mut self) {
        self.messages.clear();
        self.timers.clear();
        self.decisions.clear();
        self.misbehaviour.clear();
        self.log_reads.clear();
        self.snapshot_reads.clear();
        self.restore = None;
    }
}
