//! Batch verification of many signatures, with a specific verdict on failure.
//!
//! [`SignatureBatch::verify`] checks all entries in one
//! `ed25519_dalek::verify_batch` call (one multiscalar multiplication) and,
//! only when that fails, re-checks each entry with `verify_strict` to name the
//! first bad one.
//!
//! # Strictness
//!
//! `verify_batch` is not `verify_strict`: it accepts small-order keys and `R`
//! points and non-canonical encodings of `R`, and it checks a random linear
//! combination, so a signature whose key or `R` carries a small-order
//! (torsion) component can pass in one batch and fail in another. Before
//! batching, every entry is therefore checked the way `verify_strict` would:
//! the key must be a curve point of large order ([`verifying_key`]), and `R`
//! must be canonically encoded and not one of the 8 points of small order (a
//! byte comparison, no decompression).
//! What remains is a signature whose key or `R` is a point with a torsion
//! component but not of small order; honest keys and signatures never have
//! one, only the holder of the secret key can build one, and rejecting it
//! would cost a full scalar multiplication per point. Where every node must
//! reach the same verdict on such adversarial signatures regardless of what
//! they are batched with, use [`verify_signature`](crate::verify_signature).
//!
//! Entries that [`verify_signature`](crate::verify_signature) found valid
//! before in this process (its cache) are left out of the batch; what the
//! batch accepts is never added to that cache.

use crate::signing::{verified_before, verifying_key};
use crate::{Purpose, ReceiptError, Signature};
use hologram_lattice::NodeId;

/// One signature to check.
#[derive(Debug, Clone)]
struct Entry {
    signer: NodeId,
    message: [u8; 32],
    signature: Signature,
}

/// Signatures collected to be verified together.
///
/// ```
/// use hologram_receipt::{KeyPair, Purpose, ReceiptError, SignatureBatch};
/// let keys: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed([i; 32])).collect();
/// let mut batch = SignatureBatch::new();
/// for k in &keys {
///     batch.push(k.node_id(), Purpose::Vote, b"block", k.sign(Purpose::Vote, b"block"));
/// }
/// assert!(batch.verify().is_ok());
/// batch.push(keys[0].node_id(), Purpose::Vote, b"other", keys[0].sign(Purpose::Vote, b"block"));
/// assert!(matches!(batch.verify(), Err(ReceiptError::BadBatchEntry { index: 4, .. })));
/// ```
#[derive(Debug, Clone, Default)]
pub struct SignatureBatch {
    entries: Vec<Entry>,
}

impl SignatureBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `n` signatures.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
        }
    }

    /// Adds `signer`'s `signature` of `canonical` bytes for `purpose`.
    pub fn push(
        &mut self,
        signer: NodeId,
        purpose: Purpose,
        canonical: &[u8],
        signature: Signature,
    ) -> &mut Self {
        self.entries.push(Entry {
            signer,
            message: purpose.message(canonical),
            signature,
        });
        self
    }

    /// The number of signatures in the batch.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Verifies every signature. On failure the error is
    /// [`ReceiptError::BadBatchEntry`] naming the first bad entry in
    /// insertion order. An empty batch verifies.
    pub fn verify(&self) -> Result<(), ReceiptError> {
        match self.first_invalid() {
            None => Ok(()),
            Some((index, signer)) => Err(ReceiptError::BadBatchEntry { index, signer }),
        }
    }

    /// The index and signer of the first entry that does not verify
    /// strictly, or `None` when all do.
    pub(crate) fn first_invalid(&self) -> Option<(usize, NodeId)> {
        // Signatures that verified strictly before in this process are
        // valid (`verify_signature`'s cache): each one's term of the batch
        // equation is zero, so leaving them out changes nothing of the
        // verdict on the others. The batch's own verdict is never cached:
        // it is not `verify_strict`'s (module docs).
        let unknown: Vec<(usize, &Entry)> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                !verified_before(&(*e.signer.as_bytes(), e.message, e.signature.to_bytes()))
            })
            .collect();
        if unknown.is_empty() {
            return None;
        }
        let mut keys = Vec::with_capacity(unknown.len());
        for (i, e) in &unknown {
            match verifying_key(&e.signer) {
                Ok(key) if r_is_strict(e.signature.r_bytes()) => keys.push(key),
                _ => return Some((*i, e.signer)),
            }
        }
        let messages: Vec<&[u8]> = unknown.iter().map(|(_, e)| e.message.as_slice()).collect();
        let signatures: Vec<ed25519_dalek::Signature> = unknown
            .iter()
            .map(|(_, e)| e.signature.to_dalek())
            .collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            return None;
        }
        // Slow path: find which one is bad.
        let mut bad = unknown
            .iter()
            .zip(keys.iter())
            .filter(|((_, e), key)| {
                key.verify_strict(&e.message, &e.signature.to_dalek())
                    .is_err()
            })
            .map(|((i, e), _)| (*i, e.signer));
        // If the batch failed but every entry verifies alone, fail closed and
        // blame the first entry: never accept what the batch rejected.
        bad.next()
            .or_else(|| unknown.first().map(|(i, e)| (*i, e.signer)))
    }
}

