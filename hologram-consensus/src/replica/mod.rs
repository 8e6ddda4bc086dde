//! The replica: a deterministic Tendermint core without I/O.

mod admission;
pub(crate) mod catchup;
mod config;
mod gate;
mod height;
mod history;
mod mempool;
mod recent;
mod record;
mod relay;
pub(crate) mod rules;
mod snapshots;

pub use config::{
    LogRead, Outgoing, Outputs, ReplicaConfig, Timeouts, Timer, DEFAULT_RETAIN_DECISION_BYTES,
    DEFAULT_SYNC_BYTES_PER_INTERVAL,
};
pub use gate::VoteChecks;
pub use record::{HeightRecord, Lock, VotingRecord};
pub use snapshots::{Restore, SnapshotRead};

use crate::batch::Batch;
use crate::command::Command;
use crate::detector::ByzantineDetector;
use crate::membership::{Membership, SetChange};
use crate::message::{ConsensusMessage, Decision, Proposal};
use crate::vote::VoteKind;
use crate::{ConsensusError, ValidatorSet};
use catchup::CatchUpServer;
use gate::VoteGate;
use height::{HeightState, Step};
use history::History;
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Receipt};
use mempool::Mempool;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Votes for rounds further than this beyond a replica's round are not
/// stored (they still count towards joining a later round).
const MAX_ROUNDS_AHEAD: u32 = 64;

/// The most validator-set changes a replica holds to propose.
pub const MAX_PENDING_SET_CHANGES: usize = 8;

/// A proposed batch known at a height in flight (its commands are claimed).
struct Body {
    batch: Batch,
}

/// A Tendermint replica.
///
/// A [`Replica`] reacts to one input at a time — a message from a peer
/// ([`Replica::handle_message`]), an expired [`Timer`]
/// ([`Replica::handle_timer`]) or commands from a client
/// ([`Replica::submit`]) — and says what to do in [`Outputs`]: messages to
/// send, timers to set, decisions made and misbehaviour detected. It never
/// sleeps, reads a clock or touches a network; the caller passes `now`.
///
/// Each height runs the algorithm of Buchman, Kwon and Milosevic, *The latest
/// gossip on BFT consensus* (2018): propose, prevote, precommit; lock on a
/// polka; the valid value is re-proposed with its polka as proof of lock;
/// timeouts grow with the round; a quorum of precommits for a value whose
/// batch is known decides it, and the precommits form the
/// [`Certificate`](crate::Certificate). A replica joins a later round when
/// `f + 1` validators are seen in it. With `max_pipeline_depth = d`, the
/// heights `next .. next + d` run as independent instances (values do not
/// depend on earlier state: commands are ordered here and executed after);
/// decisions are delivered strictly in height order, each once.
///
/// Lost messages are repaired by resending own votes and proposals of the
/// current round every `resend_ms`; a replica that sees a message of a height
/// it has decided pushes that decision to the sender, and one that sees a
/// height beyond its window asks for decisions ([`ConsensusMessage::SyncRequest`]),
/// again every resend interval until it has them — also once that height is
/// in its window but not in flight here (the cluster that decided it may be
/// idle and send nothing more).
/// It keeps the newest delivered decisions in memory
/// ([`ReplicaConfig::retain_decisions`] and
/// [`ReplicaConfig::retain_decision_bytes`]); older heights a peer asks for
/// are read from the durable log ([`Outputs::log_reads`], answered with
/// [`Replica::serve_stored`]).
/// A decision is accepted only if its commit certificate verifies against
/// the validator set, so catching up trusts no single peer.
///
/// A replica passes the proposal it holds for a round to a validator whose
/// vote of that round names another value (`relay`), so that a leader that
/// sent different proposals to different validators is proven whenever an
/// honest validator voted for either; with an honest leader nothing is sent.
/// The rules a validator decides with are written once, in `rules`.
///
/// What one peer can make a replica do is bounded. Catch-up answers (and
/// pushed decisions) go to validators only, each height at most once per
/// peer and resend interval (identical and overlapping requests are
/// answered for the heights not sent yet), and at most
/// [`ReplicaConfig::sync_bytes_per_interval`] bytes per peer and interval;
/// requests past that are dropped until the next interval, when the peer
/// asks again. Votes that can add nothing are refused before their signature
/// is verified ([`VoteChecks`] lists the rules and counts them).
pub struct Replica {
    keys: KeyPair,
    me: NodeId,
    config: ReplicaConfig,
    /// The validator set in force at each height from `next` on.
    membership: Membership,
    /// Set changes this replica's node asked it to propose.
    set_changes: Vec<SetChange>,
    /// [`Membership::members`], kept up to date (broadcast targets).
    peers: Vec<NodeId>,
    next: u64,
    heights: BTreeMap<u64, HeightState>,
    bodies: BTreeMap<u64, HashMap<Receipt, Body>>,
    decided: BTreeMap<u64, Decision>,
    history: History,
    mempool: Mempool,
    committed: recent::RecentlyCommitted,
    detector: ByzantineDetector,
    record: VotingRecord,
    resend_armed: bool,
    fill_armed: bool,
    /// The highest height a peer was seen at beyond the window, or whose
    /// decision was received.
    highest_seen: Option<u64>,
    last_sync: Option<u64>,
    /// The height this replica was at when it started asking peers for
    /// decisions (until it is no longer behind): for the catch-up logs.
    catching_up_from: Option<u64>,
    /// The mempool's size, for an application to read while a driver runs
    /// the replica ([`mempool_size`](Self::mempool_size)).
    mempool_size: Arc<AtomicUsize>,
    catch_up: CatchUpServer,
    gate: VoteGate,
    settled: BTreeMap<u64, relay::Settled>,
    snapshots: snapshots::Snapshots,
}

