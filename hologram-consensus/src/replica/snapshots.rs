//! Checkpoints and state sync in the replica: which checkpoint a leader
//! proposes, whether a proposed one is valid here, and fetching a certified
//! snapshot through the one catch-up path.
//!
//! **Binding.** The node's machine tells the replica the checkpoints it
//! computed ([`Replica::note_checkpoint`]). A leader's fresh batch of round
//! 0 carries the newest of them that is newer than the newest certified
//! one (never in a later round: a validator whose machine lags cannot
//! support it, and the height must not wait for it). A
//! validator prevotes a proposal carrying a checkpoint only once its own
//! machine computed the same one (Tendermint's `valid(v)`; CometBFT's check
//! of the application hash): a checkpoint its machine has not reached yet
//! is waited for (the propose timeout still prevotes nil), one it computed
//! otherwise, or skipped, makes it prevote nil. Safety is Tendermint's,
//! untouched: the check only decides what an honest validator supports.
//!
//! **Serving.** Once the node compacted its log below its certified
//! checkpoint ([`Replica::compacted`]), a peer asking for heights below it
//! is offered the snapshot instead ([`ConsensusMessage::SnapshotOffer`]: the
//! certified decision naming it), and its part requests are read from the
//! node's store ([`Outputs::snapshot_reads`], answered with
//! [`Replica::serve_snapshot_part`]), all under the peer's catch-up budget
//! of [`CatchUpServer`](super::catchup::CatchUpServer).
//!
//! **Fetching.** A replica whose node can restore (it runs a machine)
//! takes an offer whose decision verifies against the validator set in
//! force at its height (for a height beyond the sets it knows, the
//! set-change links the offer carries are checked first, as a light client
//! does: [`Membership::verify_chain`](crate::Membership::verify_chain)) and
//! names a checkpoint beyond its next height, then asks for the parts one
//! at a time, each verified by address before it is kept; a peer whose
//! part does not verify is blamed and the next validator is asked, as is
//! the next one when a request goes unanswered for a resend interval. When
//! every part is in, the node restores its machine ([`Outputs::restore`])
//! and, only if that succeeds, moves the replica past the snapshot
//! ([`Replica::install_snapshot`]) and gives it the snapshot's validator
//! sets ([`Replica::restore_membership`]); the heights after it come
//! through the usual catch-up.

use super::{Outgoing, Outputs, Replica};
use crate::detector::Offence;
use crate::message::{ConsensusMessage, Decision};
use crate::snapshot::fetch::Fetched;
use crate::snapshot::{Checkpoint, SnapshotFetch};
use crate::ConsensusError;
use hologram_lattice::{Address, NodeId};
use std::collections::BTreeMap;

/// How many checkpoints computed by the node's machine a replica keeps.
const LOCAL_CHECKPOINTS: usize = 8;

/// A snapshot the node's machine must restore before the replica moves
/// past it ([`Replica::install_snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    /// The certified decision whose batch names the snapshot.
    pub decision: Decision,
    /// The checkpoint it names.
    pub checkpoint: Checkpoint,
    /// The snapshot's bytes, every part verified against the checkpoint.
    pub bytes: Vec<u8>,
}

/// A part of the newest certified snapshot that a peer asked for: read it
/// from the node's store and hand it to [`Replica::serve_snapshot_part`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRead {
    /// The peer that asked.
    pub peer: NodeId,
    /// The snapshot.
    pub snapshot: Address,
    /// The part (0 the manifest, `i + 1` chunk `i`).
    pub part: u32,
}

/// Whether a proposed batch's checkpoint lets a validator support it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Validity {
    /// No checkpoint, or the one this node's machine computed.
    Valid,
    /// Not reached by this node's machine yet: wait.
    Unknown,
    /// Another than the one computed, or one that is not computed here.
    Invalid,
}

/// A replica's checkpoints and state sync (see the [module docs](self)).
#[derive(Debug, Default)]
pub(super) struct Snapshots {
    /// Whether the node runs a machine (can compute, check and restore).
    enabled: bool,
    /// The checkpoints its machine computed, newest few, by height.
    local: BTreeMap<u64, Checkpoint>,
    /// The height the machine has reached (computed checkpoints below it
    /// and not kept are not valid).
    reached: u64,
    /// The newest delivered decision carrying a checkpoint.
    certified: Option<Decision>,
    /// The first height the node's durable log still holds.
    log_start: u64,
    /// A snapshot being fetched.
    fetch: Option<SnapshotFetch>,
    /// The set-change links its offer came with, verified: kept once the
    /// snapshot's sets are the replica's, to hand on.
    pub(super) links: Vec<Decision>,
    /// Whom to ask for the parts: the validators in force at the height of
    /// the decision naming the snapshot (they hold it).
    peers: Vec<NodeId>,
}

