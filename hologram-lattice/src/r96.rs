//! R96 resonance classes: the 96-class partition of bytes, histograms, digests
//! and residues (SPEC §3).
//!
//! The histogram is the hot path; [`R96Histogram::update`] runs the fastest
//! kernel of [`crate::kernels`] this CPU has.

use crate::address::first_u64;
use crate::bytes32::bytes32_type;
use crate::class::CLASSES;
use crate::kernels::Backend;

/// The residue of `data`: the sum of its bytes' classes mod 96. A
/// homomorphism from concatenation to (Z/96, +).
pub fn residue(data: &[u8]) -> u8 {
    R96Histogram::of(data).residue()
}

/// Counts of the 96 classes over a byte region (`u64` counters).
///
/// Histograms of disjoint regions add with [`R96Histogram::merge`], so a large
/// region may be counted in pieces, in any order, on any thread.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct R96Histogram {
    #[serde(with = "counts_serde")]
    counts: [u64; CLASSES],
}

impl Default for R96Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for R96Histogram {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map()
            .entries(self.counts.iter().enumerate().filter(|(_, &n)| n != 0))
            .finish()
    }
}

impl R96Histogram {
    /// An empty histogram.
    pub const fn new() -> Self {
        Self {
            counts: [0; CLASSES],
        }
    }

    /// The histogram of `data`.
    pub fn of(data: &[u8]) -> Self {
        let mut h = Self::new();
        h.update(data);
        h
    }

    /// Adds the bytes of `data` (streaming: call it once per piece).
    pub fn update(&mut self, data: &[u8]) {
        Backend::best().r96_histogram(data, &mut self.counts);
    }

    /// Adds another histogram bin-wise (the histogram of the concatenation).
    pub fn merge(&mut self, other: &R96Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    /// The 96 counters, class 0 first.
    pub const fn counts(&self) -> &[u64; CLASSES] {
        &self.counts
    }

    /// Builds a histogram from its 96 counters.
    pub const fn from_counts(counts: [u64; CLASSES]) -> Self {
        Self { counts }
    }

    /// The number of bytes counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |s, &n| s.wrapping_add(n))
    }

    /// The residue: `sum(class(b)) mod 96` over the counted bytes.
    pub fn residue(&self) -> u8 {
        let sum = self
            .counts
            .iter()
            .enumerate()
            .fold(0u64, |s, (c, &n)| (s + (n % 96) * c as u64) % 96);
        sum as u8
    }

    /// The R96 digest of the counted bytes.
    pub fn digest(&self) -> R96Digest {
        let mut bytes = [0u8; CLASSES * 8];
        for (chunk, n) in bytes.chunks_exact_mut(8).zip(self.counts.iter()) {
            chunk.copy_from_slice(&n.to_le_bytes());
        }
        static CONTEXT: crate::DeriveContext = crate::DeriveContext::new(R96_DIGEST_CONTEXT);
        let hash = CONTEXT.hasher().update(&bytes).finalize();
        R96Digest(*hash.as_bytes())
    }
}

/// The key-derivation context of the R96 digest.
pub const R96_DIGEST_CONTEXT: &str = "hologram r96-digest v1";

/// BLAKE3-derive("hologram r96-digest v1", the 96 counters as `u64` LE): a
/// semantic fingerprint of a byte region that ignores byte order.
///
/// It is not an integrity check (permuting the bytes keeps it); integrity comes
/// from [`crate::Address`].
///
/// ```
/// use hologram_lattice::R96Digest;
/// let d = R96Digest::of(b"HELLO WORLD");
/// assert_eq!(d, R96Digest::of(b"WORLD HELLO"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct R96Digest([u8; 32]);

bytes32_type!(R96Digest);

impl R96Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        R96Histogram::of(data).digest()
    }

    /// The first 8 bytes as a little-endian `u64` (used for shard placement).
    pub fn as_u64(&self) -> u64 {
        first_u64(&self.0)
    }
}

/// Serde for `[u64; 96]` (serde's derives stop at 32 elements): a tuple of 96.
mod counts_serde {
    use super::CLASSES;
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;

    pub fn serialize<S: serde::Serializer>(c: &[u64; CLASSES], s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(CLASSES)?;
        for n in c {
            t.serialize_element(n)?;
        }
        t.end()
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u64; CLASSES], D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = [u64; CLASSES];
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{CLASSES} counters")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = [0u64; CLASSES];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        d.deserialize_tuple(CLASSES, V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::class;

    #[test]
    fn class_vectors() {
        let v = [
            (0x00, 0),
            (0x01, 0),
            (0x02, 1),
            (0x0F, 7),
            (0x10, 8),
            (0x20, 16),
            (0x30, 0),
            (0x2A, 21),
            (0x40, 24),
            (0x48, 28),
            (0x80, 48),
            (0xC0, 72),
            (0xCE, 79),
            (0xEE, 95),
            (0xFF, 79),
        ];
        for (b, c) in v {
            assert_eq!(class(b), c, "class({b:#04x})");
        }
    }

    #[test]
    fn classes_partition_bytes_as_the_unity_pair_says() {
        let mut sizes = [0u32; CLASSES];
        for b in 0..=255u8 {
            sizes[class(b) as usize] += 1;
        }
        assert_eq!(sizes.iter().filter(|&&n| n == 4).count(), 32);
        assert_eq!(sizes.iter().filter(|&&n| n == 2).count(), 64);
    }

    #[test]
    fn hello_world_vectors() {
        let h = R96Histogram::of(b"HELLO WORLD");
        let mut expect = [0u64; CLASSES];
        for (c, n) in [
            (16, 1),
            (26, 2),
            (28, 1),
            (30, 3),
            (31, 2),
            (33, 1),
            (35, 1),
        ] {
            expect[c] = n;
        }
        assert_eq!(h.counts(), &expect);
        assert_eq!(
            h.digest().to_string(),
            "85fef195227443ef4fa583e6ceadefa5c824a7049edc8ac6a9bfb63806ff848a"
        );
        assert_eq!(residue(b"HELLO WORLD"), 28);
        assert_eq!(h.digest().as_u64(), 0xef43_7422_95f1_fe85);
    }

    #[test]
    fn histogram_serde_round_trips() {
        let h = R96Histogram::of(b"some bytes");
        let bin = postcard::to_allocvec(&h).unwrap();
        assert_eq!(postcard::from_bytes::<R96Histogram>(&bin).unwrap(), h);
        assert!(postcard::from_bytes::<R96Histogram>(&bin[..bin.len() - 1]).is_err());
    }
}
