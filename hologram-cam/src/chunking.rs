//! Content-defined chunking (a FastCDC-style gear hash), so that an edit
//! near the start of a large blob does not shift every later chunk.

use std::sync::OnceLock;

/// Key-derivation context of the gear table.
pub const GEAR_CONTEXT: &str = "hologram cdc-gear v1";

/// Chunk size bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkParams {
    /// No cut before this many bytes (except at the end of the data).
    pub min: usize,
    /// The size cuts aim at (a power of two).
    pub avg: usize,
    /// Always cut at this many bytes.
    pub max: usize,
}

impl Default for ChunkParams {
    /// 16 KiB / 64 KiB / 256 KiB.
    fn default() -> Self {
        Self {
            min: 16 << 10,
            avg: 64 << 10,
            max: 256 << 10,
        }
    }
}

impl ChunkParams {
    /// Bounds made consistent: `1 ≤ min ≤ avg ≤ max`, `avg` a power of two.
    fn normalized(self) -> Self {
        let avg = self.avg.max(2).next_power_of_two();
        let min = self.min.clamp(1, avg);
        let max = self.max.max(avg);
        Self { min, avg, max }
    }
}

/// The gear table: 256 pseudo-random words, the same on every node.
fn gear() -> &'static [u64; 256] {
    static GEAR: OnceLock<[u64; 256]> = OnceLock::new();
    GEAR.get_or_init(|| {
        let mut bytes = [0u8; 256 * 8];
        blake3::Hasher::new_derive_key(GEAR_CONTEXT)
            .finalize_xof()
            .fill(&mut bytes);
        let mut table = [0u64; 256];
        for (word, chunk) in table.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *word = u64::from_le_bytes(b);
        }
        table
    })
}

/// The length of the first chunk of `data`.
///
/// The gear hash `h = (h << 1) + GEAR[byte]` depends on the last 64 bytes
/// only. Before `avg` bytes a cut needs two more zero bits than after it
/// (normalized chunking), which narrows the spread of chunk sizes.
fn first_cut(data: &[u8], p: ChunkParams) -> usize {
    let n = data.len();
    if n <= p.min {
        return n;
    }
    let bits = p.avg.trailing_zeros();
    let mask = |b: u32| -> u64 { (u64::MAX >> (64 - b.min(63))) << (64 - b.min(63)) };
    let (hard, easy) = (mask(bits + 2), mask(bits.saturating_sub(2).max(1)));
    let g = gear();
    let mut h = 0u64;
    let normal = p.avg.min(n);
    let limit = p.max.min(n);
    for (j, &b) in data.iter().enumerate().take(normal).skip(p.min) {
        h = (h << 1).wrapping_add(g[usize::from(b)]);
        if h & hard == 0 {
            return j + 1;
        }
    }
    for (j, &b) in data.iter().enumerate().take(limit).skip(normal) {
        h = (h << 1).wrapping_add(g[usize::from(b)]);
        if h & easy == 0 {
            return j + 1;
        }
    }
    limit
}

/// Splits `data` into content-defined chunks: the chunks' lengths, in
/// order, summing to `data.len()`.
///
/// ```
/// use hologram_cam::{chunk_lengths, ChunkParams};
/// let data = vec![7u8; 1 << 20];
/// let lengths = chunk_lengths(&data, ChunkParams::default());
/// assert_eq!(lengths.iter().sum::<usize>(), data.len());
/// ```
pub fn chunk_lengths(data: &[u8], params: ChunkParams) -> Vec<usize> {
    let p = params.normalized();
    let mut lengths = Vec::with_capacity(data.len() / p.avg + 1);
    let mut rest = data;
    while !rest.is_empty() {
        let cut = first_cut(rest, p);
        lengths.push(cut);
        rest = &rest[cut..];
    }
    lengths
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_lattice::Address;
    use std::collections::HashSet;

    fn random(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    fn chunk_addresses(data: &[u8]) -> Vec<Address> {
        let mut at = 0;
        chunk_lengths(data, ChunkParams::default())
            .into_iter()
            .map(|len| {
                let a = Address::of(&data[at..at + len]);
                at += len;
                a
            })
            .collect()
    }

    #[test]
    fn chunks_respect_their_bounds() {
        let p = ChunkParams::default();
        let data = random(8 << 20, 3);
        let lengths = chunk_lengths(&data, p);
        assert_eq!(lengths.iter().sum::<usize>(), data.len());
        let (last, body) = lengths.split_last().unwrap();
        assert!(body.iter().all(|&l| l >= p.min && l <= p.max));
        assert!(*last <= p.max);
        let mean = data.len() / lengths.len();
        assert!(mean > p.avg / 2 && mean < p.avg * 2, "mean chunk {mean}");
        assert!(chunk_lengths(&[], p).is_empty());
    }

    #[test]
    fn an_insertion_near_the_start_keeps_the_rest_deduplicated() {
        let data = random(4 << 20, 11);
        let mut edited = data[..1000].to_vec();
        edited.extend_from_slice(b"an insertion of a few dozen bytes near the start");
        edited.extend_from_slice(&data[1000..]);
        let before: HashSet<Address> = chunk_addresses(&data).into_iter().collect();
        let after = chunk_addresses(&edited);
        let shared = after.iter().filter(|a| before.contains(a)).count();
        assert!(
            shared + 2 >= after.len(),
            "{shared} of {} chunks shared",
            after.len()
        );
    }
}