impl Snapshots {
    /// The checkpoint of the newest certified snapshot.
    fn certified_checkpoint(&self) -> Option<Checkpoint> {
        self.certified
            .as_ref()
            .and_then(|d| d.batch.checkpoint().copied())
    }

    /// What a leader's fresh batch carries.
    pub(super) fn to_propose(&self) -> Option<Checkpoint> {
        let certified = self.certified_checkpoint().map_or(0, |c| c.height);
        let (&height, c) = self.local.last_key_value()?;
        (height > certified).then_some(*c)
    }

    /// Whether `checkpoint` makes a proposal valid here.
    pub(super) fn validity(&self, checkpoint: Option<&Checkpoint>) -> Validity {
        let Some(c) = checkpoint else {
            return Validity::Valid;
        };
        match self.local.get(&c.height) {
            Some(mine) if mine == c => Validity::Valid,
            Some(_) => Validity::Invalid,
            None if self.enabled && c.height > self.reached => Validity::Unknown,
            None if !self.enabled => Validity::Unknown,
            None => Validity::Invalid,
        }
    }

    /// A delivered decision: remembered if it carries a newer checkpoint.
    pub(super) fn delivered(&mut self, d: &Decision) {
        if let Some(c) = d.batch.checkpoint() {
            if self
                .certified_checkpoint()
                .is_none_or(|old| c.height > old.height)
            {
                self.certified = Some(d.clone());
            }
        }
    }

    /// Whether a fetch is under way.
    pub(super) fn fetching(&self) -> bool {
        self.fetch.is_some()
    }
}

impl Replica {
    /// Says that the node runs a machine that computes checkpoints and can
    /// restore snapshots (see [`note_checkpoint`](Self::note_checkpoint)).
    /// A replica without one never proposes a checkpoint, never supports a
    /// proposal carrying one (it prevotes nil when the propose timeout
    /// expires) and ignores snapshot offers.
    pub fn enable_snapshots(&mut self) {
        self.snapshots.enabled = true;
    }

    /// The newest delivered (certified) decision whose batch carries a
    /// checkpoint.
    pub fn certified_snapshot(&self) -> Option<&Decision> {
        self.snapshots.certified.as_ref()
    }

    /// The node's machine reached `checkpoint.height` and computed this
    /// checkpoint: a leader proposes it, and proposals carrying it become
    /// valid here (the heights in flight are re-examined).
    pub fn note_checkpoint(&mut self, now: u64, checkpoint: Checkpoint, out: &mut Outputs) {
        let s = &mut self.snapshots;
        s.reached = s.reached.max(checkpoint.height);
        s.local.insert(checkpoint.height, checkpoint);
        while s.local.len() > LOCAL_CHECKPOINTS {
            s.local.pop_first();
        }
        let heights: Vec<u64> = self.heights.keys().copied().collect();
        for h in heights {
            self.progress(now, h, out);
        }
    }

    /// A restarted node's certified snapshot, restored from its durable
    /// state: its log starts there.
    pub(crate) fn remember_certified(&mut self, decision: Decision, checkpoint: Checkpoint) {
        let s = &mut self.snapshots;
        s.reached = s.reached.max(checkpoint.height);
        s.local.insert(checkpoint.height, checkpoint);
        s.log_start = s.log_start.max(checkpoint.height);
        s.delivered(&decision);
    }

    /// The node deleted its durable log below `height` (it keeps the
    /// snapshot of its certified checkpoint at `height`): the decisions
    /// below it kept in memory go too, and peers asking for heights below
    /// are offered the snapshot.
    pub fn compacted(&mut self, height: u64) {
        self.snapshots.log_start = self.snapshots.log_start.max(height);
        self.history.prune_below(self.snapshots.log_start);
    }

    /// The first height the node's durable log holds (0 until it compacts).
    pub fn log_start(&self) -> u64 {
        self.snapshots.log_start
    }

    /// Offers `peer` the certified snapshot instead of heights the log no
    /// longer holds; whether the request was below the log's start.
    pub(super) fn offer_snapshot(
        &mut self,
        now: u64,
        peer: NodeId,
        first: u64,
        out: &mut Outputs,
    ) -> bool {
        if first >= self.snapshots.log_start {
            return false;
        }
        if let Some(d) = &self.snapshots.certified {
            let (interval, budget) = (
                self.config.timeouts.resend_ms,
                self.config.sync_bytes_per_interval,
            );
            let links = self.membership.links().to_vec();
            let size = (links.iter())
                .map(super::catchup::decision_wire_bound)
                .fold(
                    super::catchup::decision_wire_bound(d),
                    usize::saturating_add,
                );
            if self.catch_up.offer(now, interval, budget, peer, size) {
                let offer = ConsensusMessage::SnapshotOffer(Box::new(d.clone()), links);
                out.messages.push(Outgoing::To(peer, offer));
            }
        }
        true
    }

