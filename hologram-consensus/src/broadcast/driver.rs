//! [`BroadcastDriver`]: a [`LatticeProtocol`] core over a real [`Transport`],
//! run by the one generic [`Driver`].
//!
//! The core runs as the simulator runs it (a [`BroadcastNode`]), shared
//! behind a mutex so that its results and counters can be read while the
//! driver runs (the lock is never held across an `await`). Its
//! [`BroadcastHandler`] decodes inbound frames (bounded,
//! [`BroadcastMessage::from_wire`]), counts malformed ones in the core, and
//! queues the rest in the driver's bounded per-peer inbox
//! ([the inbox limits](hologram_lattice::driver#the-inbox-limits)). The driver sends the core's
//! outputs as one-way frames tagged [`crate::BROADCAST_PROTOCOL`] and runs its
//! repair timers. Time is milliseconds since the Unix epoch, or a [`Clock`]
//! you give it; sleeping is a runtime-free [`Timer`]. No runtime is assumed.

use super::{
    BroadcastMessage, BroadcastNode, BroadcastResult, BroadcastTimer, Delivery,
    DeliveryCertificate, DropReason, LatticeProtocol, MessageId,
};
use crate::ConsensusError;
use futures::channel::oneshot;
use hologram_lattice::driver::{inbox, Driven, Driver, Handle, Inbound, Inbox};
pub use hologram_lattice::driver::{unix_millis, Clock};
use hologram_lattice::sim::{Context, Node};
use hologram_lattice::transport::{
    async_trait, Handler, HandlerError, Protocol, Service, Timer, Transport,
};
use hologram_lattice::wire::Wire;
use hologram_lattice::PeerId;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// A local input: broadcast a body (and say its id), or repair now.
enum Control {
    Broadcast(Vec<u8>, oneshot::Sender<Result<MessageId, ConsensusError>>),
    Repair,
}

