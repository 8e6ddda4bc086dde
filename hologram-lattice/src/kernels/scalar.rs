//! The scalar references: obviously correct, and what every fast path is
//! tested against.

use crate::columns::Neighbor;
use crate::r96::CLASS_TABLE;
use crate::Coord;

/// Adds the class counts of `data` to `counts`, one byte at a time.
pub(crate) fn r96_histogram(data: &[u8], counts: &mut [u64; 96]) {
    for &b in data {
        counts[usize::from(CLASS_TABLE[usize::from(b)])] += 1;
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
