//! `hologram::net`: a network transport over QUIC, mutually authenticated by
//! node key and encrypted (feature `net`).
//!
//! [`QuicTransport`] implements the lattice crate's
//! [`Transport`](hologram_lattice::transport::Transport) on `quinn` and
//! `rustls`, and meets its contract (it passes the transport conformance
//! suite; see `tests/net_transport.rs`). A node builds it from its
//! [`KeyPair`](hologram_receipt::KeyPair), the address it listens on, its
//! [`Handler`](hologram_lattice::transport::Handler) (usually a
//! [`ProtocolMux`](hologram_lattice::transport::ProtocolMux)), an
//! [`AddressBook`] and a [`QuicConfig`]:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use hologram::lattice::transport::{ProtocolMux, Transport};
//! use hologram::net::{AddressBook, QuicConfig, QuicTransport};
//! use hologram::receipt::KeyPair;
//! use std::sync::Arc;
//!
//! let keys = KeyPair::from_seed([7; 32]);
//! let book = AddressBook::new();
//! let node = QuicTransport::bind(
//!     &keys,
//!     "0.0.0.0:4433".parse()?,
//!     Arc::new(ProtocolMux::new()),
//!     book.clone(),
//!     QuicConfig::default(),
//! )?;
//! let peer = KeyPair::from_seed([8; 32]).node_id();
//! book.insert(peer, "192.0.2.1:4433".parse()?);
//! assert_eq!(node.local_id(), keys.node_id());
//! # Ok(()) }
//! ```
//!
//! ## Identity
//!
//! A node's identity is its Ed25519 key and nothing else. Each endpoint
//! presents its public key as a TLS 1.3 raw public key (RFC 7250) and
//! signs the handshake with it; there are no certificates or authorities.
//! Dialing peer `P`, a node accepts the handshake only if the server proves
//! `P`'s key; serving, it accepts a client that proves any valid key, or
//! only one of [`QuicConfig::allowed`]. A client that presents no key, an
//! X.509 certificate, garbage, a chain, or a key it cannot sign with fails
//! the handshake: the refusal is logged (`tracing`), the caller gets an
//! error naming it ([`PeerAuthError`] in the text), and no handler sees
//! anything. The `from` a handler receives is the key the peer's handshake
//! proved, so every protocol that relies on an authenticated `from` (see the
//! `Transport` contract) may. Session resumption and 0-RTT are off: every
//! connection is a full handshake, and a replayed one fails.
//!
//! ## Connections and streams
//!
//! A node dials a peer when it first calls it (its own address is in the
//! book from the start, so it can call itself) and reuses that connection;
//! a connection that closed, whose peer's address changed in the book, or
//! unused for half the idle timeout is dialed afresh. Each request is one
//! bidirectional stream and each message one unidirectional stream (frames
//! in `frame.rs`):
//!
//! ```text
//! request / message:  protocol: u16 LE ‖ length: u32 LE ‖ payload, then FIN
//! answer:             status: u8 ‖ length: u32 LE ‖ body, then FIN
//! ```
//!
//! `status` is 0 (the answer), 1 (refused, with the reason), 2 (the handler
//! failed, with the reason) or 3 (the answer was over the limit, with its
//! size). A request that finds its connection already gone is sent once more
//! on a new one; one cut off later fails with [`TransportError::Io`](hologram_lattice::transport::TransportError::Io)
//! (the peer may have acted on it). A peer that dies sends no goodbye: a
//! request that times out without a single datagram from the peer during
//! the call marks its connection silent, and the next call dials afresh (a
//! slow handler's peer still acknowledges, so it keeps its connection). A
//! peer restarted with the same key also resets its previous run's
//! connections when their packets reach it (its stateless-reset key
//! derives from the node key).
//!
//! ## Limits and policies (all in [`QuicConfig`])
//!
//! - **Frames**: over `max_frame` fails before sending
//!   ([`TooLarge`](hologram_lattice::transport::TransportError::TooLarge)). A
//!   reader checks the announced length before reading the body, refusing a
//!   longer one (an inbound request gets a refusal, an answer is dropped),
//!   and grows its buffer as bytes arrive; a handler's answer over the
//!   limit is refused by the responder and reported as `TooLarge`.
//! - **Deadlines**: an inbound frame must arrive whole within
//!   `frame_deadline` of its stream's opening and an answer be taken within
//!   it, or the stream is stopped. `request`'s timeout covers connecting;
//!   `send` waits at most `connect_timeout` to connect and `write_timeout`
//!   to write. Each peer has its own dial lock: a dead peer never stalls
//!   calls to others.
//! - **Streams per peer**: at most `max_requests_per_peer` requests and
//!   `max_messages_per_peer` messages open at once on a connection (QUIC
//!   stream credit: more wait in the peer's stack, costing this node
//!   nothing). Requests are answered concurrently; messages are handed to
//!   the handler one at a time, in order.
//! - **Bytes per peer**: frame bytes read and not yet handled are held
//!   against `peer_buffer` per connection and `total_buffer` per node; a
//!   frame waits for its whole length in both budgets before its body is
//!   read (so frames never deadlock each other), and its deadline still
//!   runs.
//! - **Connections**: one inbound connection per peer key (a new one from
//!   the same key closes the older), at most `max_connections`; at the cap a
//!   new connection closes the one idle longest, and if every one is busy
//!   it is refused (its dialer gets
//!   [`Refused`](hologram_lattice::transport::TransportError::Refused)).
//!   Connections idle for `idle_timeout` close. Handshakes in progress are
//!   capped at `max_connections` too. Without an allow-list anyone can
//!   make a key, so on an open network set [`QuicConfig::allowed`].
//! - **Handlers**: each runs in its own task; one that panics costs its own
//!   request a `Remote` error (or loses its message), nothing else.

mod book;
mod config;
mod frame;
mod identity;
mod serve;
pub(crate) mod telemetry;
mod transport;
mod verify;

pub(crate) use book::peer_label;
pub use book::AddressBook;
pub use config::QuicConfig;
pub use identity::PeerAuthError;
pub use telemetry::METRICS;
pub use transport::QuicTransport;

use std::fmt;
use std::net::SocketAddr;

/// Why a [`QuicTransport`] could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum NetError {
    /// The UDP socket could not be bound at this address.
    Bind(SocketAddr, std::io::Error),
    /// The TLS configuration was refused (names the reason).
    Tls(String),
    /// A limit of the [`QuicConfig`] cannot be used, or no runtime runs.
    Config(String),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Bind(addr, e) => write!(f, "cannot bind {addr}: {e}"),
            NetError::Tls(e) => write!(f, "TLS configuration: {e}"),
            NetError::Config(e) => write!(f, "configuration: {e}"),
        }
    }
}

impl std::error::Error for NetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NetError::Bind(_, e) => Some(e),
            _ => None,
        }
    }
}
