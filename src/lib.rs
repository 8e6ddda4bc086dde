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
//!
//! The examples in the repository show each component at work; start with
//! `cargo run --release --example quickstart`.
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

#[cfg(feature = "net")]
pub mod net;

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
