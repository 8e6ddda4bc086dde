//! Signed votes and proposals, with their canonical bytes.
//!
//! A vote is a validator's signed receipt of a proposal. Its canonical bytes
//! (86) are
//!
//! ```text
//! height u64 LE ‖ round u32 LE ‖ kind u8 (1 prevote, 2 precommit) ‖
//! has_value u8 (0 nil, 1 value) ‖ receipt (72 canonical bytes; zeros for nil)
//! ```
//!
//! signed for [`Purpose::Vote`]. A proposal's canonical bytes (88) are
//!
//! ```text
//! height u64 LE ‖ round u32 LE ‖ proof-of-lock round u32 LE (u32::MAX: none) ‖ receipt (72)
//! ```
//!
//! signed for [`Purpose::Proposal`]. Both are fixed-size, so they need no
//! length prefixes, and the purpose keeps a vote signature from ever passing
//! as a proposal's (or anything else's).

use crate::ConsensusError;
use hologram_lattice::NodeId;
use hologram_receipt::{verify_signature, KeyPair, Purpose, Receipt, Signature};
use serde::{Deserialize, Serialize};

/// The length of a vote's canonical bytes.
pub const VOTE_CANONICAL_LEN: usize = 8 + 4 + 1 + 1 + 72;
/// The length of a proposal's canonical bytes.
pub const PROPOSAL_CANONICAL_LEN: usize = 8 + 4 + 4 + 72;

/// The two votes of a Tendermint round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VoteKind {
    /// The first vote: "this proposal is valid and I am free to support it".
    Prevote,
    /// The second vote, after a polka (a quorum of prevotes): "commit it".
    Precommit,
}

impl VoteKind {
    /// The byte this kind has in canonical bytes.
    pub const fn code(self) -> u8 {
        match self {
            VoteKind::Prevote => 1,
            VoteKind::Precommit => 2,
        }
    }
}

/// A vote's slot: one validator may sign at most one vote per slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Slot {
    /// The height.
    pub height: u64,
    /// The round within the height.
    pub round: u32,
    /// Prevote or precommit.
    pub kind: VoteKind,
}

/// The canonical bytes of a vote in `slot` for `value` (`None` = nil).
pub fn vote_canonical_bytes(slot: Slot, value: Option<&Receipt>) -> [u8; VOTE_CANONICAL_LEN] {
    let mut out = [0u8; VOTE_CANONICAL_LEN];
    out[..8].copy_from_slice(&slot.height.to_le_bytes());
    out[8..12].copy_from_slice(&slot.round.to_le_bytes());
    out[12] = slot.kind.code();
    if let Some(r) = value {
        out[13] = 1;
        out[14..].copy_from_slice(&r.to_canonical_bytes());
    }
    out
}

/// A validator's signed vote: a receipt of the proposal it supports, or nil.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vote {
    /// Where the vote is cast.
    pub slot: Slot,
    /// The receipt of the value voted for; `None` is a vote for nil.
    pub value: Option<Receipt>,
    /// The validator that signed.
    pub voter: NodeId,
    /// Its signature over the canonical bytes, for [`Purpose::Vote`].
    pub signature: Signature,
}

impl Vote {
    /// Signs a vote for `value` in `slot` with `keys`.
    pub fn sign(keys: &KeyPair, slot: Slot, value: Option<Receipt>) -> Vote {
        let signature = keys.sign(Purpose::Vote, &vote_canonical_bytes(slot, value.as_ref()));
        Vote {
            slot,
            value,
            voter: keys.node_id(),
            signature,
        }
    }

    /// The canonical bytes the signature covers.
    pub fn canonical_bytes(&self) -> [u8; VOTE_CANONICAL_LEN] {
        vote_canonical_bytes(self.slot, self.value.as_ref())
    }

    /// Checks the signature (strict Ed25519, [`Purpose::Vote`]).
    pub fn verify_signature(&self) -> Result<(), ConsensusError> {
        verify_signature(
            &self.voter,
            Purpose::Vote,
            &self.canonical_bytes(),
            &self.signature,
        )
        .map_err(ConsensusError::BadSignature)
    }
}

