//! The conformance suite: checks a [`Transport`] against the trait's contract.
//!
//! [`run`] builds a small network of the transport under test through a
//! [`TestNetwork`] you implement (how to start a node with a given handler,
//! and how to run a task on another thread), runs every check of [`CHECKS`]
//! in order, and returns the first [`Failure`], naming the check and what
//! went wrong. It takes a few seconds, most of it waiting out deliberate
//! timeouts.
//!
//! The suite is one async function and needs no runtime of its own (its
//! clock is a [`Timer`](super::Timer)): drive it with whatever executor your
//! transport needs, and have [`TestNetwork::spawn`] run tasks on that
//! executor's other threads. Every call into the transport is watched by a
//! deadline, so a transport that never returns fails a check rather than
//! hanging the suite (one that blocks its thread still hangs it).
//!
//! A transport that listens on sockets also gets the `socket:` checks: give
//! the address of a node and how to encode a request frame in
//! [`TestNetwork::sockets`], and the suite attacks that address with raw TCP
//! connections (from threads of its own, with blocking sockets): half-sent
//! frames that stall, an over-limit announced length, and more idle
//! connections than the node accepts. Transports without sockets return
//! `None` and skip them.
//!
//! Here is the suite run on [`MemoryNetwork`](super::MemoryNetwork), each
//! spawned task on a thread of its own:
//!
//! ```
//! use futures::executor::block_on;
//! use futures::future::BoxFuture;
//! use hologram_lattice::transport::conformance::{self, TestNetwork};
//! use hologram_lattice::transport::{async_trait, Handler, MemoryNetwork, Transport};
//! use hologram_lattice::PeerId;
//! use std::sync::Arc;
//!
//! struct Memory(MemoryNetwork);
//!
//! #[async_trait]
//! impl TestNetwork for Memory {
//!     async fn node(
//!         &mut self,
//!         id: PeerId,
//!         handler: Arc<dyn Handler>,
//!     ) -> Result<Arc<dyn Transport>, String> {
//!         Ok(Arc::new(self.0.join(id, handler)))
//!     }
//!
//!     fn spawn(&self, task: BoxFuture<'static, ()>) {
//!         std::thread::spawn(move || block_on(task));
//!     }
//! }
//!
//! if let Err(failure) = block_on(conformance::run(&mut Memory(MemoryNetwork::new(1)))) {
//!     panic!("{failure}");
//! }
//! ```
//!
//! The `hologram` package's `tcp_transport` test runs it on the example TCP
//! transport, socket checks included, on a multi-threaded tokio runtime.
//!
//! What the suite cannot see from outside: whether `from` is authenticated
//! (it checks that an honest caller's id arrives, not that a forged one is
//! refused), and how much memory a stalled frame pins (it checks that the
//! connection is dropped at the deadline; the `hologram` package's
//! `tcp_slow_peers` test measures the memory for the example transport).

mod checks;
mod node;
mod probe;
mod sockets;

use super::{Handler, Protocol, Transport};
use crate::PeerId;
use async_trait::async_trait;
use futures::future::BoxFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// The names of the checks [`run`] makes, in the order it makes them. The
/// `socket:` checks run only when [`TestNetwork::sockets`] gives an address.
pub const CHECKS: [&str; 15] = [
    "start",
    "unknown peer",
    "round trip",
    "self request",
    "messages",
    "unregistered protocol",
    "handler error",
    "request too large",
    "answer too large",
    "slow handler",
    "concurrent",
    "handler panic",
    "socket: stalled frame",
    "socket: over-limit announcement",
    "socket: idle connections",
];

/// A check the transport failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("transport conformance check `{check}` failed: {message}")]
#[non_exhaustive]
pub struct Failure {
    /// Which check (one of [`CHECKS`]).
    pub check: &'static str,
    /// What was wrong.
    pub message: String,
}

/// The network of the transport under test, as the suite needs it.
#[async_trait]
pub trait TestNetwork: Send {
    /// Starts node `id` served by `handler` and returns its transport. Every
    /// node started so far must be able to reach every other one, and itself,
    /// by id. The suite starts three nodes, a fourth during the socket
    /// checks, and never the same id twice.
    async fn node(
        &mut self,
        id: PeerId,
        handler: Arc<dyn Handler>,
    ) -> Result<Arc<dyn Transport>, String>;

    /// Runs `task` to completion concurrently with the caller, on another
    /// thread where the executor has several (`tokio::spawn` on a
    /// multi-threaded runtime, or `std::thread::spawn` with `block_on`). The
    /// "concurrent" check runs its callers this way.
    fn spawn(&self, task: BoxFuture<'static, ()>);

    /// Where node `id` accepts connections and how to speak to it, for a
    /// transport that listens on TCP sockets; `None` (the default) skips the
    /// `socket:` checks.
    fn sockets(&self, id: PeerId) -> Option<SocketTarget> {
        let _ = id;
        None
    }
}

/// Encodes a complete request frame as the transport writes it on a
/// connection: from, protocol, payload.
pub type EncodeRequest = Arc<dyn Fn(PeerId, Protocol, &[u8]) -> Vec<u8> + Send + Sync>;

/// A node's listening socket and the limits its transport promises, for the
/// `socket:` checks. Each limit must be at most 30 seconds, and
/// `max_inbound` at most 4,096, for the suite to finish in reasonable time.
#[derive(Clone)]
pub struct SocketTarget {
    /// The address the node accepts connections on.
    pub addr: SocketAddr,
    /// How the transport encodes a request frame (so the suite can send
    /// half of a real one).
    pub encode_request: EncodeRequest,
    /// A frame must arrive whole within this long of its first byte, or its
    /// connection is dropped.
    pub frame_deadline: Duration,
    /// A connection with no frame for this long is closed.
    pub idle_timeout: Duration,
    /// The most inbound connections the node keeps open.
    pub max_inbound: usize,
}

impl std::fmt::Debug for SocketTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketTarget")
            .field("addr", &self.addr)
            .field("frame_deadline", &self.frame_deadline)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_inbound", &self.max_inbound)
            .finish_non_exhaustive()
    }
}

/// Runs every check of the suite on a network of the transport under test.
pub async fn run<N: TestNetwork + ?Sized>(network: &mut N) -> Result<(), Failure> {
    let suite = checks::Suite::start(network).await?;
    suite.run_all(network).await?;
    if let Some(target) = network.sockets(suite.target_id()) {
        sockets::run(network, &suite, target).await?;
    }
    Ok(())
}

/// Names the check a result belongs to.
fn check<T>(name: &'static str, result: Result<T, String>) -> Result<T, Failure> {
    result.map_err(|message| Failure {
        check: name,
        message,
    })
}
