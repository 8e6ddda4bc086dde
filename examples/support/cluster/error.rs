//! What can go wrong in a cluster node or its client, each case saying what
//! was wrong and with which input.

use hologram::cam::CamError;
use hologram::consensus::ConsensusError;
use hologram::lattice::transport::TransportError;
use std::path::PathBuf;

/// The error of the cluster node and its client.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClusterError {
    /// The command line is wrong; the text says how (and the usage follows).
    Usage(String),
    /// A key file cannot be read, written or parsed.
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A peer given as `<id>@<addr>` (on the command line or in a peers
    /// file) does not parse, or contradicts another.
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
    /// A request to a node failed on the way.
    Transport(TransportError),
    /// Bytes received do not decode.
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}

impl core::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClusterError::Usage(why) => write!(f, "bad command line: {why}"),
            ClusterError::KeyFile { path, reason } => {
                write!(f, "key file {}: {reason}", path.display())
            }
            ClusterError::Peer { spec, reason } => write!(f, "peer {spec:?}: {reason}"),
            ClusterError::Io { doing, source } => write!(f, "{doing}: {source}"),
            ClusterError::Store { doing, source } => write!(f, "store: {doing}: {source}"),
            ClusterError::Consensus(e) => write!(f, "consensus: {e}"),
            ClusterError::Transport(e) => write!(f, "request failed: {e}"),
            ClusterError::Decode { what, reason } => write!(f, "malformed {what}: {reason}"),
        }
    }
}

impl std::error::Error for ClusterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClusterError::Io { source, .. } => Some(source),
            ClusterError::Store { source, .. } => Some(source),
            ClusterError::Consensus(e) => Some(e),
            ClusterError::Transport(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConsensusError> for ClusterError {
    fn from(e: ConsensusError) -> Self {
        ClusterError::Consensus(e)
    }
}

impl From<TransportError> for ClusterError {
    fn from(e: TransportError) -> Self {
        ClusterError::Transport(e)
    }
}

/// A closure turning an I/O error into [`ClusterError::Io`] saying what was
/// being done.
pub fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let doing = doing.into();
    move |source| ClusterError::Io { doing, source }
}

/// A closure turning a store error into [`ClusterError::Store`].
pub fn store(doing: &'static str) -> impl FnOnce(CamError) -> ClusterError {
    move |source| ClusterError::Store { doing, source }
}