    /// A peer asks for a part of a snapshot: read if it is the certified
    /// one and the peer's budget allows; re-offered the certified one if it
    /// asked for another (an older snapshot is deleted once a newer one is
    /// certified).
    pub(super) fn on_snapshot_request(
        &mut self,
        now: u64,
        from: NodeId,
        snapshot: Address,
        part: u32,
        out: &mut Outputs,
    ) {
        if !self.membership.is_member(&from) || self.snapshots.log_start == 0 {
            return;
        }
        let Some(certified) = self.snapshots.certified_checkpoint() else {
            return;
        };
        if certified.snapshot != snapshot {
            self.offer_snapshot(now, from, 0, out);
            return;
        }
        let (interval, budget) = (
            self.config.timeouts.resend_ms,
            self.config.sync_bytes_per_interval,
        );
        if self.catch_up.part(now, interval, budget, from) {
            out.snapshot_reads.push(SnapshotRead {
                peer: from,
                snapshot,
                part,
            });
        }
    }

    /// Answers a peer's part request (one of [`Outputs::snapshot_reads`])
    /// with what was read (`None` if the part does not exist or the read
    /// failed), within its catch-up budget. Call it for every read asked
    /// for: until then no other is asked for that peer in the interval.
    pub fn serve_snapshot_part(
        &mut self,
        read: SnapshotRead,
        bytes: Option<Vec<u8>>,
        out: &mut Outputs,
    ) {
        let budget = self.config.sync_bytes_per_interval;
        let size = bytes.as_ref().map_or(0, Vec::len);
        if self.catch_up.part_read(read.peer, budget, size) {
            if let Some(bytes) = bytes {
                let part = ConsensusMessage::SnapshotPart {
                    snapshot: read.snapshot,
                    part: read.part,
                    bytes,
                };
                out.messages.push(Outgoing::To(read.peer, part));
            }
        }
    }

    /// A peer offers its certified snapshot: fetched if this node can
    /// restore, the decision verifies and names a checkpoint beyond this
    /// replica's next height and any fetch under way.
    pub(super) fn on_snapshot_offer(
        &mut self,
        now: u64,
        from: NodeId,
        d: Decision,
        links: &[Decision],
        out: &mut Outputs,
    ) {
        if !self.snapshots.enabled || !self.membership.is_member(&from) {
            return;
        }
        let Some(&checkpoint) = d.batch.checkpoint() else {
            return self.blame(
                from,
                Offence::InvalidReceipt("a snapshot offer without a checkpoint".into()),
                out,
            );
        };
        let current = self
            .snapshots
            .fetch
            .as_ref()
            .map_or(self.next, |f| f.checkpoint.height.max(self.next));
        if checkpoint.height <= current || d.height() < checkpoint.height {
            return;
        }
        // Beyond the heights whose sets this replica knows, the offer is
        // checked as a light client would: the links of the changes since
        // its sets' version, each under the set the previous ones made,
        // then the offer under the set they lead to (a change missing from
        // the links makes the offer's named set differ: refused).
        let holders = match self.membership.verify(&d) {
            Ok(()) => self
                .membership
                .at(d.height())
                .map(|s| s.validators().to_vec()),
            Err(ConsensusError::UnknownValidatorSet { .. }) => {
                let version = self.membership.version();
                let needed: Vec<Decision> = (links.iter())
                    .filter(|l| l.batch.set_change().is_some_and(|c| c.version >= version))
                    .filter(|l| l.height() >= self.next && l.height() < d.height())
                    .cloned()
                    .collect();
                match self.membership.verify_chain(&needed, &d) {
                    Ok(light) => {
                        self.snapshots.links = needed;
                        Ok(light.current().validators().to_vec())
                    }
                    Err(e @ ConsensusError::ForgedSetChangeLink { .. }) => {
                        return self.blame(from, Offence::InvalidReceipt(e.to_string()), out)
                    }
                    Err(e) => {
                        tracing::debug!(me = %self.me, error = %e, "a snapshot offer under a set not known here");
                        return;
                    }
                }
            }
            Err(e) => return self.blame(from, Offence::InvalidReceipt(e.to_string()), out),
        };
        self.snapshots.peers = holders.unwrap_or_default();
        let peer = (self.snapshots.peers.iter())
            .position(|v| *v == from)
            .unwrap_or(0);
        tracing::debug!(me = %self.me, height = checkpoint.height, from = %from, "fetching a certified snapshot");
        self.snapshots.fetch = Some(SnapshotFetch::new(d, checkpoint, peer));
        self.ask_part(now, out);
    }

