//! # hologram-receipt
//!
//! Everything a hologram node signs, verifies or chains: budgets in Z/96,
//! receipts and their composition, domain-separated Ed25519 signatures,
//! witness chains for authenticated messages, and receipt chains.
//!
//! **Status: not built yet.** This crate is an empty placeholder in the
//! workspace; nothing in it is usable. See the README's status table.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
