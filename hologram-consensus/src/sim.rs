//! Running replicas in the deterministic simulator of `hologram-lattice`.
//!
//! [`SimReplica`] implements [`hologram_lattice::sim::Node`] for a
//! [`Replica`]: broadcasts go to every other validator, timers to the
//! simulator's clock, and delivered decisions are appended to the replica's
//! log. The log and the [`VotingRecord`] are its durable state: after each
//! input they are written before anything is sent (in the simulator, sends
//! happen after the handler returns), and [`Recover::recover`] rebuilds the
//! replica from them alone, as a process restarting from its store would.

use crate::detector::Misbehaviour;
use crate::message::{ConsensusMessage, Decision};
use crate::replica::{Outgoing, Outputs, Replica, ReplicaConfig, Timer, VotingRecord};
use crate::{Command, ConsensusError};
use hologram_lattice::sim::{Context, Node, Recover};
use hologram_lattice::NodeId;
use hologram_receipt::KeyPair;

/// A replica as a simulator node, with its durable log and record.
pub struct SimReplica {
    replica: Replica,
    keys: KeyPair,
    config: ReplicaConfig,
    log: Vec<Decision>,
    record: VotingRecord,
    misbehaviour: Vec<Misbehaviour>,
    outputs: Outputs,
}

impl core::fmt::Debug for SimReplica {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SimReplica")
            .field("replica", &self.replica)
            .field("log", &self.log.len())
            .finish_non_exhaustive()
    }
}

impl Clone for SimReplica {
    /// A copy made from the durable state only (as after a restart).
    fn clone(&self) -> Self {
        self.recover()
    }
}

impl SimReplica {
    /// A fresh replica.
    pub fn new(keys: KeyPair, config: ReplicaConfig) -> Result<Self, ConsensusError> {
        Ok(Self {
            replica: Replica::new(keys.clone(), config.clone())?,
            keys,
            config,
            log: Vec::new(),
            record: VotingRecord::default(),
            misbehaviour: Vec::new(),
            outputs: Outputs::default(),
        })
    }

    /// The replica.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Every decision delivered, in height order (the durable log).
    pub fn log(&self) -> &[Decision] {
        &self.log
    }

    /// Misbehaviour detected since the last restart.
    pub fn misbehaviour(&self) -> &[Misbehaviour] {
        &self.misbehaviour
    }

    /// Submits commands (see [`Replica::submit`]).
    pub fn submit(
        &mut self,
        ctx: &mut Context<'_, ConsensusMessage, Timer>,
        commands: Vec<Command>,
        gossip: bool,
    ) -> Result<usize, ConsensusError> {
        let mut out = std::mem::take(&mut self.outputs);
        let result = self.replica.submit(ctx.now(), commands, gossip, &mut out);
        self.apply(ctx, out);
        result
    }

    /// Persists, then performs the outputs.
    fn apply(&mut self, ctx: &mut Context<'_, ConsensusMessage, Timer>, mut out: Outputs) {
        self.log.append(&mut out.decisions);
        if self.record != *self.replica.voting_record() {
            self.record = self.replica.voting_record().clone();
        }
        self.misbehaviour.append(&mut out.misbehaviour);
        let me = ctx.id();
        send_outputs(ctx, me, &self.replica, &mut out);
        out.clear();
        self.outputs = out;
    }
}

/// Hands a replica's messages and timers to `ctx`, the same in the
/// simulator and the driver: a broadcast goes to every other validator (as
/// one message to many, which a driver encodes once), nothing to `me`.
pub(crate) fn send_outputs(
    ctx: &mut Context<'_, ConsensusMessage, Timer>,
    me: NodeId,
    replica: &Replica,
    out: &mut Outputs,
) {
    for m in out.messages.drain(..) {
        match m {
            Outgoing::Broadcast(msg) => {
                let others = replica.validators().validators().iter();
                ctx.send_all(others.filter(|v| **v != me).copied().collect(), msg);
            }
            Outgoing::To(to, msg) if to != me => ctx.send(to, msg),
            Outgoing::To(..) => {}
        }
    }
    for (after, timer) in out.timers.drain(..) {
        ctx.set_timer(after, timer);
    }
}

impl Node for SimReplica {
    type Message = ConsensusMessage;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Context<'_, ConsensusMessage, Timer>) {
        let mut out = std::mem::take(&mut self.outputs);
        self.replica.start(ctx.now(), &mut out);
        self.apply(ctx, out);
    }

    fn on_message(
        &mut self,
        ctx: &mut Context<'_, ConsensusMessage, Timer>,
        from: NodeId,
        message: ConsensusMessage,
    ) {
        let mut out = std::mem::take(&mut self.outputs);
        if message.check_bounds().is_ok() {
            self.replica
                .handle_message(ctx.now(), from, message, &mut out);
        }
        self.apply(ctx, out);
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, ConsensusMessage, Timer>, timer: Timer) {
        let mut out = std::mem::take(&mut self.outputs);
        self.replica.handle_timer(ctx.now(), timer, &mut out);
        self.apply(ctx, out);
    }
}

impl Recover for SimReplica {
    fn recover(&self) -> Self {
        let keep = self.config.retain_decisions;
        let recent = self.log[self.log.len().saturating_sub(keep)..].to_vec();
        Self {
            replica: Replica::rebuild(
                self.keys.clone(),
                self.config.clone(),
                self.log.len() as u64,
                recent,
                self.record.clone(),
            ),
            keys: self.keys.clone(),
            config: self.config.clone(),
            log: self.log.clone(),
            record: self.record.clone(),
            misbehaviour: Vec::new(),
            outputs: Outputs::default(),
        }
    }
}
