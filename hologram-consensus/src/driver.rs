//! A [`Replica`] over a [`Transport`], run by the one generic
//! [`Driver`].
//!
//! [`ReplicaNode`] is the replica as that driver runs it: the same
//! [`Node`] glue as the simulator's [`SimReplica`](crate::SimReplica)
//! (broadcasts to every other validator, timers to the driver's clock), with
//! a [`DurableLog`] as its durable state ([`ReplicaDriver::with_log`]):
//! decisions and the voting record are written *before* any message of the
//! round is sent, any decision handed on or any submission acknowledged
//! (write-ahead). If the store fails, the driver stops without sending what
//! it could not make durable ([`ReplicaDriver::try_run`] says why).
//!
//! [`ConsensusHandler`] is the inbound side (register it for
//! [`crate::CONSENSUS_PROTOCOL`]): it decodes each frame with the bounded decoder
//! and queues it in a bounded inbox, one queue per peer served in turn
//! (limits and the policy when full: [the inbox limits](hologram_lattice::driver#the-inbox-limits)); malformed frames are
//! dropped there. The driver takes at most [`ROUND_INPUTS`] peer messages
//! before it acts and has at most [`SENDS_IN_FLIGHT`] messages encoded and
//! in flight. [`DriverHandle`] submits commands and stops the driver. No
//! runtime is assumed: `run` is a plain future.

use crate::message::{ConsensusMessage, Decision};
use crate::persist::DurableLog;
use crate::replica::{Outputs, Replica, Timer as ReplicaTimer};
use crate::sim::send_outputs;
use crate::{Command, ConsensusError};
use futures::channel::{mpsc, oneshot};
use hologram_lattice::driver::{self, Driven, Driver, Handle, Inbound, InboxStats};
use hologram_lattice::sim::{Context, Node};
use hologram_lattice::transport::{Protocol, Timer, Transport};
use hologram_lattice::NodeId;
use std::sync::Arc;

/// Where the result of a submission goes.
type Reply = oneshot::Sender<Result<usize, ConsensusError>>;

/// Commands for a [`ReplicaNode`] to submit ([`Replica::submit`]), and
/// where its answer goes: a [`ReplicaNode`]'s local input.
pub struct Submit {
    commands: Vec<Command>,
    gossip: bool,
    reply: Reply,
}

/// A [`Replica`] as the generic driver runs it (module docs).
pub struct ReplicaNode {
    replica: Replica,
    outputs: Outputs,
    log: Option<DurableLog>,
    /// Decided this round: persisted, then handed on.
    decided: Vec<Decision>,
    replies: Vec<(Reply, Result<usize, ConsensusError>)>,
    decisions: mpsc::UnboundedSender<Decision>,
}

impl ReplicaNode {
    /// Runs one input on the replica, then hands its outputs on.
    fn act(
        &mut self,
        ctx: &mut Context<'_, ConsensusMessage, ReplicaTimer>,
        f: impl FnOnce(&mut Replica, u64, &mut Outputs),
    ) {
        f(&mut self.replica, ctx.now(), &mut self.outputs);
        self.decided.append(&mut self.outputs.decisions);
        self.outputs.misbehaviour.clear();
        send_outputs(ctx, self.replica.id(), &self.replica, &mut self.outputs);
    }
}

impl Node for ReplicaNode {
    type Message = ConsensusMessage;
    type Timer = ReplicaTimer;

    fn on_start(&mut self, ctx: &mut Context<'_, ConsensusMessage, ReplicaTimer>) {
        self.act(ctx, |r, now, out| r.start(now, out));
    }

    fn on_message(
        &mut self,
        ctx: &mut Context<'_, ConsensusMessage, ReplicaTimer>,
        from: NodeId,
        message: ConsensusMessage,
    ) {
        self.act(ctx, |r, now, out| r.handle_message(now, from, message, out));
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, ConsensusMessage, ReplicaTimer>, t: ReplicaTimer) {
        self.act(ctx, |r, now, out| r.handle_timer(now, t, out));
    }
}

impl Driven for ReplicaNode {
    const PROTOCOL: Protocol = crate::CONSENSUS_PROTOCOL;
    type Control = Submit;
    type Error = ConsensusError;

    fn decode(frame: &[u8]) -> Option<ConsensusMessage> {
        ConsensusMessage::decode(frame).ok()
    }