/// Whether a signature's `R` passes `verify_strict`'s point checks without
/// decompressing it: its `y` coordinate is canonical (below p) and it is not
/// one of the 8 points of small order. Whether it decodes at all is left to
/// the batch, which fails (and falls back to `verify_strict`) if not.
fn r_is_strict(r: &[u8; 32]) -> bool {
    let mut y = *r;
    y[31] &= 0x7f; // the sign of x
    let canonical = y.iter().rev().lt(field_prime().iter().rev());
    canonical && !SMALL_ORDER_Y.contains(&y)
}

/// p = 2²⁵⁵ − 19, little-endian: the smallest non-canonical `y`.
const fn field_prime() -> [u8; 32] {
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
}

/// The `y` coordinates of the 8 points of small order (each with both signs
/// of `x`, where that gives a point): 1 (the identity), p − 1 (order 2), 0
/// (order 4) and the two `y` of the points of order 8. The list libsodium
/// uses to reject small-order points; its completeness is tested.
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    [0; 32],
    {
        let mut one = [0; 32];
        one[0] = 1;
        one
    },
    {
        let mut p_minus_one = field_prime();
        p_minus_one[0] = 0xec;
        p_minus_one
    },
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyPair;
    use ed25519_dalek::VerifyingKey;

    fn signed_batch(n: u8) -> (Vec<KeyPair>, SignatureBatch) {
        let keys: Vec<KeyPair> = (0..n).map(|i| KeyPair::from_seed([i + 1; 32])).collect();
        let mut batch = SignatureBatch::with_capacity(n as usize);
        for (i, k) in keys.iter().enumerate() {
            let msg = [i as u8; 8];
            batch.push(
                k.node_id(),
                Purpose::Commit,
                &msg,
                k.sign(Purpose::Commit, &msg),
            );
        }
        (keys, batch)
    }

    #[test]
    fn signatures_verified_before_are_left_out_and_the_verdict_is_unchanged() {
        let (keys, batch) = signed_batch(5);
        // Entries 1 and 3 verified strictly before (cached); the others not.
        for i in [1usize, 3] {
            let msg = [i as u8; 8];
            let e = &batch.entries[i];
            assert_eq!(
                crate::verify_signature(&e.signer, Purpose::Commit, &msg, &e.signature),
                Ok(())
            );
        }
        // A bad entry after, before or among cached ones keeps its index.
        each_bad_entry_is_named(&keys, &batch);
        // A batch of cached signatures only verifies; a cached signature
        // for another message does not carry over.
        let mut cached = SignatureBatch::new();
        cached.entries.push(batch.entries[1].clone());
        cached.entries.push(batch.entries[3].clone());
        assert_eq!(cached.verify(), Ok(()));
        cached.entries[1].message = batch.entries[1].message;
        assert!(cached.verify().is_err());
    }

    /// The batch verifies, and with any one entry's signature flipped,
    /// names that entry.
    fn each_bad_entry_is_named(keys: &[KeyPair], batch: &SignatureBatch) {
        assert_eq!(batch.verify(), Ok(()));
        for (bad, key) in keys.iter().enumerate() {
            let mut b = batch.clone();
            let mut bytes = b.entries[bad].signature.to_bytes();
            bytes[40] ^= 1;
            b.entries[bad].signature = Signature::from_bytes(bytes);
            assert_eq!(
                b.verify(),
                Err(ReceiptError::BadBatchEntry {
                    index: bad,
                    signer: key.node_id()
                })
            );
        }
    }

    #[test]
    fn names_the_first_bad_entry() {
        let (keys, batch) = signed_batch(6);
        assert_eq!(SignatureBatch::new().verify(), Ok(()));
        each_bad_entry_is_named(&keys, &batch);
    }

    #[test]
    fn the_small_order_list_is_exactly_the_8_small_order_points() {
        let mut points = Vec::new();
        for y in SMALL_ORDER_Y {
            for sign in [0u8, 0x80] {
                let mut enc = y;
                enc[31] |= sign;
                assert!(!r_is_strict(&enc));
                if let Ok(p) = VerifyingKey::from_bytes(&enc) {
                    assert!(p.is_weak(), "{enc:?} is not of small order");
                    let canonical = p.to_edwards().compress().to_bytes();
                    if !points.contains(&canonical) {
                        points.push(canonical);
                    }
                }
            }
        }
        // There are exactly 8 points of small order: all of them are listed.
        assert_eq!(points.len(), 8);
    }

    #[test]
    fn non_canonical_y_is_rejected_and_honest_r_accepted() {
        let mut y = field_prime(); // y = p
        assert!(!r_is_strict(&y));
        y[0] = 0xf0; // y = p + 3
        assert!(!r_is_strict(&y));
        y[31] = 0xff; // same y, x sign set
        assert!(!r_is_strict(&y));
        for seed in 0..32u8 {
            let sig = KeyPair::from_seed([seed; 32]).sign(Purpose::Vote, &[seed]);
            assert!(r_is_strict(sig.r_bytes()));
        }
    }
}
