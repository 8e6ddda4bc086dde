//! The `Transport` seam: how a node reaches its peers, and how it answers them.
//!
//! A [`Transport`] carries opaque byte frames to a [`PeerId`]: a request that
//! waits for a response (with a per-call timeout) or a one-way message. Each
//! frame is tagged with a [`Protocol`], so one transport carries every
//! protocol of a node; each protocol encodes its own messages. The inbound
//! side is a [`Handler`], given to the transport when it is built (the trait
//! has no method to register one): [`MemoryNetwork::join`] takes it, and so
//! does the constructor of any other transport. It is typically a
//! [`ProtocolMux`], which routes frames to one handler per protocol. Every
//! protocol's inbound side is a [`Service`] (a handler that knows its tag),
//! mounted on the mux with [`ProtocolMux::mount`], before or after the
//! transport starts.
//!
//! What a transport must do is written on [`Transport`] (the contract), and
//! the [`conformance`] suite checks it: run it on your own transport.
//!
//! Nothing here assumes a runtime: the traits are `async-trait` traits usable
//! as `Arc<dyn Transport>`, and timeouts are the transport's business.
//! Writing a transport (TCP, QUIC, a proxy that drops or corrupts) takes a page:
//! see `examples/support/tcp.rs` for one over TCP (it passes the suite, but
//! does not authenticate `from`: see the contract).
//!
//! [`MemoryNetwork`] is an in-process network of [`MemoryTransport`]s with
//! seeded faults (loss, latency, duplication, corruption, partitions,
//! crash–restart); its clock is a [`Timer`], which needs no runtime either.

pub mod conformance;
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
///
/// Each tag is owned by the crate whose protocol it tags, which defines it
/// as a constant. Tags below 256 belong to the hologram crates:
///
/// | tag | protocol | constant |
/// |---|---|---|
/// | 1 | discovery | [`Protocol::DISCOVERY`] (this crate) |
/// | 2 | content-addressed storage | `hologram_cam::CAM_PROTOCOL` |
/// | 3 | consensus replicas | `hologram_consensus::CONSENSUS_PROTOCOL` |
/// | 4 | epidemic broadcast | `hologram_consensus::BROADCAST_PROTOCOL` |
/// | 5 | transactions, one-way | `hologram_txn::TXN_PROTOCOL` |
/// | 6 | latency probes | [`Protocol::PING`] (this crate) |
/// | 7 | the deduplication network | `hologram_cam::DEDUP_PROTOCOL` |
/// | 8 | transactions, request/response | `hologram_txn::TXN_CALL_PROTOCOL` |
/// | 9 | retired (shard-group members before they ran on the replica) | — |
/// | 10 | consensus validators, request/response | `hologram_consensus::VALIDATOR_PROTOCOL` |
///
/// Protocols of your own take tags from 256 up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Protocol(pub u16);

impl Protocol {
    /// Peer discovery and find-nodes lookups.
    pub const DISCOVERY: Protocol = Protocol(1);
    /// Latency probes of the adaptive topology.
    pub const PING: Protocol = Protocol(6);

