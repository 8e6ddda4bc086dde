//! # hologram
//!
//! Distributed systems on the Hologram lattice: one dependency that re-exports
//! the five hologram crates.
//!
//! | module | crate | what it holds |
//! |---|---|---|
//! | [`lattice`] | `hologram-lattice` | lattice geometry, addresses, R96, C768, node ids, SIMD kernels, `Transport`, simulator, routing, discovery, topology |
//! | [`receipt`] | `hologram-receipt` | budgets, receipts, signatures, witness chains, receipt chains |
//! | [`cam`] | `hologram-cam` | content-addressed storage and deduplication (not built yet) |
//! | [`consensus`] | `hologram-consensus` | BFT consensus on receipts, broadcast (not built yet) |
//! | [`txn`] | `hologram-txn` | transactions and sharding (not built yet) |
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

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
