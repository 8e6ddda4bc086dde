//! # hologram-lattice
//!
//! The core of the hologram crates: the geometry of the 12,288-site lattice
//! and everything that is hashing or a hot kernel. Every other hologram crate
//! stands on it; it depends on no runtime.
//!
//! The definitions follow the project's SPEC (§1–§4 and §7's proof of work).
//!
//! ## How the `Transport` seam is held
//!
//! A type that keeps a transport keeps an `Arc<dyn Transport>`: a node has
//! one transport, chosen at run time (the [`MemoryNetwork`](transport::MemoryNetwork)
//! in tests, sockets in production) and shared by all its protocols, and
//! every call is I/O, so a type parameter would buy nothing. Pass your
//! `Arc<MyTransport>` as it is: it coerces, no cast. A function that only
//! borrows a transport for a call takes `&T` with `T: Transport + ?Sized`,
//! and `Arc<T>` is itself a `Transport`, for code generic over one. The
//! inbound side is one [`ProtocolMux`](transport::ProtocolMux) per node, on
//! which every protocol's [`Service`](transport::Service) is mounted.
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | `coord` (private) | [`Coord`], the 48 × 256 torus, its metric and tie-break |
//! | `address` (private) | [`Address`]: BLAKE3 content addresses and their site |
//! | `class` (private) | [`class`]: the resonance class of a byte, [`CLASS_TABLE`] |
//! | `r96` (private) | [`R96Histogram`], [`R96Digest`], [`residue`] |
//! | `c768` (private) | [`sigma`], [`orbit`], [`Phase`], [`ScheduleRotation`] |
//! | `node_id` (private) | [`NodeId`] and its Sybil-resistance [`ProofOfWork`] |
//! | `columns` (private) | [`PeerColumns`]: many sites as columns, batched distance and k nearest |
//! | `kernels` (private) | the SIMD kernels (scalar, portable, AVX2, NEON) behind [`Backend`], dispatched at run time |
//! | [`routing`] | the [`RoutingTable`](routing::RoutingTable) with a page index, discovery, lookups; the chapter's [`LatticeRouter`] |
//! | [`topology`] | [`AdaptiveTopology`](topology::AdaptiveTopology), bounded [`LatencyHistogram`](topology::LatencyHistogram)s |
//! | [`transport`] | the [`Transport`](transport::Transport) seam and its contract, inbound [`Handler`](transport::Handler)s, protocol tags, the [`conformance`](transport::conformance) suite |
//! | [`sim`] | the deterministic simulator for protocol cores: seeded faults, virtual clock, invariants; an executor that runs async code on the virtual clock |
//! | [`driver`] | the one async driver: runs any simulator core over a `Transport` (bounded per-peer inboxes, timers, a write-ahead persist hook) |
//! | [`telemetry`] | the metric catalogue ([`Metric`](telemetry::Metric)), [`register`](telemetry::register), the rate limit on logs of refused input |
//! | [`wire`] | the one wire codec: bounded postcard decoding, [`WireError`](wire::WireError), the [`Wire`](wire::Wire) trait |
//! | `error` (private) | [`LatticeError`] |
//!
//! The leaf modules are private and their names are at the root, one path
//! each; the seven namespaces above are public.
//!
//! ## Example
//!
//! ```
//! use hologram_lattice::{Address, Coord, PeerColumns, R96Digest};
//!
//! let data = b"HELLO WORLD";
//! let address = Address::of(data);
//! assert_eq!(address.coord(), Coord::new(4, 216));
//! assert_eq!(R96Digest::of(data), R96Digest::of(b"DLROW OLLEH")); // order-blind
//!
//! // Which of three peers is nearest the object's site?
//! let peers: PeerColumns = [Coord::new(4, 0), Coord::new(5, 216), Coord::new(40, 1)]
//!     .into_iter()
//!     .collect();
//! let nearest = peers.nearest(address.coord(), 1);
//! assert_eq!(nearest[0].index, 0); // same page beats an adjacent page
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod address;
mod bytes32;
mod c768;
mod class;
mod columns;
mod coord;
mod derive;
pub mod driver;
mod error;
mod kernels;
mod node_id;
mod r96;
pub mod routing;
pub mod sim;
pub mod telemetry;
pub mod topology;
pub mod transport;
pub mod wire;

pub use address::Address;
pub use c768::{
    orbit, sigma, sigma_pow, slot_ms, Phase, SchedulePoint, ScheduleRotation, ORBITS, PERIOD,
};
pub use class::{class, CLASSES, CLASS_TABLE};
pub use columns::{Neighbor, PeerColumns};
pub use coord::{Coord, BYTES_PER_PAGE, MAX_DISTANCE, PAGES, SITES};
pub use derive::DeriveContext;
pub use error::LatticeError;
pub use kernels::Backend;
pub use node_id::{NodeId, PeerId, ProofOfWork, NODE_COORD_CONTEXT, NODE_POW_CONTEXT};
pub use r96::{residue, R96Digest, R96Histogram, R96_DIGEST_CONTEXT};
pub use routing::router::LatticeRouter;
