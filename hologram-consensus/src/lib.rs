//! # hologram-consensus
//!
//! Byzantine-fault-tolerant consensus on receipts (`ReceiptConsensus`), the
//! `ByzantineDetector`, pipelining, `ReplicatedStateMachine` and the
//! `LatticeProtocol` broadcast.
//!
//! **Status: not built yet.** This crate is an empty placeholder in the
//! workspace; nothing in it is usable. See the README's status table.
//!
//! - [`broadcast`]: `LatticeProtocol`, authenticated epidemic broadcast with delivery certificates.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod broadcast;
pub mod error;

pub use broadcast::{BroadcastResult, DeliveryCertificate, LatticeProtocol};
pub use error::ConsensusError;
