//! The inbound side of discovery: answering `FindNodes` over a transport.

use super::discovery::{DiscoveryMessage, PeerBook};
use crate::transport::{Handler, HandlerError, Protocol, Service};
use crate::PeerId;
use async_trait::async_trait;
use std::sync::{Arc, RwLock};

/// Answers [`DiscoveryMessage::FindNodes`] requests from a shared [`PeerBook`].
#[derive(Debug, Clone)]
pub struct DiscoveryHandler {
    book: Arc<RwLock<PeerBook>>,
}

impl DiscoveryHandler {
    /// A handler over `book` (shared with whoever admits peers into it).
    pub fn new(book: Arc<RwLock<PeerBook>>) -> Self {
        Self { book }
    }
}

#[async_trait]
impl Handler for DiscoveryHandler {
    async fn request(
        &self,
        _from: PeerId,
        _protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        let request =
            DiscoveryMessage::decode(&payload).map_err(|e| HandlerError::Refused(e.to_string()))?;
        let book = self
            .book
            .read()
            .map_err(|_| HandlerError::Failed("peer book lock poisoned".into()))?;
        book.answer(&request)
            .map(|answer| answer.encode())
            .ok_or_else(|| HandlerError::Refused("not a request".into()))
    }

    async fn message(&self, _from: PeerId, _protocol: Protocol, _payload: Vec<u8>) {}
}

impl Service for DiscoveryHandler {
    fn protocol(&self) -> Protocol {
        Protocol::DISCOVERY
    }
}
