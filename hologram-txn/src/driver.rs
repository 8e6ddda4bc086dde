//! Drivers over a [`Transport`]: a participant and a coordinator as async
//! nodes of a real network.
//!
//! They exchange the same one-way [`TxnMessage`]s the simulation carries,
//! under [`crate::TXN_PROTOCOL`]. [`TxnHandler`] is the inbound side (register it
//! for `crate::TXN_PROTOCOL`): it decodes each frame with the bounded decoder
//! (malformed frames are dropped there) and queues it for the node's driver.
//! A driver feeds queued messages and due timers to its sans-I/O core and
//! then performs the core's effects in the order recovery depends on: the
//! durable writes first (one atomic [`Store::put_batch`]), and only then the
//! messages and timers. If the store fails, the driver stops without
//! sending what it could not make durable. No runtime is assumed: `run` is a
//! plain future, timers come from a [`Timer`].
//!
//! - [`ParticipantDriver`] runs a [`ParticipantCore`] over a [`Store`],
//!   recovery timers included: a primary decides abort when a transaction
//!   stays undecided, a secondary left prepared asks its primary until it
//!   learns the decision. So a coordinator that crashes at any step leaves
//!   nobody waiting forever.
//! - [`CoordinatorDriver`] runs a [`CoordinatorCore`]; a [`TxnClient`] begins
//!   transactions on it and waits for their results.

use crate::coordinator::{CoordinatorCore, CoordinatorTimer, TxnResult};
use crate::participant::records::load_records;
use crate::participant::{ParticipantConfig, ParticipantCore, ParticipantTimer};
use crate::{Effects, Op, ShardMap, TxnError, TxnId, TxnMessage};
use futures::channel::{mpsc, oneshot};
use futures::future::{join_all, select, Either};
use futures::StreamExt;
use hologram_cam::Store;
use hologram_lattice::sim::Millis;
use hologram_lattice::transport::{
    async_trait, Handler, HandlerError, Protocol, Service, Timer, Transport,
};
use hologram_lattice::NodeId;
use hologram_receipt::KeyPair;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a driver's queue carries.
enum Input {
    Message(NodeId, TxnMessage),
    Begin(Begin),
    Stop,
}

/// A transaction a [`TxnClient`] asks its coordinator to run.
struct Begin {
    txn: TxnId,
    map_version: u64,
    writes: BTreeMap<NodeId, Vec<Op>>,
    reply: oneshot::Sender<TxnResult>,
}

/// The inbound side of a transactional node: decodes frames and queues them.
#[derive(Clone)]
pub struct TxnHandler {
    inbox: mpsc::UnboundedSender<Input>,
}

#[async_trait]
impl Handler for TxnHandler {
    async fn request(&self, _: NodeId, _: Protocol, _: Vec<u8>) -> Result<Vec<u8>, HandlerError> {
        Err(HandlerError::Refused(
            "transaction nodes exchange one-way messages".into(),
        ))
    }

    async fn message(&self, from: NodeId, _: Protocol, payload: Vec<u8>) {
        if let Ok(message) = TxnMessage::from_wire(&payload) {
            // A closed queue means the driver stopped: the frame is moot.
            let _ = self.inbox.unbounded_send(Input::Message(from, message));
        }
    }
}

impl Service for TxnHandler {
    fn protocol(&self) -> Protocol {
        crate::TXN_PROTOCOL
    }
}

/// The queue between a [`TxnHandler`] and its driver.
pub struct Inbox {
    sender: mpsc::UnboundedSender<Input>,
    receiver: mpsc::UnboundedReceiver<Input>,
}

/// A handler and the inbox it fills: mount the handler (a [`Service`] of
/// [`crate::TXN_PROTOCOL`]) on the node's
/// [`ProtocolMux`](hologram_lattice::transport::ProtocolMux), then give the
/// inbox to a driver.
pub fn inbox() -> (TxnHandler, Inbox) {
    let (sender, receiver) = mpsc::unbounded();
    (
        TxnHandler {
            inbox: sender.clone(),
        },
        Inbox { sender, receiver },
    )
}

/// Stops a running driver.
#[derive(Clone)]
pub struct StopHandle {
    inbox: mpsc::UnboundedSender<Input>,
}

