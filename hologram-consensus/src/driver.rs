//! A [`Replica`] over a [`Transport`], run by the one generic [`Driver`].
//!
//! The driver runs the replica as the simulator does, as a
//! [`SimReplica`] (broadcasts to every other validator, timers to the
//! driver's clock), with a [`DurableLog`] as its durable state
//! ([`ReplicaDriver::with_log`]): a round's decisions and the voting record
//! are written in one atomic write before any decision is handed on or any
//! submission acknowledged, and *before* any message of the round is sent
//! when the round signed something new (write-ahead: a vote, a proposal, a
//! lock; see [`Driven::write_ahead`](hologram_lattice::driver::Driven::write_ahead)).
//! A round that signed nothing new (decisions delivered, commands
//! submitted, votes received) sends while it writes, so a height's path
//! carries only the writes of its own signatures. If the store fails, the
//! driver stops without sending what it could not make durable
//! ([`ReplicaDriver::try_run`] says why).
//!
//! [`ConsensusHandler`] is the inbound side (register it for
//! [`crate::CONSENSUS_PROTOCOL`]): it decodes each frame with the bounded decoder
//! and queues it in a bounded inbox, one queue per peer served in turn
//! (limits and the policy when full: [the inbox limits](hologram_lattice::driver#the-inbox-limits)); malformed frames are
//! dropped there. The driver takes at most [`ROUND_INPUTS`] peer messages
//! before it acts and has at most [`SENDS_IN_FLIGHT`] messages encoded and
//! in flight. [`DriverHandle`] submits commands and set changes, and stops the driver. No
//! runtime is assumed: `run` is a plain future.

use crate::message::Decision;
use crate::persist::{DurableLog, Recovered};
use crate::replica::Replica;
use crate::sim::Reply;
use crate::snapshot::{Executor, SnapshotConfig};
use crate::{Command, ConsensusError, SetChange, SimReplica};
use futures::channel::{mpsc, oneshot};
use hologram_lattice::driver::{self, Driver, Handle, Inbound, InboxStats};
use hologram_lattice::transport::{Timer, Transport};
use hologram_lattice::NodeId;
use std::sync::Arc;

/// Commands for a driven [`SimReplica`] to submit ([`Replica::submit`]),
/// or a validator-set change for it to propose
/// ([`Replica::propose_set_change`]), and where its answer goes: the
/// node's local input.
pub struct Submit {
    pub(crate) input: Local,
    pub(crate) reply: Reply,
}

/// What a [`Submit`] carries.
pub(crate) enum Local {
    /// Commands, and whether to gossip them.
    Commands(Vec<Command>, bool),
    /// A set change to propose.
    SetChange(SetChange),
}

/// The inbound side of a replica: decodes frames and queues them.
pub type ConsensusHandler = Inbound<SimReplica>;

/// The queues between a [`ConsensusHandler`] and its driver.
pub type Inbox = driver::Inbox<SimReplica>;

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
    handle: Handle<SimReplica>,
}

impl DriverHandle {
    /// Submits commands (see [`Replica::submit`]).
    pub async fn submit(
        &self,
        commands: Vec<Command>,
        gossip: bool,
    ) -> Result<usize, ConsensusError> {
        self.local(Local::Commands(commands, gossip)).await
    }

    /// Asks the replica to propose a validator-set change when it leads
    /// (see [`Replica::propose_set_change`]: it must verify against the
    /// newest set, else [`ConsensusError::SetChangeRefused`]).
    pub async fn propose_set_change(&self, change: SetChange) -> Result<(), ConsensusError> {
        self.local(Local::SetChange(change)).await.map(|_| ())
    }

    async fn local(&self, input: Local) -> Result<usize, ConsensusError> {
        let (reply, answer) = oneshot::channel();
        let stopped = |_| ConsensusError::Stopped(self.id);
        self.handle.send(Submit { input, reply }).map_err(stopped)?;
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
    driver: Driver<SimReplica>,
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
        let node = SimReplica::driven(replica, decisions);
        let (driver, handle) = Driver::new(node, transport, timer, inbox);
        (Self { driver }, DriverHandle { id, handle }, receiver)
    }

    /// Makes the replica's outputs durable in `log` before they are acted
    /// on. The replica should have been restored from the same log
    /// ([`Recovered::replica`](crate::Recovered::replica)).
    pub fn with_log(mut self, log: DurableLog) -> Self {
        if let Some(attached) = &mut self.driver.node_mut().driven {
            attached.store = Some(log);
        }
        self
    }

    /// Runs the replicated state machine `factory` makes on the decisions,
    /// snapshotted as `config` says, as
    /// [`SimReplica::with_machine`](crate::SimReplica::with_machine) does;
    /// the durable log is compacted to each certified snapshot (and moved
    /// to a fetched one) when the round is persisted. `recovered` is what
    /// the log was opened with ([`DurableLog::open`], which keeps every
    /// decision after the snapshot): the machine is restored from its
    /// snapshot and those decisions are applied again.
    pub fn with_machine(
        mut self,
        factory: impl Fn() -> Box<dyn Executor> + Send + Sync + 'static,
        config: SnapshotConfig,
        recovered: &Recovered,
    ) -> Result<Self, ConsensusError> {
        self.driver
            .node_mut()
            .attach_machine(Arc::new(factory), config, recovered)?;
        Ok(self)
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
