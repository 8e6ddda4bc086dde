//! The transport conformance suite on `QuicTransport`.
//!
//! The suite names its nodes with ids of its own (`[0xa1; 32]`, ...), and a
//! QUIC node's id is the public key it proves, so each suite id is given a
//! key (seeded with the id's bytes) and the suite talks to the nodes
//! through a thin renaming layer: its ids become keys on the way out, keys
//! become its ids on the way in (the `from` its probe sees, the peer in an
//! error). Everything else is the transport's own behaviour.
//!
//! The suite's `socket:` checks attack a TCP listener with raw TCP streams,
//! so they cannot apply to a UDP endpoint (`sockets` returns `None`); their
//! QUIC counterparts (a stalled frame dropped at its deadline, an
//! over-limit announcement refused, the stream and connection caps) are the
//! tests in `hostile.rs`.

use super::test_config;
use futures::future::BoxFuture;
use hologram::lattice::transport::conformance::{self, TestNetwork};
use hologram::lattice::transport::{
    async_trait, Handler, HandlerError, Protocol, Transport, TransportError,
};
use hologram::lattice::PeerId;
use hologram::net::{AddressBook, QuicConfig, QuicTransport};
use hologram::receipt::KeyPair;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The suite's ids and the keys standing for them.
#[derive(Default)]
struct Names {
    real: Mutex<HashMap<PeerId, PeerId>>,
    suite: Mutex<HashMap<PeerId, PeerId>>,
}

impl Names {
    fn add(&self, suite: PeerId, real: PeerId) {
        self.real.lock().unwrap().insert(suite, real);
        self.suite.lock().unwrap().insert(real, suite);
    }
    /// The key for a suite id (an unknown id stays itself).
    fn real(&self, suite: PeerId) -> PeerId {
        self.real
            .lock()
            .unwrap()
            .get(&suite)
            .copied()
            .unwrap_or(suite)
    }
    fn suite(&self, real: PeerId) -> PeerId {
        self.suite
            .lock()
            .unwrap()
            .get(&real)
            .copied()
            .unwrap_or(real)
    }
    fn error(&self, e: TransportError) -> TransportError {
        match e {
            TransportError::Unreachable(p) => TransportError::Unreachable(self.suite(p)),
            TransportError::TimedOut { peer, timeout } => TransportError::TimedOut {
                peer: self.suite(peer),
                timeout,
            },
            other => other,
        }
    }
}

struct Renamed {
    node: QuicTransport,
    id: PeerId,
    names: Arc<Names>,
}

#[async_trait]
impl Transport for Renamed {
    fn local_id(&self) -> PeerId {
        self.id
    }
    fn max_frame(&self) -> usize {
        self.node.max_frame()
    }
    async fn request(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let to = self.names.real(to);
        let answer = self.node.request(to, protocol, payload, timeout).await;
        answer.map_err(|e| self.names.error(e))
    }
    async fn send(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        let to = self.names.real(to);
        let sent = self.node.send(to, protocol, payload).await;
        sent.map_err(|e| self.names.error(e))
    }
}

struct RenamedHandler {
    handler: Arc<dyn Handler>,
    names: Arc<Names>,
}

#[async_trait]
impl Handler for RenamedHandler {
    async fn request(
        &self,
        from: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        let from = self.names.suite(from);
        self.handler.request(from, protocol, payload).await
    }
    async fn message(&self, from: PeerId, protocol: Protocol, payload: Vec<u8>) {
        let from = self.names.suite(from);
        self.handler.message(from, protocol, payload).await
    }
}

struct QuicNetwork {
    config: QuicConfig,
    book: AddressBook,
    names: Arc<Names>,
}

#[async_trait]
impl TestNetwork for QuicNetwork {
    async fn node(
        &mut self,
        id: PeerId,
        handler: Arc<dyn Handler>,
    ) -> Result<Arc<dyn Transport>, String> {
        let keys = KeyPair::from_seed(*id.as_bytes());
        self.names.add(id, keys.node_id());
        let handler = Arc::new(RenamedHandler {
            handler,
            names: Arc::clone(&self.names),
        });
        let node = QuicTransport::bind(
            &keys,
            super::localhost(),
            handler,
            self.book.clone(),
            self.config.clone(),
        )
        .map_err(|e| e.to_string())?;
        Ok(Arc::new(Renamed {
            node,
            id,
            names: Arc::clone(&self.names),
        }))
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    let mut network = QuicNetwork {
        config: test_config(),
        book: AddressBook::new(),
        names: Arc::default(),
    };
    if let Err(failure) = conformance::run(&mut network).await {
        panic!("{failure}");
    }
}
