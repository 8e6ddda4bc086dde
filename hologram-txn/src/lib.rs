//! # hologram-txn
//!
//! Atomic updates across participants and shards: `DistributedTransaction`
//! (two-phase commit with receipts), cross-shard transactions,
//! `ReceiptSharding` and load balancing.
//!
//! **Status: not built yet.** This crate is an empty placeholder in the
//! workspace; nothing in it is usable. See the README's status table.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
