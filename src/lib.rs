//! # hologram
//!
//! Distributed systems on the Hologram lattice: one dependency that re-exports
//! the five hologram crates.
//!
//! | module | crate | what it holds |
//! |---|---|---|
//! | [`lattice`] | `hologram-lattice` | lattice geometry, addresses, R96, C768, node ids, SIMD kernels, `Transport`, simulator, routing, discovery, topology |
//! | [`receipt`] | `hologram-receipt` | budgets, receipts, signatures, witness chains, receipt chains |
//! | [`cam`] | `hologram-cam` | the `Store` seam (memory, redb), `DistributedCAM`, chunked large objects, `DeduplicationNetwork` |
//! | [`consensus`] | `hologram-consensus` | BFT consensus on receipts (`ReceiptConsensus`, Tendermint replica, `Validator` seam), `ByzantineDetector`, `ReplicatedStateMachine`, `DurableLog`, `LatticeProtocol` broadcast |
//! | [`txn`] | `hologram-txn` | `DistributedTransaction` (2PC on receipts), `ReceiptSharding`, load balancing |
//! | `net` | (feature `net`) | `QuicTransport`: the `Transport` over QUIC, authenticated by node key |
//! | `node` | (feature `net`) | a BFT validator node over QUIC with a redb data directory, and its client (the `hologram-node` program) |
//!
//! The examples in the repository show each component at work; start with
//! `cargo run --release --example quickstart`. Implementing a seam of your
//! own (a `Transport`, `Handler`, `Store` or `Validator`)? Start from
//! [`prelude`]. [`futures`] is re-exported.
//!
//! ```
//! use hologram::lattice::{Address, Coord};
//! assert_eq!(Address::of(b"HELLO WORLD").coord(), Coord::new(4, 216));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use hologram_cam as cam;
pub use hologram_consensus as consensus;
pub use hologram_lattice as lattice;
pub use hologram_receipt as receipt;
pub use hologram_txn as txn;

/// The `futures` crate the hologram crates are built on (executors,
/// channels, `StreamExt`), so that users need no version of their own.
pub use futures;

pub mod prelude {
    //! What an implementer of the four seams needs, in one import:
    //! `use hologram::prelude::*;`.
    //!
    //! - [`Transport`] and [`Handler`] (and [`Service`], a handler that knows
    //!   its [`Protocol`], to mount on a [`ProtocolMux`]): [`PeerId`],
    //!   [`TransportError`], [`HandlerError`];
    //! - [`Store`]: [`Address`], [`Object`], [`CamError`];
    //! - [`Validator`]: [`NodeId`], [`Proposal`], [`Certificate`],
    //!   [`Decision`], [`Vote`], [`HeightStatus`], [`ConsensusError`];
    //! - and [`async_trait`], the attribute every one of these traits is
    //!   implemented with.
    //!
    //! ```
    //! use hologram::prelude::*;
    //!
    //! /// Answers every request with its own payload.
    //! struct Echo;
    //!
    //! #[async_trait]
    //! impl Handler for Echo {
    //!     async fn request(&self, _: PeerId, _: Protocol, p: Vec<u8>) -> Result<Vec<u8>, HandlerError> {
    //!         Ok(p)
    //!     }
    //!     async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {}
    //! }
    //!
    //! impl Service for Echo {
    //!     fn protocol(&self) -> Protocol {
    //!         Protocol::PING
    //!     }
    //! }
    //!
    //! let mux = std::sync::Arc::new(ProtocolMux::new());
    //! mux.mount(std::sync::Arc::new(Echo));
    //! assert_eq!(mux.protocols(), vec![Protocol::PING]);
    //! ```
    pub use hologram_cam::{CamError, Object, Store};
    pub use hologram_consensus::{
        Certificate, ConsensusError, Decision, HeightStatus, Proposal, Validator, Vote,
    };
    pub use hologram_lattice::transport::{
        async_trait, Handler, HandlerError, Protocol, ProtocolMux, Service, Transport,
        TransportError,
    };
    pub use hologram_lattice::{Address, NodeId, PeerId};
}

#[cfg(feature = "net")]
pub mod net;

#[cfg(feature = "net")]
pub mod node;

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
