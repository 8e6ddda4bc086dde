//! `hologram::node`: a validator of a BFT cluster over QUIC, and its client
//! (feature `net`). The `hologram-node` program is a command line over it.
//!
//! A node is one validator of a cluster whose validator set can change
//! (see [Changing the validators](#changing-the-validators)). It runs the Tendermint
//! replica of `hologram-consensus` with its write-ahead driver over
//! [`QuicTransport`](crate::net::QuicTransport), keeps what it decided and
//! what it signed in a [`RedbStore`](hologram_cam::RedbStore) in its data
//! directory (the consensus crate's `DurableLog`), and applies the decided
//! commands to a small replicated state machine: the list of applied
//! commands ([`CommandList`]), summarised by the chain of its transition
//! receipts, and a bounded key-value map the commands whose payload is a
//! [`KvOp`] read and change (reads included: every operation is ordered by
//! consensus, so reads are linearizable). A node killed at any moment restarts with everything it
//! committed and catches up with the others.
//!
//! Disk use stays bounded: the node snapshots its machine every
//! [`NodeConfig::snapshot_every`] heights, binds each snapshot into
//! consensus (its checkpoint rides in a decided batch, checked by every
//! validator's own machine), deletes its durable log below the newest
//! certified one, and keeps the newest [`NodeConfig::keep_commands`]
//! applied commands for log pages. A node that is empty or behind its
//! peers' compacted logs fetches the newest certified snapshot from them
//! (each part verified by address against the certified checkpoint; a
//! peer that sends a part that does not verify is skipped), restores it,
//! and catches up the heights after it.
//!
//! ## Who may say what
//!
//! Every connection is QUIC, encrypted and authenticated by Ed25519 key both
//! ways (see [`net`](crate::net)). Peers are the validators of the sets in
//! force and scheduled (the genesis set, [`NodeConfig::genesis`], moved by
//! each decided change); each `(id, address)` of [`NodeConfig::peers`]
//! goes into the transport's address book, and a node dials a peer only if
//! it proves that id. The endpoint accepts any valid key, because clients
//! connect with keys of their own ([`Client`]); then, by protocol:
//!
//! - **consensus** (votes, proposals, decisions, catch-up): taken only from
//!   the keys of the validator sets in force or scheduled; a frame from any
//!   other key is dropped (a request refused) before the consensus inbox
//!   sees it. A validator whose removal is in force is dropped; one whose
//!   addition is decided is taken (so that it can sync);
//! - **the client protocol** ([`CONTROL`]): any key may ask a status or
//!   read the log, and submit commands *signed by that same key* (the key
//!   its handshake proved); a command signed by another key, or whose
//!   signature does not verify, is refused. Every replica verifies each
//!   command's signature again before it is ordered.
//!
//! - **set-change approvals** ([`ControlRequest::Approve`]): only from the
//!   keys of [`NodeConfig::operators`]; a decided change's approvals are
//!   its quorum's signatures, so no client (nor `f` validators) can change
//!   the set.
//!
//! Anyone can make a key, so anyone who reaches the port can open a
//! connection (up to [`QuicConfig::max_connections`](crate::net::QuicConfig),
//! the one idle longest closed at the cap) and submit commands in their own
//! name; what a client may do is the state machine's business (it sees each
//! command's client).
//!
//! ## Changing the validators
//!
//! A change (add, remove or replace one validator) is decided by consensus
//! and is in force [`DEFAULT_SET_CHANGE_DELAY`](hologram_consensus::DEFAULT_SET_CHANGE_DELAY)
//! heights later (see [`Membership`](hologram_consensus::Membership)). The
//! operator's [`change_validators`] asks the nodes to approve it (each signs
//! with its key when asked by one of its operators), and once a quorum of
//! the set approved, hands the change to every node. A node to add starts
//! first, with a new key and the cluster's genesis set
//! ([`NodeConfig::genesis`]): once its addition is decided, the validators
//! take it in and it syncs (from a snapshot if their logs are compacted);
//! once it is in force, it votes. Where it listens is learned from its own
//! connections to them (see the roster, `src/node/roster.rs`), or given to
//! them as a peer.
//!
//! ## Embedding
//!
//! ```no_run
//! # async fn run() -> Result<(), hologram::node::NodeError> {
//! use hologram::node::{read_key_file, read_peers_file, merge_peers, NodeConfig, ValidatorNode};
//! use std::path::Path;
//!
//! let keys = read_key_file(Path::new("node.key"))?;
//! let peers = merge_peers(keys.node_id(), read_peers_file(Path::new("peers.txt"))?)?;
//! let config = NodeConfig::new(keys, "0.0.0.0:7000".parse().unwrap(), peers, "data");
//! let node = ValidatorNode::start(config).await?;
//! println!("{} listening on {}", node.info().id, node.info().listen);
//! node.run().await
//! # }
//! ```
//!
//! | part | what it holds |
//! |---|---|
//! | [`NodeConfig`], [`ValidatorNode`] | how to run a node, and the running node |
//! | [`Client`] | a client: submit, status, log |
//! | [`run_load`], [`LoadConfig`], [`LoadReport`] | a load generator: many clients, throughput and latency |
//! | [`ControlRequest`], [`ControlResponse`], [`Status`], [`Ack`], [`LogPage`] | the client protocol |
//! | [`generate_key_file`], [`read_key_file`], [`write_key_file`] | key files: an Ed25519 seed, in hex |
//! | [`parse_peer`], [`parse_node_id`], [`read_peers_file`], [`merge_peers`] | peers: `<id>@<host:port>` |
//! | [`change_validators`], [`Members`], [`Approval`], [`ChangeDone`] | changing the validators of a running cluster |
//! | [`CommandList`] | the state machine the decisions feed |
//! | [`KvOp`], [`KvResult`], [`KvError`] | its key-value operations (read, write, compare-and-set, transfer), see [`Client::kv`] |
//! | [`NodeReport`], [`Health`], [`PeerStatus`] | what a node reports of itself and its peers (`--status --json`) |
//! | [`install_prometheus`], [`all_metrics`], [`NODE_METRICS`] | metrics: the recorder the node serves and the documented list |
//! | [`NodeError`] | what can go wrong |
//!
//! ## Observing a node
//!
//! With [`NodeConfig::metrics`] set, a node serves `GET /metrics` (every
//! metric of [`all_metrics`], Prometheus text format) and `GET /health`
//! (`ready`, `lagging` or `stalled`; 200 only when ready) over HTTP, and
//! probes each peer's status every [`PROBE_INTERVAL`] (the
//! `hologram_node_peer_*` gauges: up, height, stalled). The list of metrics
//! and the log level conventions are in `docs/observability.md`.

