//! The crate's error type.

use hologram_lattice::NodeId;
use hologram_receipt::ReceiptError;
use thiserror::Error;

/// Everything that can go wrong in `hologram-consensus`.
///
/// Each variant says what was wrong and with which input.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConsensusError {
    // broadcast
    /// A broadcast body is larger than the protocol accepts.
    #[error("broadcast body of {len} bytes exceeds the limit of {max}")]
    BroadcastTooLarge {
        /// The body's size.
        len: usize,
        /// The limit (`BroadcastConfig::max_body`).
        max: usize,
    },
    /// A broadcast wire message or certificate is longer than any valid one,
    /// or a payload in it exceeds its bound; it was not read further.
    #[error("broadcast wire data of {len} bytes exceeds the limit of {max}")]
    BroadcastWireTooLarge {
        /// The size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A broadcast wire message or delivery certificate did not decode.
    #[error("malformed broadcast {what}: {reason}")]
    BroadcastDecode {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A broadcast wire message carries more items than allowed.
    #[error("broadcast {what} carries {count} items, at most {max} allowed")]
    BroadcastTooMany {
        /// What the list holds.
        what: &'static str,
        /// How many it holds.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The origin could not sign its own broadcast.
    #[error("broadcast could not be built: {0}")]
    BroadcastBuild(#[source] ReceiptError),
    /// A broadcast's acknowledgements were forgotten (more than `max_pending`
    /// newer broadcasts) before its result was read.
    #[error("broadcast {0} is no longer tracked")]
    BroadcastForgotten(String),
    /// A delivery certificate has fewer acknowledgements than required.
    #[error("delivery certificate has {acks} acknowledgements, {threshold} required")]
    CertificateBelowThreshold {
        /// Distinct acknowledgements in the certificate.
        acks: usize,
        /// The threshold it was checked against.
        threshold: usize,
    },
    /// A delivery certificate lists a receiver twice, or out of order.
    #[error("delivery certificate lists receiver {receiver} twice or out of order")]
    CertificateDuplicateReceiver {
        /// The repeated (or misplaced) receiver.
        receiver: NodeId,
    },
    /// A delivery certificate counts an acknowledgement from a node outside the directory.
    #[error("delivery certificate counts {receiver}, who is not a known node")]
    CertificateUnknownReceiver {
        /// The unknown receiver.
        receiver: NodeId,
    },
    /// A delivery certificate holds an acknowledgement whose signature does
    /// not verify, or that is for another message or origin.
    #[error("delivery certificate holds a forged acknowledgement of {receiver}")]
    CertificateForgedAck {
        /// The receiver the forged acknowledgement names.
        receiver: NodeId,
    },
}
