//! Receipts and their 72 canonical bytes (SPEC §6).

use crate::{Budget, ReceiptBuilder, ReceiptError};
use hologram_lattice::{Address, Phase, R96Digest, SchedulePoint};
use serde::{Deserialize, Serialize};

/// The length of a receipt's canonical bytes.
pub const CANONICAL_LEN: usize = 72;

/// What a node computes for a piece of data or a piece of work: a content
/// address, an R96 digest, a C768 schedule point, a round-trip flag and a
/// budget. Integer-only; ordered, hashable and comparable.
///
/// Phase and budget are typed ([`Phase`] is below 768, [`Budget`] below 96),
/// so a `Receipt` value is always well-formed: the canonical decoder and serde
/// both reject out-of-range fields, each with its own error.
///
/// ```
/// use hologram_receipt::Receipt;
/// let r = Receipt::from_bytes(b"HELLO WORLD");
/// assert!(r.is_lawful(Some(b"HELLO WORLD")));
/// assert!(r.verify(Some(b"HELLO WORLd")).is_err());
/// let bytes = r.to_canonical_bytes();
/// assert_eq!(Receipt::from_canonical_bytes(&bytes), Ok(r));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Receipt {
    /// The BLAKE3 address of the bytes (or of the composition, see [`Receipt::compose_all`]).
    pub content: Address,
    /// The R96 digest: a semantic, order-blind fingerprint (used for sharding).
    pub r96: R96Digest,
    /// Completed C768 periods.
    pub c768_cycle: u32,
    /// Phase within the current C768 period.
    pub c768_phase: Phase,
    /// Whether the work round-tripped (decoded back to what was encoded).
    pub phi_roundtrip: bool,
    /// The budget the work claims to have spent.
    pub budget: Budget,
}

impl Receipt {
    /// The receipt of `payload`: its address and R96 digest (computed in one
    /// pass), cycle 0, phase 0, phi true, budget 0. Honest nodes compute
    /// identical receipts for identical bytes.
    pub fn from_bytes(payload: &[u8]) -> Self {
        let mut builder = ReceiptBuilder::new();
        builder.update(payload);
        builder.finish()
    }

    /// The receipt's schedule point (cycle and phase).
    pub const fn schedule(&self) -> SchedulePoint {
        SchedulePoint {
            cycle: self.c768_cycle,
            phase: self.c768_phase,
        }
    }

    /// The 72 canonical bytes: `content(32) ‖ r96(32) ‖ cycle u32 LE ‖ phase
    /// u16 LE ‖ phi u8 (0/1) ‖ budget u8`. Hashes and signatures cover these.
    pub fn to_canonical_bytes(&self) -> [u8; CANONICAL_LEN] {
        let mut out = [0u8; CANONICAL_LEN];
        out[..32].copy_from_slice(self.content.as_bytes());
        out[32..64].copy_from_slice(self.r96.as_bytes());
        out[64..68].copy_from_slice(&self.c768_cycle.to_le_bytes());
        out[68..70].copy_from_slice(&self.c768_phase.get().to_le_bytes());
        out[70] = u8::from(self.phi_roundtrip);
        out[71] = self.budget.get();
        out
    }

    /// Decodes canonical bytes, rejecting a wrong length
    /// ([`ReceiptError::WrongLength`]), a phase of 768 or more
    /// ([`ReceiptError::PhaseOutOfRange`]), a budget of 96 or more
    /// ([`ReceiptError::BudgetOutOfRange`]) and a phi byte other than 0 or 1
    /// ([`ReceiptError::PhiNotBoolean`]).
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let b: &[u8; CANONICAL_LEN] = bytes.try_into().map_err(|_| ReceiptError::WrongLength {
            what: "receipt",
            expected: CANONICAL_LEN,
            got: bytes.len(),
        })?;
        let (content, rest) = split32(b);
        let (r96, tail) = split32(rest);
        // tail is exactly 8 bytes: cycle(4) phase(2) phi(1) budget(1).
        let [c0, c1, c2, c3, p0, p1, phi, budget] =
            <[u8; 8]>::try_from(tail).map_err(|_| ReceiptError::WrongLength {
                what: "receipt",
                expected: CANONICAL_LEN,
                got: bytes.len(),
            })?;
        let phase = u16::from_le_bytes([p0, p1]);
        Ok(Self {
            content: Address::from_bytes(content),
            r96: R96Digest::from_bytes(r96),
            c768_cycle: u32::from_le_bytes([c0, c1, c2, c3]),
            c768_phase: Phase::new(phase).map_err(|_| ReceiptError::PhaseOutOfRange(phase))?,
            phi_roundtrip: match phi {
                0 => false,
                1 => true,
                other => return Err(ReceiptError::PhiNotBoolean(other)),
            },
            budget: Budget::new(budget)?,
        })
    }

    /// Checks the receipt: well-formed, and, when `data` is given, that the
    /// content address and R96 digest recomputed from it are equal.
    ///
    /// Well-formedness (phase below 768, budget below 96) is a type invariant
    /// checked wherever a receipt is built or decoded, so without data this
    /// always succeeds. With data, a different content address is
    /// [`ReceiptError::ContentMismatch`] and a different R96 digest is
    /// [`ReceiptError::R96Mismatch`]. The address is what binds the exact
    /// bytes: the digest alone would accept a permutation of them.
    pub fn verify(&self, data: Option<&[u8]>) -> Result<(), ReceiptError> {
        let Some(data) = data else { return Ok(()) };
        let computed = Receipt::from_bytes(data);
        if computed.content != self.content {
            return Err(ReceiptError::ContentMismatch);
        }
        if computed.r96 != self.r96 {
            return Err(ReceiptError::R96Mismatch);
        }
        Ok(())
    }

    /// `verify(data) && crush(budget) && phi_roundtrip`: the receipt checks
    /// out, spent nothing and round-tripped. Kept apart from [`Receipt::verify`].
    pub fn is_lawful(&self, data: Option<&[u8]>) -> bool {
        self.verify(data).is_ok() && self.budget.crush() && self.phi_roundtrip
    }
}

