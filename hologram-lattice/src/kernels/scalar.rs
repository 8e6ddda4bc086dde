//! The scalar references: obviously correct, and what every fast path is
//! tested against.

use crate::class::CLASS_TABLE;
use crate::columns::Neighbor;
use crate::Coord;

/// Adds the class counts of `data` to `counts`, one byte at a time.
pub(crate) fn r96_histogram(data: &[u8], counts: &mut [u64; 96]) {
    for &b in data {
        counts[usize::from(CLASS_TABLE[usize::from(b)])] += 1;
    }
}

/// Adds the class counts of `data` to `counts` through four interleaved
/// 256-bin byte tables (the portable fast path: independent increments
/// instead of one dependent chain), folded into classes at the end.
pub(crate) fn r96_histogram_interleaved(data: &[u8], counts: &mut [u64; 96]) {
    // u32 bins: each table takes at most 2 bytes of every 8, so a chunk of
    // 2^31 bytes cannot overflow one.
    for chunk in data.chunks(1 << 31) {
        let mut tables = [[0u32; 256]; 4];
        let mut words = chunk.chunks_exact(8);
        for w in &mut words {
            for (i, &b) in w.iter().enumerate() {
                tables[i % 4][usize::from(b)] += 1;
            }
        }
        for (b, class) in CLASS_TABLE.iter().enumerate() {
            let n: u64 = tables.iter().map(|t| u64::from(t[b])).sum();
            counts[usize::from(*class)] += n;
        }
        r96_histogram(words.remainder(), counts);
    }
}

/// `out[i] = target.distance(site i)`, with [`Coord::distance`].
pub(crate) fn distances(target: Coord, pages: &[u8], bytes: &[u8], out: &mut [u16]) {
    for ((o, &p), &b) in out.iter_mut().zip(pages).zip(bytes) {
        *o = target.distance(Coord::new(p.into(), b.into()));
    }
}

/// Every distance, sorted by (distance, index), truncated to `k`.
pub(crate) fn nearest(target: Coord, pages: &[u8], bytes: &[u8], k: usize) -> Vec<Neighbor> {
    let mut all: Vec<Neighbor> = pages
        .iter()
        .zip(bytes)
        .enumerate()
        .map(|(index, (&p, &b))| Neighbor {
            distance: target.distance(Coord::new(p.into(), b.into())),
            index,
        })
        .collect();
    all.sort_unstable();
    all.truncate(k);
    all
}
