//! One handler per protocol behind a single [`Handler`].

use super::{Handler, HandlerError, Protocol};
use crate::PeerId;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Routes each frame to the handler registered for its [`Protocol`]; a
/// request for an unregistered protocol is refused, a message dropped.
///
/// ```
/// use hologram_lattice::transport::{Protocol, ProtocolMux};
/// let mux = ProtocolMux::new();
/// assert!(mux.protocols().next().is_none());
/// # let _ = Protocol::CAM;
/// ```
#[derive(Default, Clone)]
pub struct ProtocolMux {
    handlers: BTreeMap<Protocol, Arc<dyn Handler>>,
}

impl ProtocolMux {
    /// A mux with no protocols.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `protocol`, replacing any earlier one.
    pub fn with(mut self, protocol: Protocol, handler: Arc<dyn Handler>) -> Self {
        self.handlers.insert(protocol, handler);
        self
    }

    /// The registered protocols, in order.
    pub fn protocols(&self) -> impl Iterator<Item = Protocol> + '_ {
        self.handlers.keys().copied()
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
        match self.handlers.get(&protocol) {
            Some(h) => h.request(from, protocol, payload).await,
            None => Err(HandlerError::Refused(format!(
                "no handler for protocol {}",
                protocol.0
            ))),
        }
    }

    async fn message(&self, from: PeerId, protocol: Protocol, payload: Vec<u8>) {
        if let Some(h) = self.handlers.get(&protocol) {
            h.message(from, protocol, payload).await;
        }
    }
}