/// The canonical bytes of a proposal.
pub fn proposal_canonical_bytes(
    height: u64,
    round: u32,
    pol_round: Option<u32>,
    value: &Receipt,
) -> [u8; PROPOSAL_CANONICAL_LEN] {
    let mut out = [0u8; PROPOSAL_CANONICAL_LEN];
    out[..8].copy_from_slice(&height.to_le_bytes());
    out[8..12].copy_from_slice(&round.to_le_bytes());
    out[12..16].copy_from_slice(&pol_round.unwrap_or(u32::MAX).to_le_bytes());
    out[16..].copy_from_slice(&value.to_canonical_bytes());
    out
}

/// The leader's signature on a proposal header: (height, round, proof-of-lock
/// round, value receipt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedHeader {
    /// The height proposed for.
    pub height: u64,
    /// The round proposed in.
    pub round: u32,
    /// The round of the polka that justifies re-proposing a locked value, if any.
    pub pol_round: Option<u32>,
    /// The receipt of the proposed batch.
    pub value: Receipt,
    /// The proposer.
    pub proposer: NodeId,
    /// Its signature, for [`Purpose::Proposal`].
    pub signature: Signature,
}

impl SignedHeader {
    /// Signs a header with `keys`.
    pub fn sign(
        keys: &KeyPair,
        height: u64,
        round: u32,
        pol_round: Option<u32>,
        value: Receipt,
    ) -> Self {
        let signature = keys.sign(
            Purpose::Proposal,
            &proposal_canonical_bytes(height, round, pol_round, &value),
        );
        Self {
            height,
            round,
            pol_round,
            value,
            proposer: keys.node_id(),
            signature,
        }
    }

    /// Checks the signature (strict Ed25519, [`Purpose::Proposal`]).
    pub fn verify_signature(&self) -> Result<(), ConsensusError> {
        verify_signature(
            &self.proposer,
            Purpose::Proposal,
            &proposal_canonical_bytes(self.height, self.round, self.pol_round, &self.value),
            &self.signature,
        )
        .map_err(ConsensusError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_bytes_follow_the_layout() {
        let r = Receipt::from_bytes(b"batch");
        let slot = Slot {
            height: 0x0102,
            round: 3,
            kind: VoteKind::Precommit,
        };
        let b = vote_canonical_bytes(slot, Some(&r));
        assert_eq!(&b[..8], &[2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[8..14], &[3, 0, 0, 0, 2, 1]);
        assert_eq!(&b[14..], &r.to_canonical_bytes());
        let nil = vote_canonical_bytes(slot, None);
        assert_eq!(nil[13], 0);
        assert!(nil[14..].iter().all(|&x| x == 0));
    }

    #[test]
    fn votes_verify_only_as_signed() {
        let keys = KeyPair::from_seed([4; 32]);
        let slot = Slot {
            height: 7,
            round: 0,
            kind: VoteKind::Prevote,
        };
        let vote = Vote::sign(&keys, slot, Some(Receipt::from_bytes(b"v")));
        assert!(vote.verify_signature().is_ok());
        let mut other = vote;
        other.slot.kind = VoteKind::Precommit;
        assert!(other.verify_signature().is_err());
        let mut other = vote;
        other.value = None;
        assert!(other.verify_signature().is_err());
        let mut other = vote;
        other.slot.round = 1;
        assert!(other.verify_signature().is_err());
        // A vote signature is not a proposal signature.
        let header = SignedHeader {
            height: 7,
            round: 0,
            pol_round: None,
            value: Receipt::from_bytes(b"v"),
            proposer: keys.node_id(),
            signature: vote.signature,
        };
        assert!(header.verify_signature().is_err());
        let good = SignedHeader::sign(&keys, 7, 0, None, Receipt::from_bytes(b"v"));
        assert!(good.verify_signature().is_ok());
        let mut bad = good;
        bad.pol_round = Some(0);
        assert!(bad.verify_signature().is_err());
    }
}
