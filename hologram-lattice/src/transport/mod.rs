//! The `Transport` seam: how a node reaches its peers, and how it answers them.
//!
//! A [`Transport`] carries opaque byte frames to a [`PeerId`]: a request that
//! waits for a response (with a per-call timeout) or a one-way message. Each
//! frame is tagged with a [`Protocol`], so one transport carries every
//! protocol of a node; each protocol encodes its own messages. The inbound
//! side is a [`Handler`] the node gives its transport when it builds it
//! (e.g. [`MemoryNetwork::join`]): a [`ProtocolMux`], which routes frames
//! to one handler per protocol. Every protocol's inbound side is a
//! [`Service`] (a handler that knows its tag), mounted on the mux with
//! [`ProtocolMux::mount`], before or after the transport starts.
//!
//! Nothing here assumes a runtime: the traits are `async-trait` traits usable
//! as `Arc<dyn Transport>`, and timeouts are the transport's business.
//! Writing a transport (TCP, QUIC, a proxy that drops or corrupts) takes a page:
//! see `examples/` for one over TCP.
//!
//! [`MemoryNetwork`] is an in-process network of [`MemoryTransport`]s with
//! seeded faults (loss, latency, duplication, corruption, partitions,
//! crash–restart); its clock is a [`Timer`], which needs no runtime either.

mod memory;
#[cfg(test)]
mod memory_tests;
mod mux;
mod timer;

pub use memory::{MemoryNetwork, MemoryTransport};
pub use mux::{ProtocolMux, Service};
pub use timer::{Sleep, Timer};

/// The attribute that implements [`Transport`] and [`Handler`] (from the
/// `async-trait` crate), re-exported so that implementers use the same
/// version without depending on it themselves:
/// `#[hologram_lattice::transport::async_trait]`.
pub use async_trait::async_trait;

use crate::PeerId;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// The default largest frame: 4 MiB.
pub const DEFAULT_MAX_FRAME: usize = 4 << 20;

/// Which protocol a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Protocol(pub u16);

impl Protocol {
    /// Peer discovery and find-nodes lookups.
    pub const DISCOVERY: Protocol = Protocol(1);
    /// Content-addressed storage.
    pub const CAM: Protocol = Protocol(2);
    /// Consensus.
    pub const CONSENSUS: Protocol = Protocol(3);
    /// Epidemic broadcast.
    pub const BROADCAST: Protocol = Protocol(4);
    /// Transactions.
    pub const TXN: Protocol = Protocol(5);
    /// Latency probes of the adaptive topology.
    pub const PING: Protocol = Protocol(6);
    /// The deduplication network's replicated store.
    pub const DEDUP: Protocol = Protocol(7);
    /// Transactions as request/response: a participant's calls answered by its reply (`TXN` is one-way).
    pub const TXN_CALL: Protocol = Protocol(8);
    /// A replicated shard group's proposer asking its members to apply decided heights and endorse.
    pub const TXN_MEMBER: Protocol = Protocol(9);
    /// Consensus as request/response: a `RemoteValidator`'s calls answered by
    /// a `ValidatorHandler` (`CONSENSUS` carries the replicas' one-way
    /// messages), so one node can serve both faces.
    pub const VALIDATOR: Protocol = Protocol(10);
}

/// Why a call over a transport failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer is unknown, down, or cut off.
    #[error("peer {0} is unreachable")]
    Unreachable(PeerId),
    /// No response came within the call's timeout.
    #[error("no response from {peer} within {timeout:?}")]
    TimedOut {
        /// The peer called.
        peer: PeerId,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// A frame exceeded the transport's size limit (refused before sending, or
    /// before reading).
    #[error("frame of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The frame's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The peer refused the frame (e.g. no handler for the protocol).
    #[error("refused by the peer: {0}")]
    Refused(String),
    /// The peer's handler failed and said why.
    #[error("remote error: {0}")]
    Remote(String),
    /// The local transport is shut down.
    #[error("transport is closed")]
    Closed,
    /// The connection broke or the frame was malformed.
    #[error("i/o error: {0}")]
    Io(String),
}

/// What a [`Handler`] answers when it cannot serve a request.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum HandlerError {
    /// The node does not serve this protocol or request.
    #[error("refused: {0}")]
    Refused(String),
    /// The request was understood but failed.
    #[error("{0}")]
    Failed(String),
}

impl From<HandlerError> for TransportError {
    fn from(e: HandlerError) -> Self {
        match e {
            HandlerError::Refused(why) => TransportError::Refused(why),
            HandlerError::Failed(why) => TransportError::Remote(why),
        }
    }
}

/// How a node reaches its peers. Runtime-agnostic; use it as `Arc<dyn Transport>`.
#[async_trait]
pub trait Transport: Send + Sync {
    /// The id of the node this transport belongs to.
    fn local_id(&self) -> PeerId;

    /// The largest payload this transport carries; larger ones fail with
    /// [`TransportError::TooLarge`] before anything is sent.
    fn max_frame(&self) -> usize;

    /// Sends a request and waits for its response, at most `timeout`.
    async fn request(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError>;

    /// Sends a one-way message. `Ok` means it was handed to the network, not
    /// that it arrived.
    async fn send(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<(), TransportError>;
}

/// A shared transport is a transport (`Arc<MemoryTransport>`,
/// `Arc<dyn Transport>`), for code generic over `T: Transport`.
#[async_trait]
impl<T: Transport + ?Sized> Transport for std::sync::Arc<T> {
    fn local_id(&self) -> PeerId {
        (**self).local_id()
    }

    fn max_frame(&self) -> usize {
        (**self).max_frame()
    }

    async fn request(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        (**self).request(to, protocol, payload, timeout).await
    }

    async fn send(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        (**self).send(to, protocol, payload).await
    }
}

/// The inbound side: what a node does with the frames it receives.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Answers a request.
    async fn request(
        &self,
        from: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError>;

    /// Takes a one-way message.
    async fn message(&self, from: PeerId, protocol: Protocol, payload: Vec<u8>);
}

/// Refuses a payload over `max` bytes with [`TransportError::TooLarge`].
pub fn check_frame(size: usize, max: usize) -> Result<(), TransportError> {
    if size > max {
        Err(TransportError::TooLarge { size, max })
    } else {
        Ok(())
    }
}
