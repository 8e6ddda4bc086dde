//! The inbound side of a driven core: a [`Handler`] that decodes frames and
//! queues them per peer, the [`Inbox`] it fills, and the [`Handle`] that
//! gives a running driver local inputs.

use super::queue::{InboxStats, PeerQueues};
use super::Driven;
use crate::telemetry::LogLimit;
use crate::transport::{async_trait, Handler, HandlerError, Protocol, Service};
use crate::wire::Wire;
use crate::NodeId;
use futures::channel::mpsc;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use thiserror::Error;

/// A local input to a driver.
pub(super) enum Input<C> {
    Control(C),
    Stop,
}

/// What woke the driver.
pub(super) enum Wake<C> {
    Local(Input<C>),
    /// The handler queued peer messages.
    Peer,
}

/// The peer queues shared by the handlers and the driver.
pub(super) type Shared<M> = Arc<Mutex<PeerQueues<M>>>;

pub(super) fn lock<M>(queues: &Shared<M>) -> MutexGuard<'_, PeerQueues<M>> {
    // A panic while holding the lock leaves the queues consistent (every
    // update completes before the next fallible step): keep using them.
    queues.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The inbound side of a driven core: decodes each frame with
/// the one codec ([`Wire::from_wire`]) (malformed frames are dropped) and queues it for the
/// driver (bounded: see [the inbox limits](super#the-inbox-limits)). Mount it on the node's
/// [`ProtocolMux`](crate::transport::ProtocolMux); it serves
/// [`Driven::PROTOCOL`].
pub struct Inbound<N: Driven> {
    queues: Shared<N::Message>,
    /// One sender for all clones: a bounded channel gives each sender its
    /// own slot, so clones made per message would let rings pile up.
    doorbell: Arc<Mutex<mpsc::Sender<()>>>,
    core: PhantomData<fn() -> N>,
}

impl<N: Driven> Clone for Inbound<N> {
    fn clone(&self) -> Self {
        Inbound {
            queues: self.queues.clone(),
            doorbell: self.doorbell.clone(),
            core: PhantomData,
        }
    }
}

#[async_trait]
impl<N: Driven> Handler for Inbound<N> {
    async fn request(&self, _: NodeId, _: Protocol, _: Vec<u8>) -> Result<Vec<u8>, HandlerError> {
        Err(HandlerError::Refused(format!(
            "protocol {} takes one-way messages only",
            N::PROTOCOL.0
        )))
    }

    async fn message(&self, from: NodeId, _: Protocol, payload: Vec<u8>) {
        match N::Message::from_wire(&payload) {
            Ok(message) => {
                self.push(from, message, payload.len());
            }
            Err(e) => refused(from, N::PROTOCOL, "malformed", &e),
        }
    }
}

impl<N: Driven> Inbound<N> {
    /// Queues `message` from `from` (`size` bytes as received), for a
    /// handler that decodes frames itself; false if a limit dropped it.
    pub fn push(&self, from: NodeId, message: N::Message, size: usize) -> bool {
        let queued = lock(&self.queues).push(from, message, size);
        if !queued {
            refused(from, N::PROTOCOL, "inbox full", &"a limit of the inbox");
        } else {
            // A full doorbell is already ringing; a closed one means the
            // driver stopped and the message is moot.
            let mut doorbell = self.doorbell.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = doorbell.try_send(());
        }
        queued
    }
}

impl<N: Driven> Service for Inbound<N> {
    fn protocol(&self) -> Protocol {
        N::PROTOCOL
    }
}

/// Logs of refused frames: at most this many a second per process.
static REFUSED_LOG: LogLimit = LogLimit::new(10, 1_000);

/// Counts a frame refused from `from` and logs it (debug, rate-limited).
fn refused(from: NodeId, protocol: Protocol, reason: &'static str, why: &dyn std::fmt::Display) {
    ::metrics::counter!(
        "hologram_driver_frames_refused_total",
        "protocol" => protocol.label(),
        "reason" => reason
    )
    .increment(1);
    if let Some(suppressed) = REFUSED_LOG.allow() {
        tracing::debug!(peer = %from, protocol = protocol.0, reason, %why, suppressed, "frame refused");
    }
}

/// The queues between an [`Inbound`] handler and its driver.
pub struct Inbox<N: Driven> {
    pub(super) queues: Shared<N::Message>,
    pub(super) control: mpsc::UnboundedSender<Input<N::Control>>,
    pub(super) wakes: BoxStream<'static, Wake<N::Control>>,
    pub(super) failures: Arc<AtomicU64>,
}

impl<N: Driven> Inbox<N> {
    /// A handle to the driver this inbox will feed, before it exists
    /// (inputs wait in the inbox until it runs).
    pub fn handle(&self) -> Handle<N> {
        Handle {
            control: self.control.clone(),
            queues: self.queues.clone(),
            failures: self.failures.clone(),
        }
    }
}

/// A handler and the inbox it fills: mount the handler on the node's
/// [`ProtocolMux`](crate::transport::ProtocolMux), then give the inbox to
/// [`Driver::new`](super::Driver::new).
pub fn inbox<N: Driven>() -> (Inbound<N>, Inbox<N>) {
    let queues = Shared::default();
    let (doorbell, rings) = mpsc::channel(1);
    let (control, locals) = mpsc::unbounded();
    let wakes = futures::stream::select(locals.map(Wake::Local), rings.map(|()| Wake::Peer));
    (
        Inbound {
            queues: queues.clone(),
            doorbell: Arc::new(Mutex::new(doorbell)),
            core: PhantomData,
        },
        Inbox {
            queues,
            control,
            wakes: wakes.boxed(),
            failures: Arc::default(),
        },
    )
}

/// The driver has stopped: it takes no more inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the driver has stopped")]
pub struct Stopped;

/// Gives a running driver local inputs ([`Driven::Control`]) and stops it.
pub struct Handle<N: Driven> {
    pub(super) control: mpsc::UnboundedSender<Input<N::Control>>,
    pub(super) queues: Shared<N::Message>,
    pub(super) failures: Arc<AtomicU64>,
}

impl<N: Driven> Clone for Handle<N> {
    fn clone(&self) -> Self {
        Handle {
            control: self.control.clone(),
            queues: self.queues.clone(),
            failures: self.failures.clone(),
        }
    }
}

impl<N: Driven> Handle<N> {
    /// Hands `control` to the core ([`Driven::on_control`]) before the
    /// driver's next round of sends.
    pub fn send(&self, control: N::Control) -> Result<(), Stopped> {
        self.control
            .unbounded_send(Input::Control(control))
            .map_err(|_| Stopped)
    }

    /// How full the driver's inbox of peer messages is, and what it dropped
    /// (see [the inbox limits](super#the-inbox-limits)).
    pub fn inbox_stats(&self) -> InboxStats {
        lock(&self.queues).stats()
    }

    /// Sends the transport refused (each a lost message, which the cores'
    /// resending repairs).
    pub fn send_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Asks the driver to stop after the input it is handling.
    pub fn stop(&self) {
        let _ = self.control.unbounded_send(Input::Stop);
    }
}
