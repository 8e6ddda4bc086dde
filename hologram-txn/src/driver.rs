//! Drivers over a [`Transport`]: a participant and a coordinator as async
//! nodes of a real network, run by the one generic
//! [`Driver`].

use crate::coordinator::{CoordinatorCore, TxnResult};
use crate::effects::Persist;
use crate::node::{deliver, TxnTimer};
use crate::participant::records::load_records;
use crate::participant::{ParticipantConfig, ParticipantCore};
use crate::{Op, ShardMap, TxnError, TxnId, TxnMessage};
use futures::channel::oneshot;
use hologram_cam::Store;
use hologram_lattice::driver::{self, Driven, Driver, Handle, Inbound};
use hologram_lattice::sim::{Context, Node};
use hologram_lattice::transport::{Protocol, Timer, Transport};
use hologram_lattice::NodeId;
use hologram_receipt::KeyPair;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A transaction a [`TxnClient`] asks its coordinator to run: a
/// [`TxnPeer`]'s local input.
pub struct Begin {
    txn: TxnId,
    map_version: u64,
    writes: BTreeMap<NodeId, Vec<Op>>,
    reply: oneshot::Sender<TxnResult>,
}

/// A participant or a coordinator as the generic driver runs it.
pub enum TxnPeer {
    /// A participant with its store and the writes of the round so far.
    Participant {
        /// The core.
        core: Box<ParticipantCore>,
        /// Where its durable writes go.
        store: Arc<dyn Store>,
        /// The round's writes, made before anything of it is sent.
        persist: Persist,
    },
    /// A coordinator with the callers waiting on its transactions.
    Coordinator {
        /// The core.
        core: CoordinatorCore,
        /// Where each transaction's result goes.
        waiting: BTreeMap<TxnId, oneshot::Sender<TxnResult>>,
    },
}

impl TxnPeer {
    /// Hands what the core did to `ctx`; a participant's writes wait for
    /// the round's end.
    fn flush(&mut self, ctx: &mut Context<'_, TxnMessage, TxnTimer>) {
        match self {
            TxnPeer::Participant { core, persist, .. } => {
                let mut effects = core.take_effects();
                persist.put.append(&mut effects.persist.put);
                persist.remove.append(&mut effects.persist.remove);
                deliver(ctx, effects, TxnTimer::Participant);
            }
            TxnPeer::Coordinator { core, .. } => {
                deliver(ctx, core.take_effects(), TxnTimer::Coordinator);
            }
        }
    }
}

impl Node for TxnPeer {
    type Message = TxnMessage;
    type Timer = TxnTimer;

    fn on_start(&mut self, ctx: &mut Context<'_, TxnMessage, TxnTimer>) {
        self.flush(ctx);
    }

    fn on_message(
        &mut self,
        ctx: &mut Context<'_, TxnMessage, TxnTimer>,
        from: NodeId,
        message: TxnMessage,
    ) {
        match self {
            TxnPeer::Participant { core, .. } => core.on_message(from, message),
            TxnPeer::Coordinator { core, .. } => core.on_message(from, message),
        }
        self.flush(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, TxnMessage, TxnTimer>, timer: TxnTimer) {
        match (&mut *self, timer) {
            (TxnPeer::Participant { core, .. }, TxnTimer::Participant(t)) => core.on_timer(t),
            (TxnPeer::Coordinator { core, .. }, TxnTimer::Coordinator(t)) => {
                core.on_timer(ctx.now(), t)
            }
            _ => {}
        }
        self.flush(ctx);
    }
}

impl Driven for TxnPeer {
    const PROTOCOL: Protocol = crate::TXN_PROTOCOL;
    type Control = Begin;
    type Error = TxnError;

    fn decode(frame: &[u8]) -> Option<TxnMessage> {
        TxnMessage::from_wire(frame).ok()
    }

    fn encode(message: &TxnMessage) -> Option<Vec<u8>> {
        message.to_wire().ok()
    }

    fn on_control(&mut self, ctx: &mut Context<'_, TxnMessage, TxnTimer>, begin: Begin) {
        let TxnPeer::Coordinator { core, waiting } = self else {
            let refused = TxnError::Transport("a participant does not coordinate".into());
            let _ = begin.reply.send(Err(refused));
            return;
        };
        if waiting.contains_key(&begin.txn) {
            let _ = begin.reply.send(Err(TxnError::ContentsDiffer(begin.txn)));
            return;
        }
        match core.begin(ctx.now(), begin.txn, begin.map_version, begin.writes) {
            Ok(()) => {
                waiting.insert(begin.txn, begin.reply);
            }
            Err(e) => {
                let _ = begin.reply.send(Err(e));
            }
        }
        self.flush(ctx);
    }

