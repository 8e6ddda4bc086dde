//! Drivers over a [`Transport`]: a participant and a coordinator as async
//! nodes of a real network, each a [`TxnNode`] run by the one generic
//! [`Driver`].

use crate::coordinator::{CoordinatorCore, TxnResult};
use crate::node::{Begin, CoordinatorNode, ParticipantNode, TxnNode};
use crate::participant::{ParticipantConfig, ParticipantCore};
use crate::{Op, ShardMap, TxnError, TxnId};
use futures::channel::oneshot;
use hologram_cam::Store;
use hologram_lattice::driver::{self, Driver, Handle, Inbound};
use hologram_lattice::transport::{Timer, Transport};
use hologram_lattice::NodeId;
use hologram_receipt::KeyPair;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The inbound side of a transactional node: decodes frames and queues them.
pub type TxnHandler = Inbound<TxnNode>;

/// The queue between a [`TxnHandler`] and its driver.
pub type Inbox = driver::Inbox<TxnNode>;

/// A handler and the inbox it fills: mount the handler (a
/// [`Service`](hologram_lattice::transport::Service) of [`crate::TXN_PROTOCOL`])
/// on the node's [`ProtocolMux`](hologram_lattice::transport::ProtocolMux),
/// then give the inbox to a driver.
pub fn inbox() -> (TxnHandler, Inbox) {
    driver::inbox()
}

/// Stops a running driver ([`Handle::stop`]) and reads its inbox's counts.
pub type StopHandle = Handle<TxnNode>;

/// Runs a [`ParticipantCore`] over a transport and a store (module docs).
///
/// They exchange the same one-way [`TxnMessage`](crate::TxnMessage)s the simulation carries,
/// under [`crate::TXN_PROTOCOL`]. [`TxnHandler`] is the inbound side (register it
/// for `crate::TXN_PROTOCOL`): it decodes each frame with the bounded decoder
/// (malformed frames are dropped there) and queues it for the node's driver
/// in a bounded inbox, one queue per peer served in turn
/// ([the inbox limits](hologram_lattice::driver#the-inbox-limits)). The driver feeds queued
/// messages and due timers to the sans-I/O core (a [`TxnNode`]) and then
/// performs the core's effects in the order recovery depends on: the
/// durable writes first (one atomic [`Store::put_batch`] a round), and only
/// then the messages and timers. If the store fails, the driver stops
/// without sending what it could not make durable. No runtime is assumed:
/// `run` is a plain future, timers come from a [`Timer`].
///
/// - [`ParticipantDriver`] runs a [`ParticipantCore`] over a [`Store`],
///   recovery timers included: a primary decides abort when a transaction
///   stays undecided, a secondary left prepared asks its primary until it
///   learns the decision. So a coordinator that crashes at any step leaves
///   nobody waiting forever.
/// - [`CoordinatorDriver`] runs a [`CoordinatorCore`]; a [`TxnClient`] begins
///   transactions on it and waits for their results.
pub struct ParticipantDriver {
    driver: Driver<TxnNode>,
    handle: Handle<TxnNode>,
}

impl ParticipantDriver {
    /// The participant `keys` serves from `store`: recovered from what the
    /// store holds (prepared transactions, decisions, values), or new on an
    /// empty store.
    pub async fn open<S: Store + 'static>(
        keys: KeyPair,
        config: ParticipantConfig,
        map: ShardMap,
        store: Arc<S>,
        transport: Arc<dyn Transport>,
        timer: Timer,
        inbox: Inbox,
    ) -> Result<Self, TxnError> {
        let core = ParticipantCore::open(keys, config, map, store.as_ref()).await?;
        Ok(Self::new(core, store, transport, timer, inbox))
    }

    /// A driver for `core` (whatever it has not yet made durable goes to
    /// `store` before anything is sent).
    pub fn new<S: Store + 'static>(
        core: ParticipantCore,
        store: Arc<S>,
        transport: Arc<dyn Transport>,
        timer: Timer,
        inbox: Inbox,
    ) -> Self {
        let node = TxnNode::Participant(Box::new(ParticipantNode::driven(core, store)));
        let (driver, handle) = Driver::new(node, transport, timer, inbox);
        ParticipantDriver { driver, handle }
    }

    /// A handle that stops the driver.
    pub fn stop_handle(&self) -> StopHandle {
        self.handle.clone()
    }

    /// Runs until stopped, every handler is dropped, or the store fails;
    /// returns the core and the store error that stopped it, if one did
    /// (nothing it failed to make durable was sent).
    pub async fn run(self) -> (ParticipantCore, Result<(), TxnError>) {
        drop(self.handle);
        match self.driver.run().await {
            (TxnNode::Participant(p), result) => match p.into_core() {
                Ok(core) => (core, result),
                Err(_) => unreachable!("a driven participant has its core"),
            },
            (TxnNode::Coordinator(_), _) => unreachable!("a participant driver runs a participant"),
        }
    }
}

/// Runs a [`CoordinatorCore`] over a transport (module docs). It keeps
/// nothing durable: a coordinator that stops forgets its transactions, and
/// the participants' recovery timers settle them.
pub struct CoordinatorDriver {
    driver: Driver<TxnNode>,
    handle: Handle<TxnNode>,
}

impl CoordinatorDriver {
    /// A driver for `core`.
    pub fn new(
        core: CoordinatorCore,
        transport: Arc<dyn Transport>,
        timer: Timer,
        inbox: Inbox,
    ) -> Self {
        let node = TxnNode::Coordinator(CoordinatorNode::with_core(core));
        let (driver, handle) = Driver::new(node, transport, timer, inbox);
        CoordinatorDriver { driver, handle }
    }

    /// A client that begins transactions on this coordinator.
    pub fn client(&self) -> TxnClient {
        TxnClient {
            handle: self.handle.clone(),
        }
    }

    /// A handle that stops the driver.
    pub fn stop_handle(&self) -> StopHandle {
        self.handle.clone()
    }

    /// Runs until stopped or every handler and client is dropped; returns
    /// the core. Callers still waiting get [`TxnError::CoordinatorStopped`].
    pub async fn run(self) -> CoordinatorCore {
        drop(self.handle);
        match self.driver.run().await.0 {
            TxnNode::Coordinator(c) => c.into_core(),
            TxnNode::Participant(_) => unreachable!("a coordinator driver runs a coordinator"),
        }
    }
}

/// Begins transactions on a running [`CoordinatorDriver`].
#[derive(Clone)]
pub struct TxnClient {
    handle: Handle<TxnNode>,
}

impl TxnClient {
    /// Runs transaction `txn` (each participant's ops, routed with shard map
    /// `map_version`; the participant with the smallest id is the primary)
    /// and returns how it ended: the commit receipt, or why it aborted.
    pub async fn execute(
        &self,
        txn: TxnId,
        map_version: u64,
        writes: BTreeMap<NodeId, Vec<Op>>,
    ) -> TxnResult {
        let (reply, result) = oneshot::channel();
        let begin = Begin {
            txn,
            map_version,
            writes,
            reply,
        };
        self.handle
            .send(begin)
            .map_err(|_| TxnError::CoordinatorStopped)?;
        result.await.map_err(|_| TxnError::CoordinatorStopped)?
    }
}
