//! A [`Replica`] as a node: of the deterministic simulator of
//! `hologram-lattice`, and of the one generic driver
//! ([`ReplicaDriver`](crate::ReplicaDriver)).
//!
//! [`SimReplica`] implements [`Node`] for a [`Replica`]: broadcasts go to
//! every other validator (as one message to many, which a driver encodes
//! once), timers to the clock of what runs it. In the simulator its durable
//! state is its log of decisions and its [`VotingRecord`]: after each input
//! they are written before anything is sent (in the simulator, sends happen
//! after the handler returns), and [`Recover::recover`] rebuilds the replica
//! from them alone, as a process restarting from its store would. Under a
//! driver the same node writes the round's decisions and its voting record
//! to a [`DurableLog`] in one write, before anything of the round is sent
//! when the round signed something new (write-ahead), else while the
//! round's messages are sent; then it hands the decisions on (see
//! [`crate::ReplicaDriver`]).

mod machine;

use crate::detector::Misbehaviour;
use crate::driver::{Local, Submit};
use crate::message::{ConsensusMessage, Decision};
use crate::persist::DurableLog;
use crate::replica::{LogRead, Outgoing, Outputs, Replica, ReplicaConfig, Timer, VotingRecord};
use crate::snapshot::SnapshotParts;
use crate::{Command, ConsensusError, Membership, SetChange};
use futures::channel::{mpsc, oneshot};
use hologram_lattice::driver::Driven;
use hologram_lattice::sim::{Context, Node, Recover};
use hologram_lattice::transport::Protocol;
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use hologram_receipt::KeyPair;

type Ctx<'a> = Context<'a, ConsensusMessage, Timer>;

/// Where the result of a submission goes.
pub(crate) type Reply = oneshot::Sender<Result<usize, ConsensusError>>;

/// A replica as a simulator node (or a driver's), with its durable log and record.
pub struct SimReplica {
    pub(crate) replica: Replica,
    outputs: Outputs,
    /// Decisions delivered, in height order: all of them in the simulator;
    /// under a driver, those of the round until they are handed on.
    log: Vec<Decision>,
    record: VotingRecord,
    /// The set-change links this node holds (durable in the simulator,
    /// as the log is: a snapshot does not carry them).
    links: Vec<Decision>,
    /// The height of `log[0]` (the log below it was compacted).
    log_first: u64,
    misbehaviour: Vec<Misbehaviour>,
    pub(crate) driven: Option<Attached>,
    /// The replicated state machine the node runs, if any.
    machine: Option<machine::Machine>,
}

/// What a node run by a driver has besides its replica.
pub(crate) struct Attached {
    pub(crate) store: Option<DurableLog>,
    /// Catch-up reads from the store asked for in the round (at most one
    /// per peer), done in [`Driven::recall`].
    reads: Vec<LogRead>,
    replies: Vec<(Reply, Result<usize, ConsensusError>)>,
    decisions: mpsc::UnboundedSender<Decision>,
}

impl core::fmt::Debug for SimReplica {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SimReplica")
            .field("replica", &self.replica)
            .field("log", &self.log.len())
            .finish_non_exhaustive()
    }
}

impl SimReplica {
    /// A fresh replica.
    pub fn new(keys: KeyPair, config: ReplicaConfig) -> Result<Self, ConsensusError> {
        Ok(Self::of(Replica::new(keys, config)?, Vec::new(), None))
    }

    fn of(replica: Replica, log: Vec<Decision>, driven: Option<Attached>) -> Self {
        Self {
            record: replica.voting_record().clone(),
            links: Vec::new(),
            replica,
            outputs: Outputs::default(),
            log,
            log_first: 0,
            misbehaviour: Vec::new(),
            driven,
            machine: None,
        }
    }

    /// `replica` as a driver's node: decisions go to `decisions` once settled.
    pub(crate) fn driven(replica: Replica, decisions: mpsc::UnboundedSender<Decision>) -> Self {
        let attached = Attached {
            store: None,
            reads: Vec::new(),
            replies: Vec::new(),
            decisions,
        };
        Self::of(replica, Vec::new(), Some(attached))
    }

    /// The replica.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The decisions delivered, in height order (the durable log): every
    /// one from [`log_first`](Self::log_first) on (the heights below it are
    /// in the certified snapshot the log was compacted to).
    pub fn log(&self) -> &[Decision] {
        &self.log
    }

