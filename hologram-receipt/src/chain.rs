//! Receipt chains: the replicated log of a state machine, summarised by a
//! hash chain (SPEC §6).

use crate::{Receipt, ReceiptError};
use serde::{Deserialize, Serialize};

/// Key-derivation context of the chain head (fixed by SPEC §6).
pub const CHAIN_CONTEXT: &str = "hologram receipt-chain v1";

/// The head of a receipt chain: `BLAKE3-derive("hologram receipt-chain v1",
/// previous head ‖ receipt canonical bytes)`, all zero at genesis.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct ChainHead([u8; 32]);

impl ChainHead {
    /// The genesis head: 32 zero bytes.
    pub const GENESIS: ChainHead = ChainHead([0; 32]);

    /// Wraps 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The head after appending `receipt`.
    pub fn next(&self, receipt: &Receipt) -> ChainHead {
        static CONTEXT: hologram_lattice::DeriveContext =
            hologram_lattice::DeriveContext::new(CHAIN_CONTEXT);
        ChainHead(
            *CONTEXT
                .hasher()
                .update(&self.0)
                .update(&receipt.to_canonical_bytes())
                .finalize()
                .as_bytes(),
        )
    }
}

impl core::fmt::Display for ChainHead {
    /// 64 lowercase hex digits.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&blake3::Hash::from_bytes(self.0).to_hex())
    }
}

impl core::fmt::Debug for ChainHead {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ChainHead({self})")
    }
}

/// How one replica's chain compares with another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplicaComparison {
    /// Same length and head: the replicas agree.
    Agree,
    /// Same length, different heads: the replicas diverged.
    Diverged,
    /// This replica has `by` fewer receipts. Whether it is a prefix of the
    /// other needs the missing receipts ([`ReceiptChain::verify_extension`]).
    Behind {
        /// How many receipts it lacks.
        by: u64,
    },
    /// This replica has `by` more receipts.
    Ahead {
        /// How many receipts the other lacks.
        by: u64,
    },
}

/// A hash chain over a sequence of receipts: its length and head. Two
/// replicas agree iff length and head are equal (the derived `PartialEq`).
///
/// ```
/// use hologram_receipt::{ReceiptChain, Receipt, ReplicaComparison};
/// let log = [Receipt::from_bytes(b"set x 1"), Receipt::from_bytes(b"set y 2")];
/// let mut a = ReceiptChain::new();
/// for r in &log { a.extend(r); }
/// let b = ReceiptChain::from_receipts(&log);
/// assert_eq!(a.compare(&b), ReplicaComparison::Agree);
/// assert!(ReceiptChain::verify(&log, a.head()).is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ReceiptChain {
    head: ChainHead,
    len: u64,
}

impl ReceiptChain {
    /// The empty chain: genesis head, length 0.
    pub const fn new() -> Self {
        Self {
            head: ChainHead::GENESIS,
            len: 0,
        }
    }

    /// The chain of `len` receipts whose head is `head`, as recorded
    /// elsewhere (a replica restored from a snapshot continues the chain
    /// it was taken at). Nothing is checked: the caller vouches for the
    /// pair (a snapshot's address is certified by consensus).
    pub const fn from_parts(head: ChainHead, len: u64) -> Self {
        Self { head, len }
    }

    /// The chain of `receipts`, in order.
    pub fn from_receipts<'a>(receipts: impl IntoIterator<Item = &'a Receipt>) -> Self {
        let mut chain = Self::new();
        for r in receipts {
            chain.extend(r);
        }
        chain
    }

    /// Appends `receipt` and returns the new head.
    pub fn extend(&mut self, receipt: &Receipt) -> ChainHead {
        self.head = self.head.next(receipt);
        self.len = self.len.wrapping_add(1);
        self.head
    }

    /// The current head.
    pub const fn head(&self) -> ChainHead {
        self.head
    }

    /// The number of receipts chained.
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// Whether no receipt has been chained.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks that `receipts`, chained from genesis, lead to `expected`
    /// ([`ReceiptError::HeadMismatch`] otherwise).
    pub fn verify(receipts: &[Receipt], expected: ChainHead) -> Result<(), ReceiptError> {
        Self::new().verify_extension(receipts, expected)
    }

    /// Checks that appending `receipts` to this chain leads to `expected`:
    /// how a lagging replica checks the receipts it catches up with.
    pub fn verify_extension(
        &self,
        receipts: &[Receipt],
        expected: ChainHead,
    ) -> Result<(), ReceiptError> {
        let mut chain = *self;
        for r in receipts {
            chain.extend(r);
        }
        if chain.head == expected {
            Ok(())
        } else {
            Err(ReceiptError::HeadMismatch {
                expected,
                computed: chain.head,
                len: chain.len,
            })
        }
    }

    /// Compares this replica's chain with `other`'s.
    pub fn compare(&self, other: &ReceiptChain) -> ReplicaComparison {
        use core::cmp::Ordering;
        match self.len.cmp(&other.len) {
            Ordering::Equal if self.head == other.head => ReplicaComparison::Agree,
            Ordering::Equal => ReplicaComparison::Diverged,
            Ordering::Less => ReplicaComparison::Behind {
                by: other.len - self.len,
            },
            Ordering::Greater => ReplicaComparison::Ahead {
                by: self.len - other.len,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_follows_the_spec() {
        let r = Receipt::from_bytes(b"HELLO WORLD");
        let mut chain = ReceiptChain::new();
        assert_eq!(chain.head(), ChainHead::GENESIS);
        let head = chain.extend(&r);
        let expected = blake3::Hasher::new_derive_key("hologram receipt-chain v1")
            .update(&[0; 32])
            .update(&r.to_canonical_bytes())
            .finalize();
        assert_eq!(head.as_bytes(), expected.as_bytes());
        assert_eq!(head.to_string(), expected.to_hex().as_str());
        assert_eq!(chain.len(), 1);
    }

    #[test]
    fn replicas_compare_by_length_and_head() {
        let rs: Vec<Receipt> = (0..4u8).map(|i| Receipt::from_bytes(&[i])).collect();
        let full = ReceiptChain::from_receipts(&rs);
        let prefix = ReceiptChain::from_receipts(&rs[..2]);
        assert_eq!(prefix.compare(&full), ReplicaComparison::Behind { by: 2 });
        assert_eq!(full.compare(&prefix), ReplicaComparison::Ahead { by: 2 });
        assert_eq!(prefix.verify_extension(&rs[2..], full.head()), Ok(()));
        let mut swapped = rs.clone();
        swapped.swap(0, 1);
        let other = ReceiptChain::from_receipts(&swapped);
        assert_eq!(other.compare(&full), ReplicaComparison::Diverged);
        assert_eq!(
            ReceiptChain::verify(&swapped, full.head()),
            Err(ReceiptError::HeadMismatch {
                expected: full.head(),
                computed: other.head(),
                len: 4
            })
        );
        assert!(ReceiptChain::new().is_empty());
    }
}
