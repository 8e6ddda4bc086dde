//! The one error type of this crate.

use crate::{ChainHead, Purpose, Receipt};
use hologram_lattice::wire::WireError;
use hologram_lattice::NodeId;
use thiserror::Error;

/// Everything that can go wrong in `hologram-receipt`.
///
/// Each variant says what was wrong and with which input, so that a failed
/// check on a peer's message can be logged or reported as is. Verification
/// never panics: every malformed input ends in one of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// A fixed-length encoding had the wrong number of bytes.
    #[error("{what} needs exactly {expected} bytes, got {got}")]
    WrongLength {
        /// What was being decoded.
        what: &'static str,
        /// The length the encoding has.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A receipt's C768 phase was not below 768.
    #[error("receipt phase {0} is out of range (must be below 768)")]
    PhaseOutOfRange(u16),
    /// A budget was not below 96.
    #[error("budget {0} is out of range (must be below 96)")]
    BudgetOutOfRange(u8),
    /// A receipt's round-trip flag byte was neither 0 nor 1.
    #[error("receipt phi byte is {0}, must be 0 or 1")]
    PhiNotBoolean(u8),
    /// Data does not hash to the receipt's content address.
    #[error("data does not match the receipt's content address")]
    ContentMismatch,
    /// Data does not have the receipt's R96 digest.
    #[error("data does not match the receipt's R96 digest")]
    R96Mismatch,
    /// A budget above 47 was used where a non-negative amount is required
    /// (SPEC §5: an impossible claim).
    #[error("budget {0} is an impossible claim (above 47, i.e. negative)")]
    ImpossibleClaim(u8),
    /// A ledger was asked to charge more than it has left.
    #[error("cannot charge {requested}: only {remaining} of the budget remains")]
    InsufficientBudget {
        /// The amount asked for.
        requested: u8,
        /// What the ledger had left.
        remaining: u8,
    },
    /// A ledger was asked to release more than was charged.
    #[error("cannot release {requested}: only {charged} is charged")]
    ReleaseExceedsCharge {
        /// The amount asked to release.
        requested: u8,
        /// What the ledger had charged.
        charged: u8,
    },
    /// The bytes of a node id are not a usable Ed25519 public key (not a
    /// curve point, or a point of small order).
    #[error("node id {0} is not a valid Ed25519 public key")]
    InvalidKey(NodeId),
    /// A signature did not verify for the given signer and purpose.
    #[error("signature by {signer} for purpose {purpose} does not verify")]
    BadSignature {
        /// The claimed signer.
        signer: NodeId,
        /// The purpose it was checked for.
        purpose: Purpose,
    },
    /// A signature batch failed: the entry at `index` is the first bad one.
    #[error("signature {index} of the batch (by {signer}) does not verify")]
    BadBatchEntry {
        /// Position of the first bad entry, in insertion order.
        index: usize,
        /// The claimed signer of that entry.
        signer: NodeId,
    },
    /// A message's receipt is not the receipt of its payload.
    #[error("payload does not match the message receipt (claimed content {}, payload content {})", .claimed.content, .computed.content)]
    PayloadMismatch {
        /// The receipt the message carries.
        claimed: Box<Receipt>,
        /// The receipt computed from the payload.
        computed: Box<Receipt>,
    },
    /// The origin link of a witness chain does not carry the sender's
    /// signature over (receipt, sender).
    #[error("origin signature of {sender} does not verify")]
    BadOriginSignature {
        /// The claimed sender.
        sender: NodeId,
    },
    /// A hop of a witness chain does not carry its forwarder's signature over
    /// (previous link digest, next hop).
    #[error("hop {hop} signature by forwarder {forwarder} does not verify")]
    BadHopSignature {
        /// Zero-based index of the hop.
        hop: usize,
        /// The claimed forwarder.
        forwarder: NodeId,
    },
    /// A hop was signed by someone other than the node the previous link
    /// handed the message to (the chain of custody is broken).
    #[error("hop {hop} is signed by {forwarder}, but the message was handed to {expected}")]
    BrokenLink {
        /// Zero-based index of the hop.
        hop: usize,
        /// The node that should have forwarded (previous next hop, or the sender).
        expected: NodeId,
        /// The node that signed the hop.
        forwarder: NodeId,
    },
    /// A witness chain has more hops than allowed.
    #[error("witness chain has {hops} hops, at most {max} allowed")]
    ChainTooLong {
        /// Hops in the chain (or that forwarding would make).
        hops: usize,
        /// The bound, [`MAX_HOPS`](crate::MAX_HOPS).
        max: usize,
    },
    /// A payload is larger than an authenticated message may carry.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// The bound, [`MAX_PAYLOAD_LEN`](crate::MAX_PAYLOAD_LEN).
        max: usize,
    },
    /// A receipt list does not lead to the expected chain head.
    #[error("receipts lead to head {computed} after {len} receipts, expected {expected}")]
    HeadMismatch {
        /// The head that was expected.
        expected: ChainHead,
        /// The head the receipts produce.
        computed: ChainHead,
        /// How many receipts were chained.
        len: u64,
    },
    /// Wire bytes are not a valid value (see [`hologram_lattice::wire`]).
    #[error(transparent)]
    Wire(#[from] WireError),
}