    /// The height of the first decision in [`log`](Self::log): 0 until the
    /// log is compacted.
    pub fn log_first(&self) -> u64 {
        self.log_first
    }

    /// Misbehaviour detected since the last restart.
    pub fn misbehaviour(&self) -> &[Misbehaviour] {
        &self.misbehaviour
    }

    /// Submits commands (see [`Replica::submit`]).
    pub fn submit(
        &mut self,
        ctx: &mut Ctx<'_>,
        commands: Vec<Command>,
        gossip: bool,
    ) -> Result<usize, ConsensusError> {
        self.act(ctx, |r, now, out| r.submit(now, commands, gossip, out))
    }

    /// Asks the replica to propose a validator-set change (see
    /// [`Replica::propose_set_change`]).
    pub fn propose_set_change(
        &mut self,
        ctx: &mut Ctx<'_>,
        change: SetChange,
    ) -> Result<(), ConsensusError> {
        self.act(ctx, |r, now, out| r.propose_set_change(now, change, out))
    }

    /// Runs one input on the replica, keeps what is durable (in the
    /// simulator: before the handler returns and anything is sent), then
    /// hands the messages and timers to `ctx`.
    fn act<R>(
        &mut self,
        ctx: &mut Ctx<'_>,
        f: impl FnOnce(&mut Replica, u64, &mut Outputs) -> R,
    ) -> R {
        let result = f(&mut self.replica, ctx.now(), &mut self.outputs);
        self.run_machine(ctx.now());
        let out = &mut self.outputs;
        self.log.append(&mut out.decisions);
        match &mut self.driven {
            Some(d) => d.reads.append(&mut out.log_reads),
            // The simulator's durable log is `log`: read at once.
            None => {
                for read in std::mem::take(&mut out.log_reads) {
                    let first = read.first.saturating_sub(self.log_first);
                    let end = read.end.saturating_sub(self.log_first);
                    let end = end.min(self.log.len() as u64);
                    let stored = self
                        .log
                        .get(first.min(end) as usize..end as usize)
                        .unwrap_or_default();
                    self.replica.serve_stored(ctx.now(), read, stored, out);
                }
            }
        }
        if self.driven.is_some() {
            out.misbehaviour.clear();
        } else {
            self.misbehaviour.append(&mut out.misbehaviour);
            if self.links.len() != self.replica.membership().links().len()
                || self.links.last() != self.replica.membership().links().last()
            {
                self.links = self.replica.membership().links().to_vec();
            }
            if self.record != *self.replica.voting_record() {
                self.record = self.replica.voting_record().clone();
            }
        }
        let me = ctx.id();
        for m in out.messages.drain(..) {
            match m {
                Outgoing::Broadcast(msg) => {
                    let others = self.replica.peers().iter();
                    ctx.send_all(others.filter(|v| **v != me).copied().collect(), msg);
                }
                Outgoing::To(to, msg) if to != me => ctx.send(to, msg),
                Outgoing::To(..) => {}
            }
        }
        for (after, timer) in out.timers.drain(..) {
            ctx.set_timer(after, timer);
        }
        result
    }
}

impl Node for SimReplica {
    type Message = ConsensusMessage;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        self.act(ctx, |r, now, out| r.start(now, out));
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, from: NodeId, message: ConsensusMessage) {
        // A driver's decoder checked the bounds already; the simulator's
        // corrupted copies are checked here.
        if self.driven.is_none() && message.check_decoded().is_err() {
            return;
        }
        self.act(ctx, |r, now, out| r.handle_message(now, from, message, out));
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: Timer) {
        self.act(ctx, |r, now, out| r.handle_timer(now, timer, out));
    }
}

