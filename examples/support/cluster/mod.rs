//! A BFT cluster node over real TCP sockets: the code behind
//! `examples/cluster_node.rs`, shared with `tests/cluster.rs` (both include
//! this folder with `#[path]`).
//!
//! A node is one validator of a fixed validator set. It runs the Tendermint
//! replica of `hologram-consensus` with its write-ahead driver over the
//! example TCP transport (`examples/support/tcp.rs`), keeps what it decided
//! and what it signed in a [`RedbStore`](hologram::cam::RedbStore) in its
//! data directory (the consensus crate's `DurableLog`), and applies the
//! decided commands to a small replicated state machine: the list of
//! applied commands, summarised by the chain of its transition receipts.
//! Clients talk to a node with a tiny request protocol on the same socket.
//!
//! | module | what it holds |
//! |---|---|
//! | [`cli`] | the command line: flags, peers files, the three modes (node, key, client) |
//! | [`keys`] | key files: a node's Ed25519 seed, in hex |
//! | [`state`] | [`CommandList`](state::CommandList): the state machine the decisions feed |
//! | [`control`] | the client protocol: submit, status, log |
//! | [`outbound`] | [`Queued`](outbound::Queued): per-peer send queues, so a dead peer stalls nobody |
//! | [`node`] | the node: recovery, the driver, the state machine, client requests |
//! | [`error`] | [`ClusterError`](error::ClusterError) |

#![allow(dead_code)] // the example and the test each use a part of this module

pub mod cli;
pub mod control;
pub mod error;
pub mod keys;
pub mod node;
pub mod outbound;
pub mod state;

#[path = "../tcp.rs"]
pub mod tcp;