mod applied;
mod bench;
mod client;
mod config;
mod control;
mod durable;
mod error;
mod http;
mod keys;
mod kv;
mod kv_client;
mod machine;
mod offload;
mod outbound;
mod peers;
mod reconfig;
mod roster;
mod run;
mod service;
mod state;
mod task;
mod telemetry;
mod watch;

pub use bench::{run_load, LoadConfig, LoadProgress, LoadReport, LOAD_LIMITS, LOAD_PAYLOAD};
pub use client::{Client, BUSY_BACKOFF, MAX_BUSY_BACKOFF, SUBMIT_ATTEMPTS};
pub use config::{
    fingerprint, NodeConfig, DEFAULT_KEEP_COMMANDS, DEFAULT_PIPELINE, DEFAULT_SNAPSHOT_EVERY,
    NODE_IDLE_TIMEOUT,
};
pub use control::{
    ControlRequest, ControlResponse, LogPage, NotApplied, Status, SubmitAnswer, CONTROL,
    LOG_PAGE_BYTES, LOG_PAGE_COMMANDS, MAX_CONTROL_BYTES, MAX_SUBMIT_COMMANDS, QUERY_TIMEOUT,
    SUBMIT_PATIENCE,
};
pub use error::NodeError;
pub use http::{MAX_CONNECTIONS, MAX_REQUEST_BYTES, REQUEST_TIMEOUT};
pub use keys::{generate_key_file, read_key_file, write_key_file};
pub use kv::{
    KvError, KvOp, KvResult, KV_MAGIC, MAX_KV_KEY, MAX_KV_KEYS, MAX_KV_READ, MAX_KV_VALUE,
};
pub use peers::{merge_peers, parse_node_id, parse_peer, read_peers_file, resolve};
pub use reconfig::{change_validators, Approval, ChangeDone, Members, CHANGE_POLL};
pub use run::{NodeInfo, ValidatorNode, MEMPOOL_CAPACITY, STORE_FILE, SYNC_INTERVAL};
pub use state::{Ack, CommandList};
pub use telemetry::{all_metrics, install_prometheus, NODE_METRICS};
pub use watch::{
    Health, NodeReport, PeerStatus, LAG_HEIGHTS, PROBE_INTERVAL, PROBE_TIMEOUT, STALL_AFTER,
};
