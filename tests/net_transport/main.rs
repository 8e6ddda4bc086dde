//! `hologram::net::QuicTransport` on 127.0.0.1: the transport conformance
//! suite, hostile peers and bad input, a peer killed and restarted, and the
//! protocols of the stack running over it.

mod conformance;
mod datagrams;
mod hostile;
mod protocols;
mod raw;
mod replay;
mod restart;

use hologram::lattice::transport::{async_trait, Handler, HandlerError, Protocol};
use hologram::lattice::PeerId;
use hologram::net::{AddressBook, QuicConfig, QuicTransport};
use hologram::receipt::KeyPair;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The timeout of calls that should succeed.
pub const LONG: Duration = Duration::from_secs(5);

/// Shows the transport's `tracing` events with `RUST_LOG=hologram=debug`.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Node `n`'s keys.
pub fn keys(n: u8) -> KeyPair {
    KeyPair::from_seed([n; 32])
}

pub fn id(n: u8) -> PeerId {
    keys(n).node_id()
}

pub fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Limits short enough for tests to wait out.
pub fn test_config() -> QuicConfig {
    let mut config = QuicConfig::default();
    config.max_frame = 64 * 1024;
    config.frame_deadline = Duration::from_secs(1);
    config.connect_timeout = Duration::from_secs(1);
    config.idle_timeout = Duration::from_secs(10);
    config
}

/// Answers `PING` requests with `from ‖ payload`, refuses others, records
/// messages, and counts every frame it is handed.
#[derive(Default)]
pub struct Echo {
    pub handled: AtomicUsize,
    pub messages: Mutex<Vec<(PeerId, Protocol, Vec<u8>)>>,
}

impl Echo {
    pub fn handled(&self) -> usize {
        self.handled.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Handler for Echo {
    async fn request(
        &self,
        from: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        self.handled.fetch_add(1, Ordering::SeqCst);
        if protocol != Protocol::PING {
            return Err(HandlerError::Refused(format!("protocol {}", protocol.0)));
        }
        Ok([from.as_bytes().as_slice(), &payload].concat())
    }

    async fn message(&self, from: PeerId, protocol: Protocol, payload: Vec<u8>) {
        self.handled.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut messages) = self.messages.lock() {
            messages.push((from, protocol, payload));
        }
    }
}

/// Node `n` on 127.0.0.1 with an [`Echo`], in `book`.
pub fn echo_node(n: u8, book: &AddressBook, config: QuicConfig) -> (QuicTransport, Arc<Echo>) {
    echo_node_at(n, localhost(), book, config)
}

/// Node `n` on `addr` with an [`Echo`], in `book`.
pub fn echo_node_at(
    n: u8,
    addr: SocketAddr,
    book: &AddressBook,
    config: QuicConfig,
) -> (QuicTransport, Arc<Echo>) {
    let echo = Arc::new(Echo::default());
    let handler = Arc::clone(&echo) as Arc<dyn Handler>;
    let node =
        QuicTransport::bind(&keys(n), addr, handler, book.clone(), config).expect("bind a node");
    (node, echo)
}