impl Recover for SimReplica {
    fn recover(&self) -> Self {
        let (keys, config) = (self.replica.keys().clone(), self.replica.config().clone());
        let recent = self.log[self.log.len().saturating_sub(config.retain_decisions)..].to_vec();
        let next = self.log_first + self.log.len() as u64;
        let mut replica = Replica::rebuild(keys, config, next, recent, self.record.clone());
        // The validator sets: the genesis membership with the log applied
        // (a log compacted to a snapshot starts from the snapshot's
        // height, assuming no change before it).
        let config = replica.config();
        let mut membership = Membership::new(config.validators.clone(), config.set_change_delay)
            .starting_at(self.log_first);
        for d in &self.log {
            let _ = membership.apply(d);
        }
        if let Err(e) = replica.restore_membership(membership) {
            tracing::error!(error = %e, "the log does not rebuild the validator sets");
        }
        let mut node = Self::of(replica, self.log.clone(), None);
        node.log_first = self.log_first;
        if let Some(m) = &self.machine {
            let machine = m.recover(&mut node.replica, &node.log);
            // The machine's sets (restored from its snapshot, the log
            // applied since) are the replica's.
            if let Err(e) = node
                .replica
                .restore_membership(machine.executor().membership().clone())
            {
                tracing::error!(error = %e, "the machine's validator sets do not fit the replica");
            }
            node.machine = Some(machine);
        }
        node.replica.keep_links(&self.links);
        node.links = node.replica.membership().links().to_vec();
        node
    }
}

impl Driven for SimReplica {
    const PROTOCOL: Protocol = crate::CONSENSUS_PROTOCOL;
    type Control = Submit;
    type Error = ConsensusError;

    fn on_control(&mut self, ctx: &mut Ctx<'_>, s: Submit) {
        let result = match s.input {
            Local::Commands(commands, gossip) => self.submit(ctx, commands, gossip),
            Local::SetChange(change) => self.propose_set_change(ctx, change).map(|()| 0),
        };
        match &mut self.driven {
            Some(d) => d.replies.push((s.reply, result)),
            None => drop(s.reply.send(result)),
        }
    }

    async fn persist(&mut self) -> Result<(), ConsensusError> {
        let pending = self
            .machine
            .as_mut()
            .and_then(machine::Machine::take_pending);
        let Some(store) = self.driven.as_mut().and_then(|d| d.store.as_mut()) else {
            return Ok(());
        };
        // A snapshot beyond what this round appends was fetched (the log
        // jumps to it first); one within it compacts what was appended.
        let end = store.len() + self.log.len() as u64;
        let height =
            |(d, _): &(Decision, SnapshotParts)| d.batch.checkpoint().map_or(0, |c| c.height);
        let (jump, compact) = match pending {
            Some(p) if height(&p) > end => (Some(p), None),
            other => (None, other),
        };
        if let Some((d, parts)) = &jump {
            store.install_snapshot(d, parts).await?;
        }
        let persisted = store.persist(&self.log, self.replica.voting_record()).await;
        if let Err(e) = &persisted {
            tracing::error!(me = %self.replica.id(), error = %e,
                            "the durable log failed: the replica stops");
        }
        persisted?;
        if let Some((d, parts)) = &compact {
            store.install_snapshot(d, parts).await?;
        }
        if let Some(p) = jump.as_ref().or(compact.as_ref()) {
            self.replica.compacted(height(p));
        }
        Ok(())
    }

    /// Write-ahead when the step signed something new (the voting record
    /// gained or changed a height's votes, proposals or lock; the argument
    /// is on the record's `needs_write_ahead`) or a snapshot moves the log:
    /// otherwise (decisions delivered, commands submitted or gossiped,
    /// votes received, re-sends) the step's messages go out while its
    /// blocks and record are written, and its decisions and answers are
    /// handed on only after the write.
    fn write_ahead(&self) -> bool {
        let Some(store) = self.driven.as_ref().and_then(|d| d.store.as_ref()) else {
            return false;
        };
        self.machine
            .as_ref()
            .is_some_and(machine::Machine::has_pending)
            || self
                .replica
                .voting_record()
                .needs_write_ahead(store.record())
    }

    async fn recall(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ConsensusError> {
        let Some(driven) = self.driven.as_mut() else {
            return Ok(());
        };
        for read in std::mem::take(&mut driven.reads) {
            let stored = match self.driven.as_ref().and_then(|d| d.store.as_ref()) {
                Some(log) => log.read(read.first, read.end, read.max_bytes).await?,
                None => Vec::new(),
            };
            self.act(ctx, |r, now, out| r.serve_stored(now, read, &stored, out));
        }
        Ok(())
    }

    fn settle(&mut self) {
        if let Some(d) = &mut self.driven {
            for (reply, result) in d.replies.drain(..) {
                let _ = reply.send(result);
            }
            for decision in self.log.drain(..) {
                let _ = d.decisions.unbounded_send(decision);
            }
        }
    }
}