    async fn persist(&mut self) -> Result<(), TxnError> {
        if let TxnPeer::Participant { store, persist, .. } = self {
            std::mem::take(persist).apply(store.as_ref()).await?;
        }
        Ok(())
    }

    fn settle(&mut self) {
        if let TxnPeer::Coordinator { core, waiting } = self {
            for (txn, result) in core.take_completed() {
                if let Some(reply) = waiting.remove(&txn) {
                    let _ = reply.send(result);
                }
            }
        }
    }
}

/// The inbound side of a transactional node: decodes frames and queues them.
pub type TxnHandler = Inbound<TxnPeer>;

/// The queue between a [`TxnHandler`] and its driver.
pub type Inbox = driver::Inbox<TxnPeer>;

/// A handler and the inbox it fills: mount the handler (a
/// [`Service`](hologram_lattice::transport::Service) of [`crate::TXN_PROTOCOL`])
/// on the node's [`ProtocolMux`](hologram_lattice::transport::ProtocolMux),
/// then give the inbox to a driver.
pub fn inbox() -> (TxnHandler, Inbox) {
    driver::inbox()
}

/// Stops a running driver.
#[derive(Clone)]
pub struct StopHandle {
    handle: Handle<TxnPeer>,
}

impl StopHandle {
    /// Asks the driver to stop after the input it is handling.
    pub fn stop(&self) {
        self.handle.stop();
    }
}

/// Runs a [`ParticipantCore`] over a transport and a store (module docs).
///
/// They exchange the same one-way [`TxnMessage`]s the simulation carries,
/// under [`crate::TXN_PROTOCOL`]. [`TxnHandler`] is the inbound side (register it
/// for `crate::TXN_PROTOCOL`): it decodes each frame with the bounded decoder
/// (malformed frames are dropped there) and queues it for the node's driver
/// in a bounded inbox, one queue per peer served in turn
/// ([the inbox limits](hologram_lattice::driver#the-inbox-limits)). The driver feeds queued
/// messages and due timers to the sans-I/O core ([`TxnPeer`]) and then
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
    driver: Driver<TxnPeer>,
    handle: Handle<TxnPeer>,
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
        let records = load_records(store.as_ref()).await?;
        let mut core = if records.is_empty() {
            ParticipantCore::new(keys, config, map)?
        } else {
            ParticipantCore::recover(keys, config, map, records)?
        };
        core.on_start();
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
        let peer = TxnPeer::Participant {
            core: Box::new(core),
            store,
            persist: Persist::default(),
        };
        let (driver, handle) = Driver::new(peer, transport, timer, inbox);
        ParticipantDriver { driver, handle }
    }

    /// A handle that stops the driver.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            handle: self.handle.clone(),
        }
    }

    /// Runs until stopped, every handler is dropped, or the store fails;
    /// returns the core and the store error that stopped it, if one did
    /// (nothing it failed to make durable was sent).
    pub async fn run(self) -> (ParticipantCore, Result<(), TxnError>) {
        drop(self.handle);
        match self.driver.run().await {
            (TxnPeer::Participant { core, .. }, result) => (*core, result),
            (TxnPeer::Coordinator { .. }, _) => {
                unreachable!("a participant driver runs a participant")
            }
        }
    }
}

/// Runs a [`CoordinatorCore`] over a transport (module docs). It keeps
/// nothing durable: a coordinator that stops forgets its transactions, and
/// the participants' recovery timers settle them.
pub struct CoordinatorDriver {
    driver: Driver<TxnPeer>,
    handle: Handle<TxnPeer>,
}

impl CoordinatorDriver {
    /// A driver for `core`.
    pub fn new(
        core: CoordinatorCore,
        transport: Arc<dyn Transport>,
        timer: Timer,
        inbox: Inbox,
    ) -> Self {
        let peer = TxnPeer::Coordinator {
            core,
            waiting: BTreeMap::new(),
        };
        let (driver, handle) = Driver::new(peer, transport, timer, inbox);
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
        StopHandle {
            handle: self.handle.clone(),
        }
    }

    /// Runs until stopped or every handler and client is dropped; returns
    /// the core. Callers still waiting get [`TxnError::Transport`].
    pub async fn run(self) -> CoordinatorCore {
        drop(self.handle);
        match self.driver.run().await.0 {
            TxnPeer::Coordinator { core, .. } => core,
            TxnPeer::Participant { .. } => unreachable!("a coordinator driver runs a coordinator"),
        }
    }
}

/// Begins transactions on a running [`CoordinatorDriver`].
#[derive(Clone)]
pub struct TxnClient {
    handle: Handle<TxnPeer>,
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
        let stopped = || TxnError::Transport("the coordinator stopped".into());
        let (reply, result) = oneshot::channel();
        let begin = Begin {
            txn,
            map_version,
            writes,
            reply,
        };
        self.handle.send(begin).map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}
