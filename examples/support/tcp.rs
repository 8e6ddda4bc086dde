//! A [`Transport`] over TCP, on tokio: what a real transport does, in a few
//! short files.
//!
//! Shared by `examples/tcp_node.rs`, the cluster node and
//! `tests/tcp_transport.rs` (each includes this file with `#[path]`); it is
//! not an example of its own, as Cargo only discovers `examples/*.rs` and
//! `examples/*/main.rs`. It passes the transport conformance suite
//! (`hologram::lattice::transport::conformance`), socket checks included:
//! see `tests/tcp_transport.rs`.
//!
//! **It does not authenticate `from`.** A frame's sender is whatever id the
//! dialer writes in it, so any host that can reach the port can speak as
//! any node: use it only among hosts that all trust one another. The
//! `Transport` contract lists the protocols that rely on an authenticated
//! `from` (the deduplication holder, consensus and broadcast messages,
//! transaction messages); a transport for an open network proves the
//! dialer's key in a handshake, which this one leaves out.
//!
//! ## Frames (`tcp/frame.rs`)
//!
//! Every frame on a connection is
//!
//! ```text
//! length: u32 LE ‖ header: postcard((kind: u8, id: u64, protocol: Protocol, from: PeerId)) ‖ payload
//! ```
//!
//! where `length` counts the header and the payload. `kind` is one of
//! [`Kind`]; `id` pairs a response with its request (0 for messages). A
//! reader checks `length` against the limit (`max_frame` plus
//! [`MAX_HEADER`]) before it reads the body, and closes the connection on a
//! larger one. The body's buffer grows as its bytes arrive, never to the
//! announced length up front, and the whole frame must arrive within the
//! frame deadline of its first byte: a peer that announces 4.5 MB and stops
//! holds at most twice what it sent, and only until the deadline. A header
//! that does not decode, a payload over `max_frame` or a frame of the wrong
//! kind for the connection also close it.
//!
//! ## Connections (`tcp/link.rs` out, `tcp/listen.rs` in)
//!
//! A node dials each peer once, when it first sends to it, using its address
//! book ([`TcpTransport::add_peer`]; its own address is in it from the
//! start, so a node can call itself), and sends its requests and messages
//! on that connection; the peer answers each request on the same
//! connection. So two nodes that talk both ways hold two connections, each
//! carrying one direction's requests. Inbound requests are answered
//! concurrently (one task each, at most 64 per connection: past that the
//! connection is not read until one is answered); inbound messages are
//! handled in order. A handler that panics fails only its own request
//! (`Failed`) or loses its message. A broken connection fails its pending
//! requests with [`TransportError::Io`] and is dialed again by the next
//! call.
//!
//! Limits, all in [`TcpConfig`]: a node keeps at most `max_inbound` inbound
//! connections. At the cap, a new connection makes the one idle longest
//! close (with a `Goodbye` frame saying why); if every connection is busy
//! (reading a frame or answering), the new one is refused with a `Goodbye`
//! and closed, and its dialer's calls fail with [`TransportError::Refused`].
//! A connection without a frame for `idle_timeout` is closed the same way
//! (a dialer stops reusing a connection idle for half its own idle timeout,
//! and resends once, on a new connection, a request that a goodbye cut off:
//! the listener answers every request it read before it says goodbye). An answer that cannot be written within
//! the frame deadline (the peer does not read) closes its connection; a
//! `send` whose write does not finish within `write_timeout` fails.

#![allow(dead_code)] // each includer uses a part of this module

#[path = "tcp/frame.rs"]
mod frame;
#[path = "tcp/link.rs"]
mod link;
#[path = "tcp/listen.rs"]
mod listen;

#[allow(unused_imports)] // as above: each includer uses a part
pub use frame::{body_length, decode, encode, read_frame, Kind, MAX_HEADER};

use hologram::lattice::transport::{
    async_trait, check_frame, Handler, Protocol, Transport, TransportError, DEFAULT_MAX_FRAME,
};
use hologram::lattice::PeerId;
use link::{lock, Link};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// How long `send` waits to connect to a peer, by default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The limits of a [`TcpTransport`]; `TcpConfig::default()` has sane ones.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// The largest payload carried (default [`DEFAULT_MAX_FRAME`], 4 MiB).
    pub max_frame: usize,
    /// How long `send` waits to connect (default 5 s); `request` connects
    /// within its own timeout.
    pub connect_timeout: Duration,
    /// How long `send` waits for its frame to be written (default 10 s).
    pub write_timeout: Duration,
    /// A frame must arrive whole within this long of its first byte, and an
    /// answer be written within it, or the connection is dropped (default
    /// 10 s: 4 MiB at 3.4 Mbit/s).
    pub frame_deadline: Duration,
    /// An inbound connection without a frame for this long is closed
    /// (default 60 s).
    pub idle_timeout: Duration,
    /// The most inbound connections kept open (default 256).
    pub max_inbound: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_frame: DEFAULT_MAX_FRAME,
            connect_timeout: CONNECT_TIMEOUT,
            write_timeout: Duration::from_secs(10),
            frame_deadline: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_inbound: 256,
        }
    }
}