    /// The tag's name in the table above (`"other"` for a tag it does not
    /// list; 256 is `"control"`, the node's client protocol): a static
    /// metric label, so that counting by protocol allocates nothing.
    pub fn label(self) -> &'static str {
        match self.0 {
            1 => "discovery",
            2 => "cam",
            3 => "consensus",
            4 => "broadcast",
            5 => "txn",
            6 => "ping",
            7 => "dedup",
            8 => "txn_call",
            10 => "validator",
            256 => "control",
            _ => "other",
        }
    }
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
///
/// # The contract
///
/// Every implementation must meet what follows; [`conformance::run`] checks
/// the parts a test can see, and each point names its check.
///
/// **The handler.** A transport is built for one node (its
/// [`local_id`](Self::local_id)) and is given that node's [`Handler`] when
/// it is built: [`MemoryNetwork::join`] takes it, as does the constructor of
/// any other transport (the example TCP transport's `bind`). It is typically
/// a [`ProtocolMux`] holding one handler per protocol. Every inbound request
/// and message goes to that handler with the frame's sender, protocol tag
/// and payload, unchanged; a request for a protocol the handler refuses
/// comes back to the caller as [`TransportError::Refused`] ("unregistered
/// protocol"), and a handler's [`HandlerError::Failed`] as
/// [`TransportError::Remote`] ("handler error"). Handlers may call the
/// transport themselves (a relay).
///
/// **`request` returns within its timeout.** The timeout covers the whole
/// call: finding the peer, connecting, writing the request, the remote
/// handler's run and reading the answer. When it expires the call returns
/// [`TransportError::TimedOut`] with that peer and timeout ("slow
/// handler"; a little scheduling slack is allowed, never the handler's
/// whole run). A peer the transport has no way to reach fails with
/// [`TransportError::Unreachable`] naming it, without waiting out the
/// timeout ("unknown peer").
///
/// **`send` does not wait for an answer.** It may wait to connect (bounded by
/// the transport's connect timeout), for its frame to be written (bounded
/// by the transport's write timeout), or, in process, for the receiving
/// handler to take the message; never for anything the receiver sends back.
/// `Ok` means the frame was handed to the network, not that it arrived; a
/// one-way message to a reachable node does arrive on a network without
/// faults ("messages").
///
/// **Size limits.** A request or message over [`max_frame`](Self::max_frame)
/// fails with [`TransportError::TooLarge`] before anything is sent (the
/// receiver's handler never sees it), and one of exactly `max_frame` bytes
/// goes through ("request too large"). An answer over the limit fails the
/// call with [`TransportError::TooLarge`] ("answer too large"): the
/// responder refuses to send it or the caller refuses to read it.
///
/// **A node may call itself.** `request` and `send` to
/// [`local_id`](Self::local_id) reach the node's own handler, with `from`
/// its own id, as any peer's would ("self request"). The remote validator
/// does this when a node's list of validators includes itself.
///
/// **Concurrency.** Many requests may be in flight at once, from many threads
/// and to one peer; each returns its own answer, never another call's
/// ("concurrent"). A transport that multiplexes calls on one connection
/// pairs each answer with its request by an id the answer carries.
///
/// **A handler cannot break its transport.** A handler that panics or fails
/// costs its caller an error (at the latest at the call's timeout) and no
/// other call: the transport keeps serving every other request and message
/// ("handler panic").
///
/// **Bounded work per peer.** Nothing a peer sends may make the transport
/// buffer or do work without bound. A transport that reads frames from a
/// socket checks a frame's announced length against the limit before it
/// reads the frame, grows its buffer as bytes arrive rather than allocating
/// the announced length, drops a connection whose frame does not complete
/// within a read deadline, caps its inbound connections (refusing or
/// closing the idlest beyond the cap) and closes connections idle past an
/// idle timeout, so that idle or stalled connections never stop it from
/// answering a real client ("socket: ..." checks, run when the transport
/// says where it listens).
///
/// **Whether `from` is authenticated.** The `from` a handler receives is the
/// node the transport attributes the frame to. A transport for an open
/// network must authenticate it: the frame came from a holder of the
/// private key of `from` (a [`PeerId`] is an Ed25519 public key), e.g.
/// through a handshake in which the dialer signs a challenge, bound to the
/// connection that carries the frames. A transport that does not (the
/// example TCP transport takes `from` as the dialer claims it;
/// [`MemoryNetwork`] trusts the code in its process) may only carry traffic
/// among hosts that are all trusted, and must say so in its docs. What
/// relies on an authenticated `from`:
///
/// - **`DEDUP`** (`DedupHandler` in `hologram-cam`): a reference is
///   (`from`, operation), applied once. A forged `from` adds or releases
///   another client's references, replays or cancels its operations, and can
///   get an object freed while its real owner still counts it.
/// - **`CONSENSUS` one-way messages** (the replica's `ConsensusHandler` in
///   `hologram-consensus`): `Commands` enter the mempool and `SyncRequest`s
///   are answered only if `from` is a validator; catch-up answers and
///   pushes go to `from`; misbehaviour (an invalid signature, say) is
///   reported against `from`. Proposals, votes and decisions are signed, so
///   safety does not rest on `from`, but who may inject commands and who
///   gets (possibly large) answers does.
/// - **`BROADCAST`** (`hologram-consensus`): frames are dropped unless `from`
///   is a member and not shunned, a pushed message's last forwarder must be
///   `from`, `IWant`s are answered to `from`, and an acknowledgement counts only
///   if `from` signed it. The messages themselves are signed.
/// - **`TXN` one-way messages** (`TxnHandler` in `hologram-txn`): a
///   coordinator takes a `Prepared` vote only if its signer is `from` and a
///   `Decided` only from the primary (signatures checked); a `Refused` from
///   any `from` aborts a transaction still preparing (atomicity holds;
///   liveness does not); participants answer and hand keys off to `from`.
/// - **`CAM`** `Provide` messages record `from` as a provider of an address:
///   a forged one only costs wasted asks (fetched bytes are verified).
///
/// The request/response services, `DISCOVERY`, the `ValidatorHandler`'s
/// requests and `TXN_CALL_PROTOCOL` (`ParticipantService`) ignore `from`: they answer on the request's own
/// connection and rely on the signatures inside the payloads.
#[async_trait]
pub trait Transport: Send + Sync {
    /// The id of the node this transport belongs to.
    fn local_id(&self) -> PeerId;

    /// The largest payload this transport carries; larger ones fail with
    /// [`TransportError::TooLarge`] before anything is sent.
    fn max_frame(&self) -> usize;

    /// Sends a request to `to`'s handler and waits for its answer: at most
    /// `timeout` for the whole call, connecting included (see the contract).
    async fn request(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError>;

    /// Sends a one-way message. `Ok` means it was handed to the network, not
    /// that it arrived; it never waits for an answer (see the contract).
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
///
/// A transport is given its node's handler when it is built (see
/// [`Transport`]'s contract) and calls it for every inbound frame, from as
/// many tasks or threads at once as it likes: a handler must be safe to
/// call concurrently. `from` is the sender as the transport attributes it;
/// whether that is authenticated depends on the transport (the contract
/// says which protocols rely on it). A handler that panics costs only its
/// own caller an error.
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
