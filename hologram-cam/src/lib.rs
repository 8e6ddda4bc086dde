//! # hologram-cam
//!
//! Content-addressed storage with deduplication across a network: the
//! `Store` seam with in-memory and redb stores, `DistributedCAM` and
//! `DeduplicationNetwork`.
//!
//! **Status: not built yet.** This crate is an empty placeholder in the
//! workspace; nothing in it is usable. See the README's status table.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