/// A node's TCP transport: a listener serving a [`Handler`], and the
/// connections it dials to its peers.
#[derive(Clone)]
pub struct TcpTransport {
    inner: Arc<Inner>,
}

/// A peer's connection, if it has one, locked while it is dialed.
type Slot = Arc<Mutex<Option<Arc<Link>>>>;

struct Inner {
    id: PeerId,
    config: TcpConfig,
    local_addr: SocketAddr,
    book: SyncMutex<HashMap<PeerId, SocketAddr>>,
    /// Each peer's connection, behind a lock of its own: dialing one peer
    /// never holds up calls to another.
    links: SyncMutex<HashMap<PeerId, Slot>>,
    listener: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Also drops (and so aborts) every inbound connection's task.
        self.listener.abort();
    }
}

impl TcpTransport {
    /// Listens on `addr` (use port 0 for any free port) and serves inbound
    /// frames of up to `max_frame` payload bytes with `handler`, with the
    /// other limits at their defaults. Must be called within a tokio runtime.
    pub async fn bind(
        id: PeerId,
        addr: SocketAddr,
        handler: Arc<dyn Handler>,
        max_frame: usize,
    ) -> std::io::Result<TcpTransport> {
        let config = TcpConfig {
            max_frame,
            ..TcpConfig::default()
        };
        TcpTransport::bind_with(id, addr, handler, config).await
    }

    /// Listens on `addr` and serves inbound frames with `handler`, within
    /// the limits of `config`. Must be called within a tokio runtime.
    pub async fn bind_with(
        id: PeerId,
        addr: SocketAddr,
        handler: Arc<dyn Handler>,
        config: TcpConfig,
    ) -> std::io::Result<TcpTransport> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let listener = tokio::spawn(listen::listen(listener, id, config.clone(), handler));
        // The node reaches itself through its own listener.
        let mut myself = local_addr;
        if myself.ip().is_unspecified() {
            myself.set_ip(match myself.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        Ok(TcpTransport {
            inner: Arc::new(Inner {
                id,
                config,
                local_addr,
                book: SyncMutex::new(HashMap::from([(id, myself)])),
                links: SyncMutex::new(HashMap::new()),
                listener,
            }),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The limits this transport was bound with.
    pub fn config(&self) -> &TcpConfig {
        &self.inner.config
    }

    /// Records where peer `id` listens.
    pub fn add_peer(&self, id: PeerId, addr: SocketAddr) {
        lock(&self.inner.book).insert(id, addr);
    }

    /// The live connection to `to`, dialed if there is none.
    async fn link(&self, to: PeerId) -> Result<Arc<Link>, TransportError> {
        let addr = lock(&self.inner.book)
            .get(&to)
            .copied()
            .ok_or(TransportError::Unreachable(to))?;
        let config = &self.inner.config;
        let slot = Arc::clone(lock(&self.inner.links).entry(to).or_default());
        let mut slot = slot.lock().await;
        if let Some(link) = slot.as_ref() {
            if link.usable(config.idle_timeout / 2) {
                return Ok(Arc::clone(link));
            }
        }
        let link = Link::dial(addr, config.max_frame, config.frame_deadline)
            .await
            .map_err(|_| TransportError::Unreachable(to))?;
        let link = Arc::new(link);
        *slot = Some(Arc::clone(&link));
        Ok(link)
    }

    async fn call(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: &[u8],
    ) -> Result<Vec<u8>, TransportError> {
        let from = self.inner.id;
        let frame = |id| encode(Kind::Request, id, protocol, from, payload);
        let link = self.link(to).await?;
        match link.call(frame).await {
            // The peer closed the connection (idle, or to make room) before
            // it read the request: send it once more, on a new connection.
            Err(_) if link.said_goodbye() => self.link(to).await?.call(frame).await,
            answer => answer,
        }
    }
}

#[async_trait]
impl Transport for TcpTransport {
    fn local_id(&self) -> PeerId {
        self.inner.id
    }

    fn max_frame(&self) -> usize {
        self.inner.config.max_frame
    }

    /// The timeout covers dialing, writing and waiting for the answer.
    async fn request(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        check_frame(payload.len(), self.inner.config.max_frame)?;
        tokio::time::timeout(timeout, self.call(to, protocol, &payload))
            .await
            .unwrap_or(Err(TransportError::TimedOut { peer: to, timeout }))
    }

    async fn send(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        let config = &self.inner.config;
        check_frame(payload.len(), config.max_frame)?;
        let link = tokio::time::timeout(config.connect_timeout, self.link(to))
            .await
            .unwrap_or(Err(TransportError::Unreachable(to)))?;
        let frame = encode(Kind::Message, 0, protocol, self.inner.id, &payload)?;
        tokio::time::timeout(config.write_timeout, link.write(&frame))
            .await
            .unwrap_or_else(|_| {
                Err(TransportError::Io(format!(
                    "the frame was not written within {:?}",
                    config.write_timeout
                )))
            })
    }
}