impl StopHandle {
    /// Asks the driver to stop after the input it is handling.
    pub fn stop(&self) {
        let _ = self.inbox.unbounded_send(Input::Stop);
    }
}

/// What a driver needs of its core.
trait Core {
    type Timer;
    fn message(&mut self, from: NodeId, message: TxnMessage);
    fn timer(&mut self, now: Millis, timer: Self::Timer);
    fn begin(&mut self, now: Millis, begin: Begin);
    fn effects(&mut self) -> Effects<Self::Timer>;
    /// After the effects are performed: hand results on.
    fn settle(&mut self) {}
}

/// The loop both drivers share: inputs and due timers into the core, then
/// its effects, durable writes first.
struct Loop<C: Core> {
    core: C,
    store: Option<Arc<dyn Store>>,
    transport: Arc<dyn Transport>,
    timer: Timer,
    inbox: mpsc::UnboundedReceiver<Input>,
    started: Instant,
    /// Due time, then order of setting, then the timer's slot in `pending`.
    due: BinaryHeap<Reverse<(Millis, u64)>>,
    pending: BTreeMap<u64, C::Timer>,
    next: u64,
}

impl<C: Core> Loop<C> {
    fn new(
        core: C,
        store: Option<Arc<dyn Store>>,
        transport: Arc<dyn Transport>,
        timer: Timer,
        inbox: Inbox,
    ) -> Self {
        Loop {
            core,
            store,
            transport,
            timer,
            inbox: inbox.receiver,
            started: Instant::now(),
            due: BinaryHeap::new(),
            pending: BTreeMap::new(),
            next: 0,
        }
    }

    fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
    }

    async fn drive(&mut self) -> Result<(), TxnError> {
        self.perform().await?;
        loop {
            let now = self.now();
            while let Some(&Reverse((at, slot))) = self.due.peek() {
                if at > now {
                    break;
                }
                self.due.pop();
                if let Some(t) = self.pending.remove(&slot) {
                    self.core.timer(now, t);
                }
            }
            self.perform().await?;
            let wait = match self.due.peek() {
                Some(Reverse((at, _))) => Duration::from_millis(at.saturating_sub(now)),
                None => Duration::from_secs(3600),
            };
            let input = match select(self.inbox.next(), self.timer.sleep(wait)).await {
                Either::Left((Some(input), _)) => input,
                Either::Left((None, _)) => return Ok(()),
                Either::Right(_) => continue,
            };
            let mut go_on = self.handle(input);
            // Take what else is queued first: one round of writes and sends.
            while go_on {
                match self.inbox.try_recv() {
                    Ok(input) => go_on = self.handle(input),
                    Err(_) => break,
                }
            }
            self.perform().await?;
            if !go_on {
                return Ok(());
            }
        }
    }

    fn handle(&mut self, input: Input) -> bool {
        let now = self.now();
        match input {
            Input::Message(from, message) => self.core.message(from, message),
            Input::Begin(begin) => self.core.begin(now, begin),
            Input::Stop => return false,
        }
        true
    }

    /// Durable writes, then timers and messages (sent concurrently); on a
    /// store error nothing is sent.
    async fn perform(&mut self) -> Result<(), TxnError> {
        let effects = self.core.effects();
        if let Some(store) = &self.store {
            effects.persist.apply(store.as_ref()).await?;
        }
        let now = self.now();
        for (after, t) in effects.timers {
            self.next += 1;
            self.due
                .push(Reverse((now.saturating_add(after), self.next)));
            self.pending.insert(self.next, t);
        }
        let sends = effects.send.into_iter().filter_map(|(to, message)| {
            let bytes = message.to_wire().ok()?;
            Some(self.transport.send(to, crate::TXN_PROTOCOL, bytes))
        });
        // A send that fails is a lost message: the cores resend.
        join_all(sends).await;
        self.core.settle();
        Ok(())
    }
}