/// Splits off the first 32 bytes of a slice known to hold at least 32.
fn split32(bytes: &[u8]) -> ([u8; 32], &[u8]) {
    let (head, rest) = bytes.split_at(32.min(bytes.len()));
    let mut out = [0u8; 32];
    out.copy_from_slice(head);
    (out, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_world_receipt_matches_the_spec_vectors() {
        let r = Receipt::from_bytes(b"HELLO WORLD");
        assert_eq!(
            r.content.to_string(),
            "d81405d34c9152ad4bd607c0fb362f26437bc9f2284958eaddd30b45504e96d2"
        );
        assert_eq!(
            r.r96.to_string(),
            "85fef195227443ef4fa583e6ceadefa5c824a7049edc8ac6a9bfb63806ff848a"
        );
        assert_eq!((r.c768_cycle, r.c768_phase.get()), (0, 0));
        assert!(r.phi_roundtrip && r.budget.crush());
        let bytes = r.to_canonical_bytes();
        assert_eq!(&bytes[..32], r.content.as_bytes());
        assert_eq!(&bytes[32..64], r.r96.as_bytes());
        assert_eq!(&bytes[64..], &[0, 0, 0, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn canonical_layout_is_little_endian() {
        let r = Receipt {
            content: Address::from_bytes([1; 32]),
            r96: R96Digest::from_bytes([2; 32]),
            c768_cycle: 0x0403_0201,
            c768_phase: Phase::new(0x02ff).unwrap(),
            phi_roundtrip: false,
            budget: Budget::new(95).unwrap(),
        };
        let bytes = r.to_canonical_bytes();
        assert_eq!(&bytes[64..], &[1, 2, 3, 4, 0xff, 0x02, 0, 95]);
        assert_eq!(Receipt::from_canonical_bytes(&bytes), Ok(r));
    }

    #[test]
    fn decoder_errors_are_distinct() {
        let good = Receipt::from_bytes(b"x").to_canonical_bytes();
        for len in [0, 71, 73] {
            let mut v = good.to_vec();
            v.resize(len, 0);
            assert_eq!(
                Receipt::from_canonical_bytes(&v),
                Err(ReceiptError::WrongLength {
                    what: "receipt",
                    expected: 72,
                    got: len
                })
            );
        }
        let mut bad = good;
        bad[68..70].copy_from_slice(&768u16.to_le_bytes());
        assert_eq!(
            Receipt::from_canonical_bytes(&bad),
            Err(ReceiptError::PhaseOutOfRange(768))
        );
        let mut bad = good;
        bad[71] = 96;
        assert_eq!(
            Receipt::from_canonical_bytes(&bad),
            Err(ReceiptError::BudgetOutOfRange(96))
        );
        let mut bad = good;
        bad[70] = 2;
        assert_eq!(
            Receipt::from_canonical_bytes(&bad),
            Err(ReceiptError::PhiNotBoolean(2))
        );
    }

    #[test]
    fn verify_and_lawfulness_are_kept_apart() {
        let data = b"HELLO WORLD";
        let mut r = Receipt::from_bytes(data);
        assert_eq!(
            r.verify(Some(b"DLROW OLLEH")),
            Err(ReceiptError::ContentMismatch)
        );
        r.budget = Budget::ONE;
        assert!(r.verify(Some(data)).is_ok());
        assert!(!r.is_lawful(Some(data)));
        r.budget = Budget::ZERO;
        r.phi_roundtrip = false;
        assert!(!r.is_lawful(None));
        r.phi_roundtrip = true;
        assert!(r.is_lawful(None));
        r.r96 = R96Digest::of(b"other");
        assert_eq!(r.verify(Some(data)), Err(ReceiptError::R96Mismatch));
    }
}
