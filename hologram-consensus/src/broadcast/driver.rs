//! [`BroadcastDriver`]: a [`LatticeProtocol`] core over a real [`Transport`].
//!
//! The driver owns the core behind a mutex, decodes inbound frames (bounded,
//! [`BroadcastMessage::decode`]) through its [`Handler`], and sends the
//! core's outputs as one-way frames tagged [`crate::BROADCAST_PROTOCOL`]. It never
//! holds the lock across an `await`. It reads the wall clock (milliseconds
//! since the Unix epoch, or a clock you give it) and, for repair, a
//! runtime-free [`Timer`]. No runtime is assumed.

use super::{
    BroadcastMessage, BroadcastResult, Delivery, DeliveryCertificate, DropReason, LatticeProtocol,
    MessageId, Output,
};
use crate::ConsensusError;
use futures::future::join_all;
use hologram_lattice::transport::{
    async_trait, Handler, HandlerError, Protocol, Service, Timer, Transport,
};
use hologram_lattice::PeerId;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A clock in milliseconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct Shared {
    core: Mutex<LatticeProtocol>,
    transport: OnceLock<Arc<dyn Transport>>,
    clock: Clock,
    delivered: Mutex<Vec<Delivery>>,
    certificates: Mutex<Vec<DeliveryCertificate>>,
    repair_armed: AtomicBool,
    send_failures: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its state consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One broadcast node over a [`Transport`]: mount [`handler`](Self::handler)
/// on the node's [`ProtocolMux`](hologram_lattice::transport::ProtocolMux)
/// (or give it to the transport alone), and [`attach`](Self::attach) the
/// transport.
///
/// ```
/// use hologram_consensus::broadcast::{BroadcastConfig, BroadcastDriver, Directory, LatticeProtocol};
/// use hologram_lattice::transport::MemoryNetwork;
/// use hologram_receipt::KeyPair;
/// use std::sync::Arc;
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
/// futures::executor::block_on(drivers[0].broadcast(b"hi")).unwrap();
/// // The eager push reaches most nodes; lazy repair (announcements, then
/// // requests for what is missing) reaches the rest. A real node runs it on
/// // a timer (`run_repair`); here, two rounds by hand.
/// for _ in 0..2 {
///     for d in &drivers {
///         futures::executor::block_on(d.repair());
///     }
/// }
/// for d in &drivers[1..] {
///     assert_eq!(d.take_deliveries()[0].body, b"hi");
/// }
/// ```
#[derive(Clone)]
pub struct BroadcastDriver {
    shared: Arc<Shared>,
}

impl BroadcastDriver {
    /// A driver for `core`, on the Unix wall clock.
    pub fn new(core: LatticeProtocol) -> Self {
        Self::with_clock(core, Arc::new(unix_millis))
    }

    /// A driver for `core` reading time from `clock` (milliseconds).
    pub fn with_clock(core: LatticeProtocol, clock: Clock) -> Self {
        Self {
            shared: Arc::new(Shared {
                core: Mutex::new(core),
                transport: OnceLock::new(),
                clock,
                delivered: Mutex::new(Vec::new()),
                certificates: Mutex::new(Vec::new()),
                repair_armed: AtomicBool::new(false),
                send_failures: AtomicU64::new(0),
            }),
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

    /// Gives the driver its transport. Only the first call has an effect;
    /// until then, outputs that need the network are dropped.
    pub fn attach(&self, transport: Arc<dyn Transport>) {
        let _ = self.shared.transport.set(transport);
    }

    /// Runs `f` on the core (to read its counters, or shun a peer).
    pub fn with_core<R>(&self, f: impl FnOnce(&mut LatticeProtocol) -> R) -> R {
        f(&mut lock(&self.shared.core))
    }

    /// Broadcasts `body`; returns once the first copies were handed to the
    /// transport. Acknowledgements arrive later: see [`result`](Self::result).
    pub async fn broadcast(&self, body: &[u8]) -> Result<MessageId, ConsensusError> {
        let mut out = Vec::new();
        let id = lock(&self.shared.core).broadcast((self.shared.clock)(), body, &mut out)?;
        self.apply(out).await;
        Ok(id)
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
        lock(&self.shared.core).result(id)
    }

    /// The deliveries since the last call.
    pub fn take_deliveries(&self) -> Vec<Delivery> {
        std::mem::take(&mut *lock(&self.shared.delivered))
    }

    /// The certificates earned since the last call.
    pub fn take_certificates(&self) -> Vec<DeliveryCertificate> {
        std::mem::take(&mut *lock(&self.shared.certificates))
    }

    /// Frames the transport refused to send.
    pub fn send_failures(&self) -> u64 {
        self.shared.send_failures.load(Ordering::Relaxed)
    }

    /// One round of repair, if the core asked for one.
    pub async fn repair(&self) {
        if self.shared.repair_armed.swap(false, Ordering::AcqRel) {
            let mut out = Vec::new();
            lock(&self.shared.core).on_repair_timer(&mut out);
            self.apply(out).await;
        }
    }

    /// Runs repair rounds every `repair_interval_ms` on `timer`, forever
    /// (drop the future to stop).
    pub async fn run_repair(&self, timer: &Timer) {
        let interval = lock(&self.shared.core).config().repair_interval_ms.max(1);
        loop {
            timer.sleep(Duration::from_millis(interval)).await;
            self.repair().await;
        }
    }

    /// Handles one inbound frame.
    async fn receive(&self, from: PeerId, payload: &[u8]) {
        let mut out = Vec::new();
        {
            let mut core = lock(&self.shared.core);
            match BroadcastMessage::decode(payload) {
                Ok(message) => core.handle((self.shared.clock)(), from, message, &mut out),
                Err(_) => core.count_drop(DropReason::Malformed),
            }
        }
        self.apply(out).await;
    }

    /// Carries out the core's outputs: sends concurrently, keeps deliveries
    /// and certificates, notes repair requests.
    async fn apply(&self, out: Vec<Output>) {
        let mut sends = Vec::new();
        for o in out {
            match o {
                Output::Send { to, message } => sends.push((to, message.encode())),
                Output::SetRepairTimer { .. } => {
                    self.shared.repair_armed.store(true, Ordering::Release);
                }
                Output::Deliver(d) => lock(&self.shared.delivered).push(d),
                Output::Certified(c) => lock(&self.shared.certificates).push(c),
            }
        }
        let Some(transport) = self.shared.transport.get() else {
            self.shared
                .send_failures
                .fetch_add(sends.len() as u64, Ordering::Relaxed);
            return;
        };
        let results = join_all(
            sends
                .into_iter()
                .map(|(to, bytes)| transport.send(to, crate::BROADCAST_PROTOCOL, bytes)),
        )
        .await;
        let failed = results.iter().filter(|r| r.is_err()).count() as u64;
        self.shared
            .send_failures
            .fetch_add(failed, Ordering::Relaxed);
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
        _from: PeerId,
        _protocol: Protocol,
        _payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        Err(HandlerError::Refused(
            "the broadcast protocol takes one-way messages only".into(),
        ))
    }

    async fn message(&self, from: PeerId, _protocol: Protocol, payload: Vec<u8>) {
        self.driver.receive(from, &payload).await;
    }
}

impl Service for BroadcastHandler {
    fn protocol(&self) -> Protocol {
        crate::BROADCAST_PROTOCOL
    }
}
