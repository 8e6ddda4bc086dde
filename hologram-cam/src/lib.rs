//! # hologram-cam
//!
//! Content-addressed storage with deduplication across a network.
//!
//! Built: [`Object`] (bytes with the address they hash to), the [`Store`]
//! seam with its contract, [`MemoryStore`] (in memory, not durable) and
//! [`RedbStore`] (one redb file, durable when a put returns, re-hashes on
//! read), the public [`conformance`] suite,
//! [`DistributedCAM`] (verified fetches from providers and the router's
//! nearest peers, single-flight gets, content-defined chunking of large
//! blobs) and the [`DeduplicationNetwork`] (N replicas on a [`HashRing`],
//! majority writes, quorum reads with repair, reference sets that survive a
//! restart when kept durable, hand-off on join and leave, a scrub of rotten
//! copies and anti-entropy between ring neighbours that restores N copies
//! after a holder is lost). The README's status table lists what is missing.
//!
//! ```
//! use futures::executor::block_on;
//! use hologram_cam::{MemoryStore, Object, Store};
//!
//! let store = MemoryStore::new();
//! let object = Object::new(b"HELLO WORLD".to_vec());
//! block_on(store.put(object.clone())).unwrap();
//! assert_eq!(block_on(store.get(&object.address())).unwrap(), Some(object));
//! ```
//!
//! ## How the seams are held
//!
//! - **`Store`**: a type on the data path keeps its store's type, generic
//!   over `S: Store + ?Sized` and holding an `Arc<S>` ([`DistributedCAM<S>`](DistributedCAM),
//!   [`CamHandler<S>`](CamHandler)), so `S` may be a concrete store or
//!   `dyn Store`; a log or driver that only persists through a store erases
//!   it to `Arc<dyn Store>` (`hologram_consensus::DurableLog::open`). Either
//!   way the caller passes its `Arc<MyStore>` as it is, and `Arc<S>` is
//!   itself a `Store`.
//! - **`Transport`**: held as `Arc<dyn Transport>` ([`DistributedCAM`],
//!   [`DeduplicationNetwork`]), as everywhere in the hologram crates; an
//!   `Arc<MyTransport>` coerces.
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | `object` | [`Object`]: verified bytes and their [`Address`](hologram_lattice::Address) |
//! | `bytes` | [`SharedBytes`]: immutable bytes shared without copying (an object received is kept in the message's buffer) |
//! | `ring` | [`HashRing`]: consistent hashing with virtual nodes keyed by BLAKE3 |
//! | `store` | the [`Store`] trait and its durability contract, objects by address and a separate named key space ([`Name`]); [`MemoryStore`], [`RedbStore`], [`FaultyStore`] (a disk that fails from a seed, for tests) and the [`conformance`] suite |
//! | `cam` | [`DistributedCAM`], its [`CamHandler`] and [`ProviderRecords`] |
//! | `blob` | large blobs: chunks under a [`Manifest`], streamed and verified chunk by chunk |
//! | `chunking` | content-defined chunking (gear hash) for large blobs |
//! | [`dedup`] | [`DeduplicationNetwork`]: N replicas on the ring, majority writes, quorum reads with repair, reference sets kept by a [`ReferenceStore`] (in memory, or durable in a [`RedbStore`]), scrub, anti-entropy by ranges of the address space ([`dedup::AntiEntropy`]) |
//! | `wire` | the CAM protocol's messages, bounded decoding |
//! | `error` | [`CamError`] |
//! | `telemetry` | [`METRICS`]: the store's and the dedup network's metrics |
//! | `hashing` | [`AddressHashing`]: the keyed hasher for maps keyed by addresses (also used by `hologram-consensus` for command ids) |
//!
//! Every module but [`dedup`] (the dedup protocol's messages and limits)
//! and [`conformance`] (the `Store` suite) is private; their names are at
//! the root, one path each.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod blob;
mod bytes;
mod cam;
mod chunking;
pub mod dedup;
mod error;
mod hashing;
mod object;
mod ring;
mod store;
mod telemetry;
mod wire;

mod protocols;
pub use blob::{BlobRef, Manifest, MAX_CHUNKS};
pub use bytes::SharedBytes;
pub use cam::{CamHandler, DistributedCAM, ProviderRecords};
pub use chunking::{chunk_lengths, ChunkParams, GEAR_CONTEXT};
pub use dedup::holder::DedupHandler;
pub use dedup::network::{DeduplicationNetwork, Release, StoreResult};
pub use dedup::references::{MemoryReferences, ReferenceStore};
pub use error::CamError;
pub use hashing::{AddressHasher, AddressHashing, FastMap, FastSet};
pub use object::Object;
pub use protocols::{CAM_PROTOCOL, DEDUP_PROTOCOL};
pub use ring::{HashRing, DEFAULT_VNODES, VNODE_CONTEXT};
pub use store::{
    conformance, DiskFaultCounts, DiskFaults, FaultyStore, MemoryStore, Name, RedbStore, Store,
    DEFAULT_CACHE_BYTES, JOURNAL_CHECKPOINT_BYTES, JOURNAL_CHECKPOINT_RECORDS,
    JOURNAL_MAX_RECORD_BYTES, SEGMENT_BYTES, STORE_FORMAT_VERSION, UNFLUSHED,
};
pub use telemetry::METRICS;
pub use wire::{CamMessage, MAX_MESSAGE_BYTES, MAX_OBJECT_BYTES, MAX_PROVIDERS};