impl core::fmt::Debug for Replica {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.me)
            .field("next", &self.next)
            .field(
                "in_flight",
                &self
                    .heights
                    .values()
                    .map(|st| st.summary())
                    .collect::<Vec<_>>(),
            )
            .field("mempool", &self.mempool.len())
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// A replica at height 0 with nothing decided.
    pub fn new(keys: KeyPair, config: ReplicaConfig) -> Result<Self, ConsensusError> {
        Self::restore(keys, config, 0, Vec::new(), VotingRecord::default())
    }

    /// A replica restarted with what it made durable: `next` heights were
    /// delivered (the last of them in `recent`, to serve catch-up) and its
    /// voting record.
    pub fn restore(
        keys: KeyPair,
        config: ReplicaConfig,
        next: u64,
        recent: Vec<Decision>,
        record: VotingRecord,
    ) -> Result<Self, ConsensusError> {
        config.check()?;
        Ok(Self::rebuild(keys, config, next, recent, record))
    }

    /// [`restore`](Self::restore) with a configuration already checked.
    pub(crate) fn rebuild(
        keys: KeyPair,
        config: ReplicaConfig,
        next: u64,
        recent: Vec<Decision>,
        mut record: VotingRecord,
    ) -> Self {
        let me = keys.node_id();
        record.heights = record.heights.split_off(&next);
        let mut history = History::new(config.retain_decisions, config.retain_decision_bytes);
        for d in recent {
            if d.height() < next {
                history.insert(d.height(), d);
            }
        }
        let membership =
            Membership::new(config.validators.clone(), config.set_change_delay).starting_at(next);
        Self {
            peers: membership.members(),
            membership,
            set_changes: Vec::new(),
            detector: ByzantineDetector::new(config.validators.clone()).observed_by(me),
            mempool: Mempool::new(config.mempool_capacity, config.max_pipeline_depth),
            keys,
            me,
            next,
            heights: BTreeMap::new(),
            bodies: BTreeMap::new(),
            decided: BTreeMap::new(),
            history,
            committed: recent::RecentlyCommitted::default(),
            record,
            resend_armed: false,
            fill_armed: false,
            highest_seen: None,
            last_sync: None,
            catching_up_from: None,
            mempool_size: Arc::default(),
            catch_up: CatchUpServer::default(),
            gate: VoteGate::default(),
            settled: BTreeMap::new(),
            snapshots: snapshots::Snapshots::default(),
            config,
        }
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The number of commands in the mempool, kept up to date as commands
    /// are submitted and decided: clone it before handing the replica to a
    /// driver, to report it (a node's status does).
    pub fn mempool_size(&self) -> Arc<AtomicUsize> {
        self.mempool_size.clone()
    }

    /// Publishes the mempool's size (the shared value and the gauge).
    fn mempool_changed(&self) {
        let len = self.mempool.len();
        self.mempool_size.store(len, Ordering::Relaxed);
        ::metrics::gauge!("hologram_consensus_mempool_commands").set(len as f64);
    }

    pub(crate) fn keys(&self) -> &KeyPair {
        &self.keys
    }

    /// The configuration.
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// The validators in force at the next height.
    pub fn validators(&self) -> &ValidatorSet {
        self.membership.current()
    }

    /// The validator sets from the next height on (see [`Membership`]).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Every validator of the set in force and of the sets scheduled: who
    /// a replica's broadcasts go to (a joining validator among them, so it
    /// catches up before its set is in force).
    pub fn peers(&self) -> &[NodeId] {
        &self.peers
    }

    /// The sets changed: the peers and the detector follow.
    fn sets_changed(&mut self) {
        let members = self.membership.members();
        if members != self.peers {
            self.detector.set_validators(&members);
            self.peers = members;
        }
    }

    /// A restarted replica's validator sets, rebuilt by its node from what
    /// it made durable (applying its log's decisions to the genesis
    /// membership, or restoring its snapshot's): they must be at the
    /// replica's next height ([`ConsensusError::InvalidConfig`] if not, and
    /// of another delay).
    pub fn restore_membership(&mut self, membership: Membership) -> Result<(), ConsensusError> {
        if membership.next_height() != self.next
            || membership.delay() != self.config.set_change_delay
        {
            return Err(ConsensusError::InvalidConfig(format!(
                "a membership at height {} with delay {} for a replica at {} with delay {}",
                membership.next_height(),
                membership.delay(),
                self.next,
                self.config.set_change_delay
            )));
        }
        // The links held before, and those a fetched snapshot's offer
        // came with (verified), stay: nodes behind need them.
        let mut older = self.membership.links().to_vec();
        older.append(&mut self.snapshots.links);
        self.membership = membership;
        self.membership.keep_links(&older);
        self.sets_changed();
        Ok(())
    }

    /// Keeps the set-change links this node held before (see
    /// [`Membership::links`]): a restarted node's, which its snapshot does
    /// not carry.
    pub(crate) fn keep_links(&mut self, older: &[Decision]) {
        self.membership.keep_links(older);
    }

    /// Asks the replica to propose `change` when it leads (it must apply to
    /// the newest set: [`SetChange::verify`]). Give it to every validator
    /// (or several): a height led by one that does not hold it decides
    /// without it. It is dropped once a change of its version was applied.
    /// A change that does not verify is [`ConsensusError::SetChangeRefused`];
    /// more than [`MAX_PENDING_SET_CHANGES`] waiting, [`ConsensusError::TooLarge`].
    pub fn propose_set_change(
        &mut self,
        now: u64,
        change: SetChange,
        out: &mut Outputs,
    ) -> Result<(), ConsensusError> {
        change.verify(self.membership.version(), self.membership.newest())?;
        if self.set_changes.contains(&change) {
            return Ok(());
        }
        if self.set_changes.len() >= MAX_PENDING_SET_CHANGES {
            return Err(ConsensusError::TooLarge {
                what: "pending set changes",
                size: self.set_changes.len() + 1,
                max: MAX_PENDING_SET_CHANGES,
            });
        }
        self.set_changes.push(change);
        self.activate(now, out);
        self.arm_resend(out);
        Ok(())
    }

    /// The set in force at `h` (a height this replica works on or was asked about).
    pub(crate) fn set_at(&self, h: u64) -> Option<&ValidatorSet> {
        self.membership.at(h).ok()
    }

    /// Whether this replica is a validator of height `h`.
    fn member_at(&self, h: u64) -> bool {
        self.set_at(h).is_some_and(|s| s.contains(&self.me))
    }

    /// Whether this replica signs proposals and votes at height `h`: it is
    /// a validator there and does not abstain there
    /// ([`VotingRecord::abstain_below`]).
    fn signs_at(&self, h: u64) -> bool {
        h >= self.record.abstain_below && self.member_at(h)
    }

    /// The height below which this replica signs nothing, after a restart
    /// that lost its voting record (0: none; see
    /// [`Recovered::restart_record`](crate::Recovered::restart_record)).
    pub fn abstains_below(&self) -> u64 {
        self.record.abstain_below
    }

    /// The quorum of height `h` (unreachable if its set is unknown).
    fn quorum_at(&self, h: u64) -> usize {
        self.set_at(h).map_or(usize::MAX, ValidatorSet::quorum)
    }

    /// A decided height was delivered: its set change (if any) is applied.
    fn apply_membership(&mut self, d: &Decision) {
        if let Err(e) = self.membership.apply(d) {
            tracing::error!(error = %e, "membership out of step with the log");
        }
        let version = self.membership.version();
        self.set_changes.retain(|c| c.version >= version);
        self.sets_changed();
    }

    /// Whether heights must run without commands: a set change waits to be
    /// proposed, or one decided is not in force yet.
    fn reconfiguring(&self) -> bool {
        self.membership.changing() || !self.set_changes.is_empty()
    }

    /// The number of heights delivered (the next height to deliver).
    pub fn next_height(&self) -> u64 {
        self.next
    }

    /// The heights in flight.
    pub fn in_flight(&self) -> impl Iterator<Item = u64> + '_ {
        self.heights.keys().copied()
    }

    /// Commands waiting to be ordered.
    pub fn mempool_len(&self) -> usize {
        self.mempool.len()
    }

    /// The detector fed with every vote and proposal received.
    pub fn detector(&self) -> &ByzantineDetector {
        &self.detector
    }

    /// How many vote signatures this replica verified and how many votes it
    /// refused unverified (see [`VoteChecks`]).
    pub fn vote_checks(&self) -> VoteChecks {
        self.gate.checks()
    }

    /// What must survive a crash (persist it before sending the outputs).
    pub fn voting_record(&self) -> &VotingRecord {
        &self.record
    }

    /// Whether a vote or proposal of height `h` would be processed now (its
    /// height is in the window and undecided), rather than answered with a
    /// decision or a catch-up request.
    pub fn accepts_height(&self, h: u64) -> bool {
        self.in_window(h) && !self.decided.contains_key(&h)
    }

    /// A delivered decision still kept in memory.
    pub fn decision(&self, height: u64) -> Option<&Decision> {
        self.history.get(height)
    }

    /// Starts (or restarts) the replica: resumes what its mempool or voting
    /// record has in flight.
    pub fn start(&mut self, now: u64, out: &mut Outputs) {
        let submitted: Vec<Command> = self.record.submitted.values().cloned().collect();
        self.add_commands(submitted, true);
        let resume: Vec<u64> = self.record.heights.keys().copied().collect();
        for h in resume {
            if self.in_window(h) {
                self.ensure_active(now, h, out);
            }
        }
        self.activate(now, out);
        self.arm_resend(out);
    }

    /// Takes commands from a client. Commands already waiting or committed are
    /// skipped; the others must carry their client's valid signature; with
    /// `gossip`, the new ones go to every validator's mempool (and again on
    /// every resend until a proposal names them). Returns how many were new,
    /// or [`ConsensusError::MempoolFull`] or [`ConsensusError::BadCommand`]
    /// (for the first forged or altered one; nothing taken).
    pub fn submit(
        &mut self,
        now: u64,
        commands: Vec<Command>,
        gossip: bool,
        out: &mut Outputs,
    ) -> Result<usize, ConsensusError> {
        if self.mempool.len() + commands.len() > self.mempool.capacity() {
            ::metrics::counter!("hologram_consensus_mempool_rejected_total", "reason" => "full")
                .increment(commands.len() as u64);
            return Err(ConsensusError::MempoolFull {
                capacity: self.mempool.capacity(),
            });
        }
        if let Err(e) = self.verify_submitted(&commands) {
            ::metrics::counter!("hologram_consensus_mempool_rejected_total", "reason" => "invalid")
                .increment(commands.len() as u64);
            return Err(e);
        }
        let fresh = self.add_commands(commands, gossip);
        let n = fresh.len();
        if gossip {
            // This replica is the command's only way in: keep it durably.
            // (Without gossip the client sent it to every validator itself.)
            for c in &fresh {
                self.record.submitted.insert(c.id(), c.clone());
            }
            self.gossip(fresh, out);
        }
        self.activate(now, out);
        self.arm_resend(out);
        Ok(n)
    }

    /// Handles a message from `from`.
    pub fn handle_message(
        &mut self,
        now: u64,
        from: NodeId,
        message: ConsensusMessage,
        out: &mut Outputs,
    ) {
        let kind = match &message {
            ConsensusMessage::Proposal(_) => "proposal",
            ConsensusMessage::Vote(_) => "vote",
            ConsensusMessage::Decision(_) => "decision",
            ConsensusMessage::SyncRequest { .. } => "sync_request",
            ConsensusMessage::Commands(_) => "commands",
            ConsensusMessage::SnapshotOffer(..) => "snapshot_offer",
            ConsensusMessage::SnapshotRequest { .. } => "snapshot_request",
            ConsensusMessage::SnapshotPart { .. } => "snapshot_part",
        };
        received(kind);
        match message {
            ConsensusMessage::Proposal(p) => self.on_proposal(now, from, *p, out),
            ConsensusMessage::Vote(v) => self.on_vote(now, from, v, out),
            ConsensusMessage::Decision(d) => self.on_decision(now, from, *d, out),
            // A catch-up request, answered within `from`'s budget (see `catchup`).
            ConsensusMessage::SyncRequest { from: first } => {
                let last = first.saturating_add(self.config.sync_batch as u64);
                self.serve_catch_up(now, from, (first, last), out);
            }
            ConsensusMessage::Commands(commands) => self.on_commands(now, from, commands, out),
            ConsensusMessage::SnapshotOffer(d, links) => {
                self.on_snapshot_offer(now, from, *d, &links, out)
            }
            ConsensusMessage::SnapshotRequest { snapshot, part } => {
                self.on_snapshot_request(now, from, snapshot, part, out)
            }
            ConsensusMessage::SnapshotPart {
                snapshot,
                part,
                bytes,
            } => self.on_snapshot_part(now, from, snapshot, part, &bytes, out),
        }
        self.arm_resend(out);
    }

    /// Handles an expired timer.
    pub fn handle_timer(&mut self, now: u64, timer: Timer, out: &mut Outputs) {
        match timer {
            Timer::Propose { height, round } => {
                if let Some(st) = self.heights.get(&height) {
                    if st.round == round && st.step == Step::Propose {
                        tracing::debug!(
                            height,
                            round,
                            leader = ?self.set_at(height).map(|s| s.leader(height, round)),
                            me = %self.me,
                            "no proposal before the propose timeout: prevoting nil"
                        );
                        self.prevote(height, None, out);
                        self.progress(now, height, out);
                    }
                }
            }
            Timer::Prevote { height, round } => {
                if let Some(st) = self.heights.get(&height) {
                    if st.round == round && st.step == Step::Prevote {
                        self.precommit(height, None, out);
                        self.progress(now, height, out);
                    }
                }
            }
            Timer::Precommit { height, round } => {
                if self
                    .heights
                    .get(&height)
                    .is_some_and(|st| st.round == round)
                {
                    ::metrics::counter!("hologram_consensus_round_changes_total", "cause" => "timeout")
                        .increment(1);
                    self.start_round(now, height, round.saturating_add(1), out);
                }
            }
            Timer::Resend => {
                self.resend_armed = false;
                self.resend(now, out);
            }
            Timer::Fill => {
                self.fill_armed = false;
                self.start_heights(now, true, out);
            }
        }
        self.arm_resend(out);
    }

    // ---- window and activation ----

    fn window_end(&self) -> u64 {
        self.next
            .saturating_add(self.config.max_pipeline_depth as u64)
    }

    fn in_window(&self, h: u64) -> bool {
        h >= self.next && h < self.window_end()
    }

    fn busy(&self) -> bool {
        !self.heights.is_empty()
            || self.reconfiguring()
            || self.mempool.len() > 0
            || self.behind()
            || self.snapshots.fetching()
    }

    /// Whether decisions must be fetched: a peer was seen beyond the window;
    /// or the next height is neither decided nor in flight (nothing here
    /// would make it progress, and a cluster that decided it may be idle,
    /// sending nothing more) while a peer was seen at it or beyond, or later
    /// heights were decided (pushed); or the next height is past its first
    /// round: the group may have decided it while this replica missed every
    /// message of it (down, cut off, or abstaining, so that none of its own
    /// votes draws the decision back), and an idle group sends nothing more.
    fn behind(&self) -> bool {
        let seen = |from: u64| self.highest_seen.is_some_and(|h| h >= from);
        let stalled = !self.heights.contains_key(&self.next);
        let lingering = (self.heights.get(&self.next)).is_some_and(|st| st.round > 0);
        seen(self.window_end())
            || (stalled && (seen(self.next) || !self.decided.is_empty()))
            || lingering
    }

    fn arm_resend(&mut self, out: &mut Outputs) {
        if !self.resend_armed && self.busy() {
            self.resend_armed = true;
            out.timers
                .push((self.config.timeouts.resend_ms, Timer::Resend));
        }
    }

    fn add_commands(&mut self, commands: Vec<Command>, gossip: bool) -> Vec<Command> {
        let mut fresh = Vec::new();
        for c in commands {
            let id = c.id();
            if self.committed.contains(&id) || self.mempool.is_full() {
                continue;
            }
            if self.mempool.insert(id, c.clone(), gossip) {
                fresh.push(c);
            }
        }
        self.mempool_changed();
        fresh
    }

    /// Starts heights of the window while unclaimed commands are more than
    /// the heights waiting for a proposal can take; while a height is in
    /// flight, only for a fuller block (see [`ReplicaConfig::fill_commands`]).
    fn activate(&mut self, now: u64, out: &mut Outputs) {
        self.start_heights(now, false, out);
    }

    /// [`activate`](Self::activate); with `filled`, the fill timer expired:
    /// the commands waiting get a height even if they are few.
    fn start_heights(&mut self, now: u64, mut filled: bool, out: &mut Outputs) {
        loop {
            let waiting = self
                .heights
                .keys()
                .filter(|h| self.bodies.get(h).is_none_or(HashMap::is_empty))
                .count();
            let spare = self
                .mempool
                .unclaimed()
                .saturating_sub(waiting * self.config.max_batch);
            if spare == 0 {
                // A set change drives heights of its own (empty batches)
                // until it is decided and in force, one at a time.
                if self.heights.is_empty() && self.reconfiguring() {
                    let h = self.next;
                    if !self.decided.contains_key(&h) {
                        self.ensure_active(now, h, out);
                    }
                }
                return;
            }
            let fill = self.config.fill_commands.min(self.config.max_batch);
            if !self.heights.is_empty() && !filled && spare < fill {
                if !self.fill_armed {
                    self.fill_armed = true;
                    out.timers.push((self.config.fill_ms, Timer::Fill));
                }
                return;
            }
            filled = false;
            let next_free = (self.next..self.window_end())
                .find(|h| !self.heights.contains_key(h) && !self.decided.contains_key(h));
            match next_free {
                Some(h) => self.ensure_active(now, h, out),
                None => return,
            }
        }
    }

    /// Creates height `h`'s instance if it has none (resuming its record).
    fn ensure_active(&mut self, now: u64, h: u64, out: &mut Outputs) {
        if self.heights.contains_key(&h) || self.decided.contains_key(&h) || !self.in_window(h) {
            return;
        }
        let mut st = HeightState::new(h);
        st.started = now;
        let mut lock = None;
        let round = match self.record.heights.get(&h) {
            Some(rec) => {
                lock = rec.locked.clone();
                rec.last_round()
            }
            None => 0,
        };
        if let Some(lock) = &lock {
            st.valid = Some(lock.clone());
            for v in lock.proof.votes() {
                st.votes_mut(VoteKind::Prevote, lock.round()).add(v);
            }
        }
        self.heights.insert(h, st);
        if let Some(lock) = lock {
            self.store_body(h, lock.value(), &lock.batch);
        }
        self.start_round(now, h, round, out);
    }

    fn start_round(&mut self, now: u64, h: u64, round: u32, out: &mut Outputs) {
        let Some(st) = self.heights.get_mut(&h) else {
            return;
        };
        st.enter_round(round);
        if self
            .heights
            .first_key_value()
            .is_some_and(|(&first, _)| first == h)
        {
            ::metrics::gauge!("hologram_consensus_round").set(round);
        }
        let Some(leader) = self.set_at(h).map(|s| s.leader(h, round)) else {
            return;
        };
        if round > 0 {
            tracing::debug!(height = h, round, %leader, "entering a later round");
        }
        // The leader sets the timer too: if it cannot propose (its recorded
        // proposal's batch was lost in a crash), it prevotes nil on time.
        let after = self
            .config
            .timeouts
            .in_round(self.config.timeouts.propose_ms, round);
        out.timers
            .push((after, Timer::Propose { height: h, round }));
        if leader == self.me {
            self.propose(h, round, out);
        }
        self.progress(now, h, out);
    }

    fn body(&self, h: u64, value: &Receipt) -> Option<&Body> {
        self.bodies.get(&h)?.get(value)
    }

    fn store_proposal(&mut self, h: u64, proposal: Proposal) {
        self.store_body(h, proposal.header.value, &proposal.batch);
        if let Some(st) = self.heights.get_mut(&h) {
            st.proposals
                .entry(proposal.header.round)
                .or_insert(proposal);
        }
    }

    /// Remembers the batch of `value` at `h`; its commands are claimed.
    fn store_body(&mut self, h: u64, value: Receipt, batch: &Batch) {
        if let std::collections::hash_map::Entry::Vacant(slot) =
            self.bodies.entry(h).or_default().entry(value)
        {
            for c in batch.commands() {
                self.mempool.claim(&c.id());
            }
            slot.insert(Body {
                batch: batch.clone(),
            });
        }
    }
}

/// Counts a message of `kind` handled (static labels: no allocation).
fn received(kind: &'static str) {
    match kind {
        "proposal" => ::metrics::counter!("hologram_consensus_messages_received_total", "kind" => "proposal").increment(1),
        "vote" => ::metrics::counter!("hologram_consensus_messages_received_total", "kind" => "vote").increment(1),
        "decision" => ::metrics::counter!("hologram_consensus_messages_received_total", "kind" => "decision").increment(1),
        "sync_request" => ::metrics::counter!("hologram_consensus_messages_received_total", "kind" => "sync_request").increment(1),
        "snapshot_offer" => ::metrics::counter!("hologram_consensus_messages_received_total", "kind" => "snapshot_offer").increment(1),
        "snapshot_request" => ::metrics::counter!("hologram_consensus_messages_received_total", "kind" => "snapshot_request").increment(1),
        "snapshot_part" => ::metrics::counter!("hologram_consensus_messages_received_total", "kind" => "snapshot_part").increment(1),
        _ => ::metrics::counter!("hologram_consensus_messages_received_total", "kind" => "commands").increment(1),
    }
}

mod inbound;
mod tendermint;
