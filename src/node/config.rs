//! [`NodeConfig`]: what a validator node runs with.

use super::error::NodeError;
use crate::net::QuicConfig;
use hologram_consensus::ValidatorSet;
use hologram_lattice::NodeId;
use hologram_receipt::{ChainHead, KeyPair, Receipt};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The default number of heights decided concurrently.
pub const DEFAULT_PIPELINE: usize = 4;

/// The default snapshot interval, in heights ([`NodeConfig::snapshot_every`]).
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 1024;

/// The default number of applied commands a node keeps for log pages
/// ([`NodeConfig::keep_commands`]).
pub const DEFAULT_KEEP_COMMANDS: u64 = 100_000;

/// The QUIC idle timeout a node runs with by default (the transport's own
/// default is 60 s). Consensus talks to a peer mostly in one-way messages,
/// which never notice that the peer died: a killed peer sends no goodbye,
/// and its restarted process would only be dialed again once the old
/// connection closed. A connection on which nothing was received for this
/// long closes, so a restarted validator is reached again within it.
pub const NODE_IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// How to run a validator node.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The node's key pair: its id is its public key, which its QUIC
    /// handshakes prove.
    pub keys: KeyPair,
    /// Where to listen (UDP).
    pub listen: SocketAddr,
    /// The other nodes and where they listen: the transport's address book,
    /// and, unless [`genesis`](Self::genesis) is given, with this node the
    /// genesis validator set. Which of them are peers follows the validator
    /// sets in force (see [`NodeConfig::genesis`]).
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// The group's genesis validator set (the set its height 0 was decided
    /// by, which identifies the group), when it is not this node and its
    /// [`peers`](Self::peers): a node that joins a running cluster names the
    /// original validators here (it is not one of them), and so does every
    /// node after changes made the peers differ from the genesis set.
    /// Every node of a group must be given the same one. From it, the
    /// decided set changes (applied from the node's log, or restored with a
    /// snapshot) say which validators are in force at each height: the
    /// node's consensus peers are those, whatever `peers` lists.
    pub genesis: Option<Vec<NodeId>>,
    /// The keys whose clients may ask this node to approve a change of the
    /// validator set ([`ControlRequest::Approve`](super::ControlRequest::Approve)),
    /// which it signs with its own key. Empty (the default): it approves none.
    pub operators: Vec<NodeId>,
    /// The data directory (created if missing).
    pub data: PathBuf,
    /// Heights decided concurrently (at least 1).
    pub pipeline: usize,
    /// The QUIC transport's limits. Its `max_frame` is raised to what
    /// consensus and the client protocol need, and its `allowed` must stay
    /// `None`: clients connect with keys of their own (consensus frames are
    /// taken from the validators only, whatever it says).
    pub quic: QuicConfig,
    /// Where to serve `/metrics` (Prometheus text format) and `/health`
    /// over HTTP; `None` (the default) serves neither. Setting it installs
    /// a Prometheus recorder as the process's global `metrics` recorder
    /// ([`install_prometheus`](super::install_prometheus)).
    pub metrics: Option<SocketAddr>,
    /// The node snapshots its state machine each time this many more heights
    /// are applied (at least 1; default [`DEFAULT_SNAPSHOT_EVERY`]). **Every
    /// validator must use the same**: a leader proposes its snapshot's
    /// checkpoint and the others support it only if their own machines
    /// computed the same one (with different intervals no checkpoint is
    /// certified, and the durable log is never compacted). Once a
    /// checkpoint is certified, the durable log below it is deleted, and a
    /// peer that needs those heights is sent the snapshot instead.
    pub snapshot_every: u64,
    /// How many of the newest applied commands the node keeps on disk for
    /// log pages ([`ControlRequest::Log`](super::ControlRequest::Log); default
    /// [`DEFAULT_KEEP_COMMANDS`], at least 1): older ones are deleted as new
    /// ones are written. A node restored from a snapshot holds only the
    /// commands applied after it.
    pub keep_commands: u64,
}

impl NodeConfig {
    /// A node with key `keys`, listening on `listen`, with these peers and
    /// data directory, and the defaults: [`DEFAULT_PIPELINE`] heights at
    /// once, `QuicConfig::default()` with an idle timeout of
    /// [`NODE_IDLE_TIMEOUT`], a snapshot every [`DEFAULT_SNAPSHOT_EVERY`]
    /// heights, the newest [`DEFAULT_KEEP_COMMANDS`] commands kept.
    pub fn new(
        keys: KeyPair,
        listen: SocketAddr,
        peers: Vec<(NodeId, SocketAddr)>,
        data: impl Into<PathBuf>,
    ) -> NodeConfig {
        let quic = QuicConfig {
            idle_timeout: NODE_IDLE_TIMEOUT,
            ..QuicConfig::default()
        };
        NodeConfig {
            keys,
            listen,
            peers,
            genesis: None,
            operators: Vec::new(),
            data: data.into(),
            pipeline: DEFAULT_PIPELINE,
            quic,
            metrics: None,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            keep_commands: DEFAULT_KEEP_COMMANDS,
        }
    }

    /// The genesis validator set: [`genesis`](Self::genesis), else this
    /// node and its peers; ordered by id so that every node given the same
    /// members agrees on the order (and so on the leaders).
    pub fn validators(&self) -> Result<ValidatorSet, NodeError> {
        let mut ids: Vec<NodeId> = match &self.genesis {
            Some(ids) => ids.clone(),
            None => {
                let mut ids: Vec<NodeId> = self.peers.iter().map(|(id, _)| *id).collect();
                ids.push(self.keys.node_id());
                ids
            }
        };
        ids.sort_unstable();
        ids.dedup();
        Ok(ValidatorSet::new(ids)?)
    }
}

/// A short fingerprint of a validator set (16 hex digits of a receipt chain
/// over the receipt of its ids in order), printed at start so operators can check that every
/// node runs the same set.
pub fn fingerprint(validators: &ValidatorSet) -> String {
    let mut bytes = b"hologram cluster-validators v1".to_vec();
    for id in validators.validators() {
        bytes.extend_from_slice(id.as_bytes());
    }
    ChainHead::default()
        .next(&Receipt::from_bytes(&bytes))
        .to_string()
        .chars()
        .take(16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validator_set_is_ordered_and_fingerprinted() {
        let keys = KeyPair::from_seed([9; 32]);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let peers: Vec<(NodeId, SocketAddr)> = (1..4u8)
            .map(|i| (KeyPair::from_seed([i; 32]).node_id(), addr))
            .collect();
        let a = NodeConfig::new(keys.clone(), addr, peers.clone(), "d");
        let mut reversed = peers.clone();
        reversed.reverse();
        let b = NodeConfig::new(keys, addr, reversed, "d");
        let (va, vb) = (a.validators().unwrap(), b.validators().unwrap());
        assert_eq!(va.validators(), vb.validators());
        assert_eq!(fingerprint(&va), fingerprint(&vb));
        assert_eq!(fingerprint(&va).len(), 16);
    }
}
