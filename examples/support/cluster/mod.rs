//! A BFT cluster node over real TCP sockets: the code behind
//! `examples/cluster_node.rs`, shared with `tests/cluster.rs` (both include
//! this folder with `#[path]`).
//!
//! A node is one validator of a fixed validator set. It runs the Tendermint
//! [`Replica`](hologram::consensus::Replica) of `hologram-consensus` over the
//! example TCP transport (`examples/support/tcp.rs`), keeps what it decided
//! and what it signed in a [`RedbStore`](hologram::cam::RedbStore) in its
//! data directory, and applies the decided commands to a small replicated
//! state machine: the log of applied commands, summarised by a receipt chain.
//! Clients talk to a node with a tiny request protocol on the same socket.
//!
//! | module | what it holds |
//! |---|---|
//! | [`cli`] | the command line: flags, peers files, the three modes (node, key, client) |
//! | [`keys`] | key files: a node's Ed25519 seed, in hex |
//! | [`storage`] | [`DurableLog`](storage::DurableLog): decisions and voting record in a `Store` |
//! | [`state`] | [`CommandLog`](state::CommandLog): the replicated state machine |
//! | [`control`] | the client protocol: submit, status, log |
//! | [`node`] | the node: a durable driver of the replica over TCP |
//! | [`error`] | [`ClusterError`](error::ClusterError) |

#![allow(dead_code)] // the example and the test each use a part of this module

pub mod cli;
pub mod control;
pub mod error;
pub mod keys;
pub mod node;
pub mod state;
pub mod storage;

#[path = "../tcp.rs"]
pub mod tcp;
