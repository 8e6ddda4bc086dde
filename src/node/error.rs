//! What can go wrong in a node or its client, each case saying what was
//! wrong and with which input.

use crate::net::NetError;
use hologram_cam::CamError;
use hologram_consensus::ConsensusError;
use hologram_lattice::transport::TransportError;
use hologram_lattice::wire::WireError;
use std::path::PathBuf;

/// The error of a node and of its client.
#[derive(Debug)]
#[non_exhaustive]
pub enum NodeError {
    /// A key file cannot be read, written or parsed.
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A peer given as `<id>@<addr>` (on the command line or in a peers
    /// file) does not parse, or contradicts another, or a peers file cannot
    /// be used.
    Peer {
        /// The peer as written.
        spec: String,
        /// What was wrong.
        reason: String,
    },
    /// A file or socket operation failed.
    Io {
        /// What was being done.
        doing: String,
        /// The error.
        source: std::io::Error,
    },
    /// The node's store failed.
    Store {
        /// What was being done.
        doing: &'static str,
        /// The error.
        source: CamError,
    },
    /// Consensus refused something (a configuration, a stored block, a
    /// decision), or the store failed under it.
    Consensus(ConsensusError),
    /// The QUIC transport could not start.
    Net(NetError),
    /// A request to a node failed on the way.
    Transport(TransportError),
    /// Bytes received do not decode (see [`hologram_lattice::wire`]).
    Wire(WireError),
    /// A submitted command was decided but not applied (its client's
    /// session refused its sequence): retrying it cannot help.
    NotApplied(super::control::NotApplied),
    /// A node stayed busy (its mempool full) for as long as the client
    /// retried a submission ([`Client::submit`](super::Client::submit)).
    Busy {
        /// The node.
        node: hologram_lattice::NodeId,
    },
    /// A node did not apply a submitted command within its patience
    /// ([`SUBMIT_PATIENCE`](super::SUBMIT_PATIENCE)), at any node tried: it
    /// may still be applied, and a retry of the same command is applied at
    /// most once.
    Pending {
        /// The last node tried.
        node: hologram_lattice::NodeId,
    },
    /// A node refused a submitted command, for this reason.
    Refused {
        /// The node.
        node: hologram_lattice::NodeId,
        /// Its reason.
        reason: String,
    },
    /// A node answered a request with a response of another kind.
    UnexpectedResponse {
        /// What kind of response came.
        got: &'static str,
    },
    /// A key-value operation was refused: out of bounds (before it was
    /// sent), or by the state machine (it changed nothing).
    Kv(super::kv::KvError),
    /// The whole log was asked for, and the node no longer holds its
    /// beginning: it keeps the newest commands from position `first` on.
    LogTrimmed {
        /// The first position the node holds.
        first: u64,
    },
    /// A validator-set change cannot be asked for: the operation does not
    /// fit the newest set, or no node said what that set is.
    SetChangeRefused {
        /// The operation.
        op: hologram_consensus::SetOp,
        /// Why.
        reason: String,
    },
    /// Fewer than a quorum of the set's validators approved a change.
    NoApprovalQuorum {
        /// The set version the change was for.
        version: u64,
        /// Valid approvals gathered.
        approvals: usize,
        /// The set's quorum.
        quorum: usize,
        /// What each node that did not approve answered.
        refusals: Vec<String>,
    },
    /// No node took an approved set change to propose.
    SetChangeNotTaken {
        /// What each node answered.
        refusals: Vec<String>,
    },
    /// An approved set change was not decided and in force in time.
    SetChangeTimeout {
        /// The set version the change was for.
        version: u64,
        /// How long the client waited.
        waited: std::time::Duration,
    },
}

impl core::fmt::Display for NodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NodeError::KeyFile { path, reason } => {
                write!(f, "key file {}: {reason}", path.display())
            }
            NodeError::Peer { spec, reason } => write!(f, "peer {spec:?}: {reason}"),
            NodeError::Io { doing, source } => write!(f, "{doing}: {source}"),
            NodeError::Store { doing, source } => write!(f, "store: {doing}: {source}"),
            NodeError::Consensus(e) => write!(f, "consensus: {e}"),
            NodeError::Net(e) => write!(f, "transport: {e}"),
            NodeError::Transport(e) => write!(f, "request failed: {e}"),
            NodeError::Wire(e) => write!(f, "{e}"),
            NodeError::NotApplied(why) => write!(f, "the command was not applied: {why}"),
            NodeError::Busy { node } => write!(
                f,
                "node {node} stayed busy (mempool full) for the client's whole patience"
            ),
            NodeError::Pending { node } => write!(
                f,
                "not applied within the node's patience (last tried {node}); \
                 it may still be, and a retry is applied at most once"
            ),
            NodeError::Refused { node, reason } => {
                write!(f, "node {node} refused the command: {reason}")
            }
            NodeError::Kv(e) => write!(f, "key-value operation refused: {e}"),
            NodeError::LogTrimmed { first } => write!(
                f,
                "the node keeps its log from position {first} on, not from 0"
            ),
            NodeError::SetChangeRefused { op, reason } => {
                write!(f, "the set change {op:?} cannot be asked for: {reason}")
            }
            NodeError::NoApprovalQuorum {
                version,
                approvals,
                quorum,
                refusals,
            } => write!(
                f,
                "{approvals} approvals of the set change at version {version}, a quorum is \
                 {quorum}; refusals: {}",
                refusals.join("; ")
            ),
            NodeError::SetChangeNotTaken { refusals } => {
                write!(f, "no node took the set change: {}", refusals.join("; "))
            }
            NodeError::SetChangeTimeout { version, waited } => write!(
                f,
                "the set change at version {version} was not in force after {waited:?}"
            ),
            NodeError::UnexpectedResponse { got } => {
                write!(
                    f,
                    "the node answered with {got}, which does not answer the request"
                )
            }
        }
    }
}

impl std::error::Error for NodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NodeError::Io { source, .. } => Some(source),
            NodeError::Store { source, .. } => Some(source),
            NodeError::Consensus(e) => Some(e),
            NodeError::Net(e) => Some(e),
            NodeError::Transport(e) => Some(e),
            NodeError::Wire(e) => Some(e),
            NodeError::Kv(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConsensusError> for NodeError {
    fn from(e: ConsensusError) -> Self {
        NodeError::Consensus(e)
    }
}

impl From<NetError> for NodeError {
    fn from(e: NetError) -> Self {
        NodeError::Net(e)
    }
}

impl From<WireError> for NodeError {
    fn from(e: WireError) -> Self {
        NodeError::Wire(e)
    }
}

impl From<TransportError> for NodeError {
    fn from(e: TransportError) -> Self {
        NodeError::Transport(e)
    }
}

/// A closure turning an I/O error into [`NodeError::Io`] saying what was
/// being done.
pub(crate) fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeError {
    let doing = doing.into();
    move |source| NodeError::Io { doing, source }
}

/// A closure turning a store error into [`NodeError::Store`].
pub(crate) fn store(doing: &'static str) -> impl FnOnce(CamError) -> NodeError {
    move |source| NodeError::Store { doing, source }
}
