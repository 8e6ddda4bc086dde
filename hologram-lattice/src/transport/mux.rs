//! One handler per protocol behind a single [`Handler`], mountable at any time.

use super::{Handler, HandlerError, Protocol};
use crate::PeerId;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

/// An inbound protocol a node serves: a [`Handler`] that knows its
/// [`Protocol`] tag. Every protocol of the hologram crates has one (the CAM's
/// `CamHandler`, the dedup holder's `DedupHandler`, discovery's
/// `DiscoveryHandler`, a replica's `ConsensusHandler`, a `ValidatorHandler`,
/// broadcast's `BroadcastHandler`, the transaction `TxnHandler`,
/// and `ParticipantService`); a node mounts each on its
/// [`ProtocolMux`] with [`ProtocolMux::mount`].
pub trait Service: Handler {
    /// The protocol this service answers.
    fn protocol(&self) -> Protocol;
}

/// Routes each frame to the handler mounted for its [`Protocol`]; a request
/// for a protocol with no handler is refused, a message dropped.
///
/// Give the transport an `Arc` of the mux and keep one: services can be
/// mounted and unmounted while the transport runs (a read-mostly lock; no
/// lock is held while a handler runs, and a frame already dispatched to a
/// handler that is then unmounted still completes).
///
/// ```
/// use hologram_lattice::routing::{DiscoveryHandler, PeerBook};
/// use hologram_lattice::transport::{MemoryNetwork, Protocol, ProtocolMux};
/// use hologram_lattice::PeerId;
/// use std::sync::{Arc, RwLock};
///
/// let net = MemoryNetwork::new(1);
/// let mux = Arc::new(ProtocolMux::new());
/// let _transport = net.join(PeerId::from_bytes([1; 32]), mux.clone());
/// // Mounted after the transport was joined.
/// let book = Arc::new(RwLock::new(PeerBook::new(PeerId::from_bytes([1; 32]), 0, 8)));
/// mux.mount(Arc::new(DiscoveryHandler::new(book)));
/// assert_eq!(mux.protocols(), vec![Protocol::DISCOVERY]);
/// assert!(mux.unmount(Protocol::DISCOVERY));
/// assert!(mux.protocols().is_empty());
/// ```
#[derive(Default)]
pub struct ProtocolMux {
    handlers: RwLock<BTreeMap<Protocol, Arc<dyn Handler>>>,
}

impl core::fmt::Debug for ProtocolMux {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ProtocolMux")
            .field("protocols", &self.protocols())
            .finish()
    }
}

impl ProtocolMux {
    /// A mux with no protocols.
    pub fn new() -> Self {
        Self::default()
    }

    /// Mounts `service` under its protocol, replacing any earlier handler
    /// of that protocol. Returns the mux, to mount more.
    pub fn mount<S: Service + 'static>(&self, service: Arc<S>) -> &Self {
        let protocol = service.protocol();
        self.mount_as(protocol, service)
    }

    /// Mounts `handler` under `protocol`: a handler of your own, or a
    /// service under another tag than its own. Replaces any earlier one.
    pub fn mount_as(&self, protocol: Protocol, handler: Arc<dyn Handler>) -> &Self {
        self.handlers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(protocol, handler);
        self
    }

    /// Unmounts `protocol`: from now on its requests are refused and its
    /// messages dropped. Returns whether a handler was mounted.
    pub fn unmount(&self, protocol: Protocol) -> bool {
        self.handlers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&protocol)
            .is_some()
    }

    /// The mounted protocols, in order.
    pub fn protocols(&self) -> Vec<Protocol> {
        self.read().keys().copied().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Protocol, Arc<dyn Handler>>> {
        // Inserts and removals leave the map consistent: poisoning is ignored.
        self.handlers.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The handler of `protocol`, taken out of the lock before it runs.
    fn handler(&self, protocol: Protocol) -> Option<Arc<dyn Handler>> {
        self.read().get(&protocol).cloned()
    }
}

#[async_trait]
impl Handler for ProtocolMux {
    async fn request(
        &self,
        from: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        match self.handler(protocol) {
            Some(h) => h.request(from, protocol, payload).await,
            None => Err(HandlerError::Refused(format!(
                "no handler for protocol {}",
                protocol.0
            ))),
        }
    }

    async fn message(&self, from: PeerId, protocol: Protocol, payload: Vec<u8>) {
        if let Some(h) = self.handler(protocol) {
            h.message(from, protocol, payload).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{MemoryNetwork, Transport, TransportError};
    use futures::executor::block_on;
    use std::time::Duration;

    /// Answers `name ‖ payload` on its protocol.
    struct Named(Protocol, &'static [u8]);

    #[async_trait]
    impl Handler for Named {
        async fn request(
            &self,
            _: PeerId,
            _: Protocol,
            payload: Vec<u8>,
        ) -> Result<Vec<u8>, HandlerError> {
            Ok([self.1, &payload].concat())
        }
        async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {}
    }

    impl Service for Named {
        fn protocol(&self) -> Protocol {
            self.0
        }
    }

    fn peer(n: u8) -> PeerId {
        PeerId::from_bytes([n; 32])
    }

    #[test]
    fn services_mount_after_the_transport_joined_and_unmount_refuses() {
        let net = MemoryNetwork::new(10);
        let mux = Arc::new(ProtocolMux::new());
        let _b = net.join(peer(2), mux.clone());
        let a = net.join(peer(1), Arc::new(ProtocolMux::new()));
        let ask = |protocol| {
            block_on(a.request(peer(2), protocol, b"?".to_vec(), Duration::from_secs(5)))
        };
        // Nothing mounted yet: refused.
        assert!(matches!(
            ask(Protocol(256)),
            Err(TransportError::Refused(_))
        ));
        // Mounted while the transport runs: served.
        mux.mount(Arc::new(Named(Protocol(256), b"cam")))
            .mount(Arc::new(Named(Protocol(257), b"txn")));
        mux.mount_as(Protocol::PING, Arc::new(Named(Protocol(256), b"ping")));
        assert_eq!(ask(Protocol(256)).unwrap(), b"cam?");
        assert_eq!(ask(Protocol(257)).unwrap(), b"txn?");
        assert_eq!(ask(Protocol::PING).unwrap(), b"ping?");
        assert_eq!(
            mux.protocols(),
            vec![Protocol::PING, Protocol(256), Protocol(257)]
        );
        // Mounting again replaces.
        mux.mount(Arc::new(Named(Protocol(256), b"cam2")));
        assert_eq!(ask(Protocol(256)).unwrap(), b"cam2?");
        // Unmounted: refused again, the others still served.
        assert!(mux.unmount(Protocol(256)));
        assert!(!mux.unmount(Protocol(256)));
        assert!(matches!(
            ask(Protocol(256)),
            Err(TransportError::Refused(_))
        ));
        assert_eq!(ask(Protocol(257)).unwrap(), b"txn?");
    }
}
