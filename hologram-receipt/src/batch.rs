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
//! must decode to a point, not of small order, in its canonical encoding.
//! What remains is a signature whose key or `R` is a point with a torsion
//! component but not of small order; honest keys and signatures never have
//! one, only the holder of the secret key can build one, and rejecting it
//! would cost a full scalar multiplication per point. Where every node must
//! reach the same verdict on such adversarial signatures regardless of what
//! they are batched with, use [`verify_signature`](crate::verify_signature).

use crate::{signing::verifying_key, NodeId, Purpose, ReceiptError, Signature};
use ed25519_dalek::VerifyingKey;

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
        let mut keys = Vec::with_capacity(self.entries.len());
        for (i, e) in self.entries.iter().enumerate() {
            match verifying_key(&e.signer) {
                Ok(key) if r_is_strict(e.signature.r_bytes()) => keys.push(key),
                _ => return Some((i, e.signer)),
            }
        }
        let messages: Vec<&[u8]> = self.entries.iter().map(|e| e.message.as_slice()).collect();
        let signatures: Vec<ed25519_dalek::Signature> = self
            .entries
            .iter()
            .map(|e| e.signature.to_dalek())
            .collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            return None;
        }
        // Slow path: find which one is bad.
        let mut bad = self
            .entries
            .iter()
            .zip(keys.iter())
            .enumerate()
            .filter(|(_, (e, key))| {
                key.verify_strict(&e.message, &e.signature.to_dalek())
                    .is_err()
            })
            .map(|(i, (e, _))| (i, e.signer));
        // If the batch failed but every entry verifies alone, fail closed and
        // blame the first entry: never accept what the batch rejected.
        bad.next()
            .or_else(|| self.entries.first().map(|e| (0, e.signer)))
    }
}

/// Whether a signature's `R` passes `verify_strict`'s point checks: it decodes,
/// is in canonical encoding, and is not of small order.
fn r_is_strict(r: &[u8; 32]) -> bool {
    match VerifyingKey::from_bytes(r) {
        Ok(point) => !point.is_weak() && point.to_edwards().compress().to_bytes() == *r,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyPair;

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
    fn names_the_first_bad_entry() {
        let (keys, batch) = signed_batch(6);
        assert_eq!(batch.verify(), Ok(()));
        assert_eq!(SignatureBatch::new().verify(), Ok(()));
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
    fn small_order_and_non_canonical_r_are_rejected_up_front() {
        // The identity point has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(!r_is_strict(&identity));
        // y = p + 1 is a non-canonical encoding of the identity (y = 1).
        let mut non_canonical = [0xff; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        assert!(!r_is_strict(&non_canonical));
        let sig = KeyPair::from_seed([5; 32]).sign(Purpose::Vote, b"");
        assert!(r_is_strict(sig.r_bytes()));
    }
}