/// The node, shared between the driver and the [`BroadcastDriver`]'s readers.
struct Shared(Arc<Mutex<BroadcastNode>>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its state consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

type Ctx<'a> = Context<'a, BroadcastMessage, BroadcastTimer>;

impl Node for Shared {
    type Message = BroadcastMessage;
    type Timer = BroadcastTimer;

    fn on_message(&mut self, ctx: &mut Ctx<'_>, from: PeerId, message: BroadcastMessage) {
        lock(&self.0).on_message(ctx, from, message);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: BroadcastTimer) {
        lock(&self.0).on_timer(ctx, timer);
    }
}

impl Driven for Shared {
    const PROTOCOL: Protocol = crate::BROADCAST_PROTOCOL;
    type Control = Control;
    type Error = Infallible;

    fn on_control(&mut self, ctx: &mut Ctx<'_>, control: Control) {
        let mut node = lock(&self.0);
        match control {
            Control::Broadcast(body, reply) => {
                let _ = reply.send(node.broadcast(ctx, &body));
            }
            Control::Repair => node.on_timer(ctx, BroadcastTimer::Repair),
        }
    }
}

/// One broadcast node over a [`Transport`]: mount [`handler`](Self::handler)
/// on the node's [`ProtocolMux`](hologram_lattice::transport::ProtocolMux)
/// (or give it to the transport alone), [`attach`](Self::attach) the
/// transport, and [`run`](Self::run) the driver.
///
/// ```
/// use futures::future::{join, join_all};
/// use hologram_consensus::broadcast::{BroadcastConfig, BroadcastDriver, Directory};
/// use hologram_consensus::LatticeProtocol;
/// use hologram_lattice::transport::MemoryNetwork;
/// use hologram_receipt::KeyPair;
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let keys: Vec<KeyPair> = (1..=10u8).map(|i| KeyPair::from_seed([i; 32])).collect();
/// let dir = Directory::new(keys.iter().map(|k| k.node_id()));
/// let net = MemoryNetwork::new(1);
/// let drivers: Vec<BroadcastDriver> = keys.iter().map(|k| {
///     let core = LatticeProtocol::new(k.clone(), dir.clone(), BroadcastConfig::default(), 1);
///     let driver = BroadcastDriver::new(core);
///     driver.attach(Arc::new(net.join(k.node_id(), driver.handler())));
///     driver
/// }).collect();
/// // The eager push reaches most nodes; lazy repair (announcements, then
/// // requests for what is missing) reaches the rest, on the drivers' timers.
/// let timer = net.timer().clone();
/// let runs = join_all(drivers.iter().map(|d| d.run(&timer)));
/// let (sent, _) = futures::executor::block_on(join(
///     drivers[0].broadcast(b"hi"),
///     timer.timeout(Duration::from_secs(2), runs),
/// ));
/// sent.unwrap();
/// for d in &drivers[1..] {
///     assert_eq!(d.take_deliveries()[0].body, b"hi");
/// }
/// ```
#[derive(Clone)]
pub struct BroadcastDriver {
    node: Arc<Mutex<BroadcastNode>>,
    inbound: Inbound<Shared>,
    /// Until the driver runs.
    inbox: Arc<Mutex<Option<Inbox<Shared>>>>,
    handle: Handle<Shared>,
    transport: Arc<OnceLock<Arc<dyn Transport>>>,
    clock: Clock,
}

impl BroadcastDriver {
    /// A driver for `core`, on the Unix wall clock.
    pub fn new(core: LatticeProtocol) -> Self {
        Self::with_clock(core, Arc::new(unix_millis))
    }

    /// A driver for `core` reading time from `clock` (milliseconds).
    pub fn with_clock(core: LatticeProtocol, clock: Clock) -> Self {
        let (inbound, inbox) = inbox::<Shared>();
        Self {
            node: Arc::new(Mutex::new(BroadcastNode::new(core))),
            inbound,
            handle: inbox.handle(),
            inbox: Arc::new(Mutex::new(Some(inbox))),
            transport: Arc::default(),
            clock,
        }
    }

    /// The inbound side, a [`Service`] of [`crate::BROADCAST_PROTOCOL`] to mount
    /// on the node's [`ProtocolMux`](hologram_lattice::transport::ProtocolMux)
    /// (or to give the transport alone).
    pub fn handler(&self) -> Arc<BroadcastHandler> {
        Arc::new(BroadcastHandler {
            driver: self.clone(),
        })
    }

    /// Gives the driver its transport. Only the first call has an effect.
    pub fn attach(&self, transport: Arc<dyn Transport>) {
        let _ = self.transport.set(transport);
    }

    /// Runs `f` on the core (to read its counters, or shun a peer).
    pub fn with_core<R>(&self, f: impl FnOnce(&mut LatticeProtocol) -> R) -> R {
        f(lock(&self.node).core_mut())
    }

    /// Broadcasts `body`; returns its id once the core has taken it (the
    /// driver must be running: [`run`](Self::run)). Acknowledgements arrive
    /// later: see [`result`](Self::result).
    pub async fn broadcast(&self, body: &[u8]) -> Result<MessageId, ConsensusError> {
        let (reply, id) = oneshot::channel();
        let stopped = || ConsensusError::Stopped(self.with_core(|c| c.id()));
        let control = Control::Broadcast(body.to_vec(), reply);
        self.handle.send(control).map_err(|_| stopped())?;
        id.await.map_err(|_| stopped())?
    }

    /// The chapter's `broadcast(message) -> BroadcastResult`: broadcasts
    /// `body`, then waits until its delivery certificate is complete or
    /// `wait` has passed (polling every 5 ms on `timer`), and reports.
    pub async fn broadcast_and_wait(
        &self,
        body: &[u8],
        timer: &Timer,
        wait: Duration,
    ) -> Result<BroadcastResult, ConsensusError> {
        let id = self.broadcast(body).await?;
        let certified = async {
            while self.result(&id).is_some_and(|r| r.certificate.is_none()) {
                timer.sleep(Duration::from_millis(5)).await;
            }
        };
        let _ = timer.timeout(wait, certified).await;
        self.result(&id)
            .ok_or_else(|| ConsensusError::BroadcastForgotten(id.to_string()))
    }

    /// What one of this node's broadcasts achieved so far.
    pub fn result(&self, id: &MessageId) -> Option<BroadcastResult> {
        lock(&self.node).core().result(id)
    }

    /// The deliveries since the last call.
    pub fn take_deliveries(&self) -> Vec<Delivery> {
        std::mem::take(&mut lock(&self.node).delivered)
    }

    /// The certificates earned since the last call.
    pub fn take_certificates(&self) -> Vec<DeliveryCertificate> {
        std::mem::take(&mut lock(&self.node).certificates)
    }

    /// Frames the transport refused to send.
    pub fn send_failures(&self) -> u64 {
        self.handle.send_failures()
    }

    /// Asks the running driver for a round of repair now (it also runs one
    /// whenever the core's repair timer fires).
    pub async fn repair(&self) {
        let _ = self.handle.send(Control::Repair);
    }

    /// Runs the driver on `timer` (inbound frames, broadcasts, repair
    /// timers) until the future is dropped. It runs once: the first call
    /// takes the inbox, later ones (and a call before [`attach`](Self::attach))
    /// return at once.
    pub async fn run(&self, timer: &Timer) {
        let Some(transport) = self.transport.get().cloned() else {
            return;
        };
        let Some(inbox) = lock(&self.inbox).take() else {
            return;
        };
        let node = Shared(self.node.clone());
        let (driver, _) = Driver::new(node, transport, timer.clone(), inbox);
        let _ = driver.with_clock(self.clock.clone()).run().await;
    }
}

/// The inbound side of a [`BroadcastDriver`] ([`BroadcastDriver::handler`]).
pub struct BroadcastHandler {
    driver: BroadcastDriver,
}

#[async_trait]
impl Handler for BroadcastHandler {
    async fn request(
        &self,
        from: PeerId,
        p: Protocol,
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        self.driver.inbound.request(from, p, bytes).await
    }

    async fn message(&self, from: PeerId, _protocol: Protocol, payload: Vec<u8>) {
        match BroadcastMessage::from_wire(&payload) {
            Ok(message) => {
                self.driver.inbound.push(from, message, payload.len());
            }
            Err(_) => self
                .driver
                .with_core(|c| c.count_drop(DropReason::Malformed)),
        }
    }
}

impl Service for BroadcastHandler {
    fn protocol(&self) -> Protocol {
        crate::BROADCAST_PROTOCOL
    }
}