    fn encode(message: &ConsensusMessage) -> Option<Vec<u8>> {
        message.encode().ok()
    }

    fn on_control(&mut self, ctx: &mut Context<'_, ConsensusMessage, ReplicaTimer>, s: Submit) {
        let mut result = Ok(0);
        self.act(ctx, |r, now, out| {
            result = r.submit(now, s.commands, s.gossip, out);
        });
        self.replies.push((s.reply, result));
    }

    async fn persist(&mut self) -> Result<(), ConsensusError> {
        if let Some(log) = &mut self.log {
            log.persist(&self.decided, self.replica.voting_record())
                .await?;
        }
        Ok(())
    }

    fn settle(&mut self) {
        for (reply, result) in self.replies.drain(..) {
            let _ = reply.send(result);
        }
        for d in self.decided.drain(..) {
            let _ = self.decisions.unbounded_send(d);
        }
    }
}

/// The inbound side of a replica: decodes frames and queues them.
pub type ConsensusHandler = Inbound<ReplicaNode>;

/// The queues between a [`ConsensusHandler`] and its driver.
pub type Inbox = driver::Inbox<ReplicaNode>;

/// A handler and the inbox it fills: mount the handler on the node's
/// [`ProtocolMux`](hologram_lattice::transport::ProtocolMux), then give the
/// inbox to [`ReplicaDriver::new`].
pub fn inbox() -> (ConsensusHandler, Inbox) {
    driver::inbox()
}

/// Submits commands to a running driver and stops it.
#[derive(Clone)]
pub struct DriverHandle {
    id: NodeId,
    handle: Handle<ReplicaNode>,
}

impl DriverHandle {
    /// Submits commands (see [`Replica::submit`]).
    pub async fn submit(
        &self,
        commands: Vec<Command>,
        gossip: bool,
    ) -> Result<usize, ConsensusError> {
        let (reply, answer) = oneshot::channel();
        let submit = Submit {
            commands,
            gossip,
            reply,
        };
        let stopped = |_| ConsensusError::Stopped(self.id);
        self.handle.send(submit).map_err(stopped)?;
        answer.await.map_err(|_| ConsensusError::Stopped(self.id))?
    }

    /// How full the driver's inbox of peer messages is, and what it dropped
    /// (see [the inbox limits](hologram_lattice::driver#the-inbox-limits)).
    pub fn inbox_stats(&self) -> InboxStats {
        self.handle.inbox_stats()
    }

    /// Asks the driver to stop after the input it is handling.
    pub fn stop(&self) {
        self.handle.stop();
    }
}

/// Runs a replica over a transport.
pub struct ReplicaDriver {
    driver: Driver<ReplicaNode>,
}

impl ReplicaDriver {
    /// A driver for `replica` over `transport`, fed by `inbox` (whose
    /// handler the transport's node serves for [`crate::CONSENSUS_PROTOCOL`]).
    /// Returns it, a handle, and the stream of decisions (in height order).
    pub fn new(
        replica: Replica,
        transport: Arc<dyn Transport>,
        timer: Timer,
        inbox: Inbox,
    ) -> (Self, DriverHandle, mpsc::UnboundedReceiver<Decision>) {
        let (decisions, receiver) = mpsc::unbounded();
        let id = replica.id();
        let node = ReplicaNode {
            replica,
            outputs: Outputs::default(),
            log: None,
            decided: Vec::new(),
            replies: Vec::new(),
            decisions,
        };
        let (driver, handle) = Driver::new(node, transport, timer, inbox);
        (Self { driver }, DriverHandle { id, handle }, receiver)
    }

    /// Makes the replica's outputs durable in `log` before they are acted
    /// on. The replica should have been restored from the same log
    /// ([`Recovered::replica`](crate::Recovered::replica)).
    pub fn with_log(mut self, log: DurableLog) -> Self {
        self.driver.node_mut().log = Some(log);
        self
    }

    /// Runs until stopped (or every handle and handler is dropped, or the
    /// store fails: see [`try_run`](Self::try_run)).
    pub async fn run(self) -> Replica {
        self.try_run().await.0
    }

    /// Runs until stopped; also returns the store error that stopped it, if
    /// one did (nothing it failed to persist was sent).
    pub async fn try_run(self) -> (Replica, Result<(), ConsensusError>) {
        let (node, result) = self.driver.run().await;
        (node.replica, result)
    }
}
