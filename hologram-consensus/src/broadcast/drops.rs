//! Why a node dropped what it received, counted.

use hologram_receipt::ReceiptError;
use std::collections::BTreeMap;

/// Why a received message was dropped instead of delivered, forwarded or
/// counted. Every drop is counted in [`DropCounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The message was already delivered (or is being suppressed): not an
    /// attack by itself, the normal fate of most epidemic copies.
    Duplicate,
    /// The bytes did not decode as a broadcast message (driver only).
    Malformed,
    /// The immediate sender is not in the directory.
    UnknownPeer,
    /// The immediate sender is shunned.
    ShunnedPeer,
    /// The origin of the witness chain is not in the directory.
    UnknownOrigin,
    /// The origin of the witness chain is shunned.
    ShunnedOrigin,
    /// A forwarder in the witness chain is not in the directory, or is shunned.
    BadForwarder,
    /// The chain's last hop was not signed by the peer that sent the message.
    SenderMismatch,
    /// The chain hands the message to another node, not to this one.
    NotAddressedHere,
    /// An announcement or pull lists more ids than allowed, or a chain is
    /// longer than any valid one (only possible for inputs that bypassed
    /// the decoder, [`Wire::from_wire`](hologram_lattice::wire::Wire::from_wire)).
    OverLimit,
    /// The payload is larger than `max_body` allows.
    Oversized,
    /// The payload is too short to hold an envelope.
    NoEnvelope,
    /// Issued before the duplicate-suppression window.
    Stale,
    /// Issued further in the future than the allowed clock skew.
    FromTheFuture,
    /// The payload does not match the message's receipt.
    PayloadMismatch,
    /// The witness chain's custody is broken (a hop not signed by the holder).
    BrokenChain,
    /// The witness chain has more hops than allowed.
    ChainTooLong,
    /// A signature of the witness chain does not verify (forged origin or hop).
    ForgedSignature,
    /// An acknowledgement's signature does not verify, or its receiver is
    /// not the peer that sent it.
    ForgedAck,
    /// An acknowledgement from a node outside the directory.
    UnknownAcker,
    /// An acknowledgement for a broadcast this node is not collecting.
    UnexpectedAck,
    /// A second acknowledgement from the same receiver.
    DuplicateAck,
}

impl DropReason {
    /// The reason a witness-chain verification failure gives.
    pub(crate) fn of_chain_error(e: &ReceiptError) -> Self {
        match e {
            ReceiptError::PayloadMismatch { .. } => DropReason::PayloadMismatch,
            ReceiptError::BrokenLink { .. } => DropReason::BrokenChain,
            ReceiptError::ChainTooLong { .. } => DropReason::ChainTooLong,
            ReceiptError::PayloadTooLarge { .. } => DropReason::Oversized,
            _ => DropReason::ForgedSignature,
        }
    }

    /// Whether the drop shows the message (or acknowledgement) was forged or
    /// tampered with, rather than merely late, repeated or unwanted.
    pub fn is_forgery(self) -> bool {
        matches!(
            self,
            DropReason::SenderMismatch
                | DropReason::PayloadMismatch
                | DropReason::BrokenChain
                | DropReason::ForgedSignature
                | DropReason::ForgedAck
        )
    }
}

/// How many inputs a node dropped, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounts {
    counts: BTreeMap<DropReason, u64>,
}

impl DropCounts {
    /// Counts one drop.
    pub(crate) fn add(&mut self, reason: DropReason) {
        *self.counts.entry(reason).or_insert(0) += 1;
    }

    /// Drops for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts.get(&reason).copied().unwrap_or(0)
    }

    /// Every reason with its count (only reasons seen), in order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        self.counts.iter().map(|(&r, &n)| (r, n))
    }

    /// Drops of every reason.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Drops that show forgery or tampering ([`DropReason::is_forgery`]).
    pub fn forgeries(&self) -> u64 {
        self.iter()
            .filter(|(r, _)| r.is_forgery())
            .map(|(_, n)| n)
            .sum()
    }
}
