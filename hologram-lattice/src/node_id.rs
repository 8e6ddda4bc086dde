//! Node identities and their Sybil-resistance proof of work (SPEC §2, §7).

use crate::bytes32::bytes32_type;
use crate::{Coord, LatticeError};
use serde::{Deserialize, Serialize};

/// Key-derivation context of a node's lattice coordinate.
pub const NODE_COORD_CONTEXT: &str = "hologram node-coord v1";
/// Key-derivation context of the proof of work.
pub const NODE_POW_CONTEXT: &str = "hologram node-pow v1";

/// A node's identity: its 32-byte Ed25519 public key.
///
/// This crate treats it as opaque bytes; `hologram-receipt` checks that it is a
/// valid key when it verifies a signature. The derived order is the tie-break
/// order of SPEC §1.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId([u8; 32]);

bytes32_type!(NodeId);

impl NodeId {
    /// The node's lattice site: `coord` of BLAKE3-derive("hologram node-coord v1", key).
    pub fn coord(&self) -> Coord {
        let h = blake3::Hasher::new_derive_key(NODE_COORD_CONTEXT)
            .update(&self.0)
            .finalize();
        crate::Address::from(h).coord()
    }

    /// The number of leading zero bits of the proof-of-work hash for `nonce`.
    pub fn work(&self, nonce: u64) -> u32 {
        let h = blake3::Hasher::new_derive_key(NODE_POW_CONTEXT)
            .update(&self.0)
            .update(&nonce.to_le_bytes())
            .finalize();
        leading_zero_bits(h.as_bytes())
    }

    /// Searches nonces `0, 1, 2, …` for a proof of at least `difficulty`
    /// leading zero bits, trying at most `max_attempts`. Expect about
    /// `2^difficulty` hashes.
    pub fn mint_pow(
        &self,
        difficulty: u32,
        max_attempts: u64,
    ) -> Result<Option<ProofOfWork>, LatticeError> {
        if difficulty > 256 {
            return Err(LatticeError::DifficultyTooHigh(difficulty));
        }
        Ok((0..max_attempts)
            .find(|&n| self.work(n) >= difficulty)
            .map(|nonce| ProofOfWork { nonce }))
    }

    /// Checks a proof of work in one hash.
    pub fn verify_pow(&self, proof: ProofOfWork, difficulty: u32) -> Result<(), LatticeError> {
        let achieved = self.work(proof.nonce);
        if achieved >= difficulty {
            Ok(())
        } else {
            Err(LatticeError::InsufficientWork {
                required: difficulty,
                achieved,
            })
        }
    }
}

/// How transports and routing tables name a peer: its [`NodeId`].
pub type PeerId = NodeId;

/// A nonce showing that work was spent on a [`NodeId`]: BLAKE3-derive("hologram
/// node-pow v1", key ‖ nonce u64 LE) has at least the required number of leading
/// zero bits.
///
/// ```
/// use hologram_lattice::NodeId;
/// let id = NodeId::from_bytes([7; 32]);
/// let proof = id.mint_pow(8, 1 << 20).unwrap().expect("2^8 expected attempts");
/// assert!(id.verify_pow(proof, 8).is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProofOfWork {
    /// The nonce.
    pub nonce: u64,
}

/// Leading zero bits of a byte string read as a big-endian number.
fn leading_zero_bits(bytes: &[u8]) -> u32 {
    let mut n = 0;
    for &b in bytes {
        n += b.leading_zeros();
        if b != 0 {
            break;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zeros_span_bytes() {
        assert_eq!(leading_zero_bits(&[0, 0, 0b0001_0000, 0xff]), 19);
        assert_eq!(leading_zero_bits(&[0; 32]), 256);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
    }

    #[test]
    fn wrong_nonce_is_rejected() {
        let id = NodeId::from_bytes([42; 32]);
        let proof = id.mint_pow(12, 1 << 24).unwrap().unwrap();
        assert!(id.verify_pow(proof, 12).is_ok());
        let achieved = id.work(proof.nonce);
        // Minting returns the first good nonce, so every earlier one is rejected.
        for nonce in 0..proof.nonce.min(256) {
            assert!(id.verify_pow(ProofOfWork { nonce }, 12).is_err());
        }
        assert_eq!(
            id.verify_pow(proof, achieved + 1),
            Err(LatticeError::InsufficientWork {
                required: achieved + 1,
                achieved
            })
        );
        assert_eq!(
            id.mint_pow(257, 1),
            Err(LatticeError::DifficultyTooHigh(257))
        );
    }
}