impl Core for ParticipantCore {
    type Timer = ParticipantTimer;
    fn message(&mut self, from: NodeId, message: TxnMessage) {
        self.on_message(from, message);
    }
    fn timer(&mut self, _: Millis, timer: ParticipantTimer) {
        self.on_timer(timer);
    }
    fn begin(&mut self, _: Millis, begin: Begin) {
        let _ = begin.reply.send(Err(TxnError::Transport(
            "a participant does not coordinate".into(),
        )));
    }
    fn effects(&mut self) -> Effects<ParticipantTimer> {
        self.take_effects()
    }
}

/// Runs a [`ParticipantCore`] over a transport and a store (module docs).
pub struct ParticipantDriver {
    inner: Loop<ParticipantCore>,
    sender: mpsc::UnboundedSender<Input>,
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
        let sender = inbox.sender.clone();
        let store: Arc<dyn Store> = store;
        ParticipantDriver {
            inner: Loop::new(core, Some(store), transport, timer, inbox),
            sender,
        }
    }

    /// A handle that stops the driver.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            inbox: self.sender.clone(),
        }
    }

    /// Runs until stopped, every handler is dropped, or the store fails;
    /// returns the core and the store error that stopped it, if one did
    /// (nothing it failed to make durable was sent).
    pub async fn run(mut self) -> (ParticipantCore, Result<(), TxnError>) {
        let result = self.inner.drive().await;
        (self.inner.core, result)
    }
}

/// A coordinator core with the callers waiting on its transactions.
struct Coordinating {
    core: CoordinatorCore,
    waiting: BTreeMap<TxnId, oneshot::Sender<TxnResult>>,
}

impl Core for Coordinating {
    type Timer = CoordinatorTimer;
    fn message(&mut self, from: NodeId, message: TxnMessage) {
        self.core.on_message(from, message);
    }
    fn timer(&mut self, now: Millis, timer: CoordinatorTimer) {
        self.core.on_timer(now, timer);
    }
    fn begin(&mut self, now: Millis, begin: Begin) {
        if self.waiting.contains_key(&begin.txn) {
            let _ = begin.reply.send(Err(TxnError::ContentsDiffer(begin.txn)));
            return;
        }
        match self
            .core
            .begin(now, begin.txn, begin.map_version, begin.writes)
        {
            Ok(()) => {
                self.waiting.insert(begin.txn, begin.reply);
            }
            Err(e) => {
                let _ = begin.reply.send(Err(e));
            }
        }
    }
    fn effects(&mut self) -> Effects<CoordinatorTimer> {
        self.core.take_effects()
    }
    fn settle(&mut self) {
        for (txn, result) in self.core.take_completed() {
            if let Some(reply) = self.waiting.remove(&txn) {
                let _ = reply.send(result);
            }
        }
    }
}

/// Runs a [`CoordinatorCore`] over a transport (module docs). It keeps
/// nothing durable: a coordinator that stops forgets its transactions, and
/// the participants' recovery timers settle them.
pub struct CoordinatorDriver {
    inner: Loop<Coordinating>,
    sender: mpsc::UnboundedSender<Input>,
}

impl CoordinatorDriver {
    /// A driver for `core`.
    pub fn new(
        core: CoordinatorCore,
        transport: Arc<dyn Transport>,
        timer: Timer,
        inbox: Inbox,
    ) -> Self {
        let sender = inbox.sender.clone();
        let core = Coordinating {
            core,
            waiting: BTreeMap::new(),
        };
        CoordinatorDriver {
            inner: Loop::new(core, None, transport, timer, inbox),
            sender,
        }
    }

    /// A client that begins transactions on this coordinator.
    pub fn client(&self) -> TxnClient {
        TxnClient {
            inbox: self.sender.clone(),
        }
    }

    /// A handle that stops the driver.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            inbox: self.sender.clone(),
        }
    }

    /// Runs until stopped or every handler and client is dropped; returns
    /// the core. Callers still waiting get [`TxnError::Transport`].
    pub async fn run(mut self) -> CoordinatorCore {
        // No store, so the loop cannot fail.
        let _ = self.inner.drive().await;
        self.inner.core.core
    }
}

/// Begins transactions on a running [`CoordinatorDriver`].
#[derive(Clone)]
pub struct TxnClient {
    inbox: mpsc::UnboundedSender<Input>,
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
        self.inbox
            .unbounded_send(Input::Begin(Begin {
                txn,
                map_version,
                writes,
                reply,
            }))
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}