    /// Asks the current peer for the next part wanted.
    fn ask_part(&mut self, now: u64, out: &mut Outputs) {
        let validators = match self.snapshots.peers.as_slice() {
            [] => self.membership.current().validators(),
            holders => holders,
        };
        let Some(f) = self.snapshots.fetch.as_mut() else {
            return;
        };
        // Never ask itself.
        if validators[f.peer % validators.len()] == self.me {
            f.peer += 1;
        }
        let peer = validators[f.peer % validators.len()];
        f.asked = Some(now);
        let request = ConsensusMessage::SnapshotRequest {
            snapshot: f.checkpoint.snapshot,
            part: f.next,
        };
        out.messages.push(Outgoing::To(peer, request));
    }

    /// A part of a snapshot: kept if it is the one wanted and verifies;
    /// the sender blamed and the next validator asked if it does not.
    pub(super) fn on_snapshot_part(
        &mut self,
        now: u64,
        from: NodeId,
        snapshot: Address,
        part: u32,
        bytes: &[u8],
        out: &mut Outputs,
    ) {
        if !self.membership.is_member(&from) && !self.snapshots.peers.contains(&from) {
            return;
        }
        let Some(f) = self.snapshots.fetch.as_mut() else {
            return;
        };
        match f.accept(snapshot, part, bytes) {
            None => {}
            Some(Err(e)) => {
                tracing::warn!(me = %self.me, from = %from, error = %e, "a snapshot part does not verify: asking another validator");
                f.peer += 1;
                self.blame(from, Offence::InvalidReceipt(e.to_string()), out);
                self.ask_part(now, out);
            }
            Some(Ok(Fetched::More)) => self.ask_part(now, out),
            Some(Ok(Fetched::Done(bytes))) => {
                if let Some(f) = self.snapshots.fetch.take() {
                    out.restore = Some(Restore {
                        decision: f.decision,
                        checkpoint: f.checkpoint,
                        bytes,
                    });
                }
            }
        }
    }

    /// On the resend timer: a part request unanswered for a resend
    /// interval goes to the next validator.
    pub(super) fn resend_snapshot_request(&mut self, now: u64, out: &mut Outputs) {
        let resend = self.config.timeouts.resend_ms;
        let Some(f) = self.snapshots.fetch.as_mut() else {
            return;
        };
        if f.asked.is_some_and(|at| now >= at.saturating_add(resend)) {
            f.peer += 1;
            self.ask_part(now, out);
        }
    }

    /// The node restored its machine from the snapshot `decision` names
    /// (an [`Outputs::restore`]): the replica moves to the snapshot's
    /// height, forgetting what it held below, and fetches the heights after
    /// it through catch-up. The node's log now starts at that height.
    pub fn install_snapshot(&mut self, now: u64, decision: Decision, out: &mut Outputs) {
        let Some(&c) = decision.batch.checkpoint() else {
            return;
        };
        if c.height <= self.next {
            return;
        }
        self.next = c.height;
        // The sets: as the offer was checked (no change between); the
        // node then gives the snapshot's own ([`Replica::restore_membership`]).
        self.membership = self.membership.clone().starting_at(c.height);
        self.sets_changed();
        self.heights = self.heights.split_off(&c.height);
        self.bodies = self.bodies.split_off(&c.height);
        self.decided = self.decided.split_off(&c.height);
        self.record.heights = self.record.heights.split_off(&c.height);
        self.settled = self.settled.split_off(&c.height);
        self.history = super::history::History::new(
            self.config.retain_decisions,
            self.config.retain_decision_bytes,
        );
        self.detector.prune_below(self.next);
        self.gate.prune_below(self.next);
        self.snapshots.log_start = c.height;
        self.snapshots.reached = self.snapshots.reached.max(c.height);
        self.snapshots.local.insert(c.height, c);
        self.snapshots.delivered(&decision);
        self.highest_seen = self.highest_seen.max(Some(decision.height()));
        self.last_sync = None;
        if let Some(peer) = self
            .membership
            .current()
            .validators()
            .iter()
            .find(|v| **v != self.me)
            .copied()
        {
            self.request_sync(now, peer, self.next, out);
        }
        self.activate(now, out);
        self.arm_resend(out);
    }
}
