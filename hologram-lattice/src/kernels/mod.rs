//! SIMD kernels for the hot paths, with run-time dispatch.
//!
//! Each kernel has a plain scalar reference ([`Backend::SCALAR`]), a portable
//! fast path ([`Backend::PORTABLE`]), an AVX2 path on x86_64 and a NEON path on
//! little-endian aarch64. [`Backend::best`] picks the fastest one this CPU
//! supports; a [`Backend`] can only be obtained for a path the CPU has, so
//! calling any of them is safe. Property tests check that every path equals
//! the reference on any input, length and alignment.
//!
//! | kernel | scalar | portable | AVX2 / NEON |
//! |---|---|---|---|
//! | R96 histogram | byte-at-a-time table lookup | four interleaved byte tables | classes by nibble shuffles, pair index by multiply-add, pair bins |
//! | batched distance | [`Coord::distance`] per site | branch-free loop | 32 (16) sites per step, distance bytes interleaved |
//! | k nearest | all distances, sorted | running top-k | block minimum against the top-k threshold |

mod pair_table;
mod scalar;
mod topk;

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2;
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
#[allow(unsafe_code)]
mod neon;

use crate::columns::{Neighbor, PeerColumns};
use crate::Coord;

/// A kernel implementation the running CPU supports.
///
/// The SIMD variants can only be obtained from [`Backend::best`] or
/// [`Backend::available`], which check the CPU first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backend {
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Scalar,
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    Neon,
}

impl Backend {
    /// The scalar references.
    pub const SCALAR: Backend = Backend { kind: Kind::Scalar };
    /// The portable fast paths (no SIMD instructions).
    pub const PORTABLE: Backend = Backend {
        kind: Kind::Portable,
    };

    /// The fastest backend this CPU supports.
    pub fn best() -> Backend {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Backend { kind: Kind::Avx2 };
        }
        #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
        if std::arch::is_aarch64_feature_detected!("neon") {
            return Backend { kind: Kind::Neon };
        }
        Backend::PORTABLE
    }

    /// Every backend this CPU supports, the scalar reference first.
    pub fn available() -> Vec<Backend> {
        let mut all = vec![Backend::SCALAR, Backend::PORTABLE];
        let best = Backend::best();
        if !all.contains(&best) {
            all.push(best);
        }
        all
    }

    /// A short name: `scalar`, `portable`, `avx2` or `neon`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Scalar => "scalar",
            Kind::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => "avx2",
            #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
            Kind::Neon => "neon",
        }
    }

    /// Adds the R96 class counts of `data` to `counts`.
    pub fn r96_histogram(&self, data: &[u8], counts: &mut [u64; 96]) {
        match self.kind {
            Kind::Scalar => scalar::r96_histogram(data, counts),
            Kind::Portable => scalar::r96_histogram_interleaved(data, counts),
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => pair_table::histogram_with(data, counts, avx2::histogram_pairs),
            #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
            Kind::Neon => pair_table::histogram_with(data, counts, neon::histogram_pairs),
        }
    }

    /// Writes the distance from `target` to every site of `peers` into `out`
    /// (cleared first; its capacity is reused).
    pub fn distances_into(&self, target: Coord, peers: &PeerColumns, out: &mut Vec<u16>) {
        let (pages, bytes) = (peers.pages(), peers.bytes());
        out.clear();
        out.resize(pages.len(), 0);
        let done = match self.kind {
            Kind::Scalar => 0,
            Kind::Portable => portable_distances(target, pages, bytes, out),
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => avx2::distances(target, pages, bytes, out),
            #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
            Kind::Neon => neon::distances(target, pages, bytes, out),
        };
        scalar::distances(target, &pages[done..], &bytes[done..], &mut out[done..]);
    }

    /// The `k` sites of `peers` nearest to `target`, nearest first, ties broken
    /// by position.
    pub fn nearest(&self, target: Coord, peers: &PeerColumns, k: usize) -> Vec<Neighbor> {
        let (pages, bytes) = (peers.pages(), peers.bytes());
        if self.kind == Kind::Scalar {
            return scalar::nearest(target, pages, bytes, k);
        }
        let mut top = topk::TopK::new(k);
        let done = match self.kind {
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => avx2::nearest(target, pages, bytes, &mut top),
            #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
            Kind::Neon => neon::nearest(target, pages, bytes, &mut top),
            _ => portable_nearest(target, pages, bytes, &mut top),
        };
        for (i, (&p, &b)) in pages.iter().zip(bytes).enumerate().skip(done) {
            top.offer(target.distance(Coord::new(p.into(), b.into())), i);
        }
        top.into_vec()
    }
}

/// The k nearest by blocks of 64 portable distances, each block skipped when
/// its minimum cannot enter the top k. Returns how many sites it did (all).
fn portable_nearest(target: Coord, pages: &[u8], bytes: &[u8], top: &mut topk::TopK) -> usize {
    let mut block = [0u16; 64];
    for (i, (p, b)) in pages.chunks(64).zip(bytes.chunks(64)).enumerate() {
        let d = &mut block[..p.len()];
        portable_distances(target, p, b, d);
        if d.iter().copied().min().unwrap_or(u16::MAX) >= top.threshold() {
            continue;
        }
        for (j, &x) in d.iter().enumerate() {
            top.offer(x, i * 64 + j);
        }
    }
    pages.len()
}

/// Distances in a loop without branches (the compiler vectorizes it for the
/// baseline instruction set). Returns how many sites it did (all).
fn portable_distances(target: Coord, pages: &[u8], bytes: &[u8], out: &mut [u16]) -> usize {
    let (tp, tb) = (target.page(), target.byte());
    for ((o, &p), &b) in out.iter_mut().zip(pages).zip(bytes) {
        let dp = p.abs_diff(tp);
        let dp = dp.min(48u8.wrapping_sub(dp));
        let db = b.abs_diff(tb);
        let db = db.min(db.wrapping_neg());
        *o = u16::from(dp) << 8 | u16::from(db);
    }
    out.len()
}

/// The convenience queries of [`PeerColumns`], with the fastest kernel of
/// this CPU.
impl PeerColumns {
    /// Writes the distance from `target` to every site into `out` (cleared
    /// first; its capacity is reused), with the fastest kernel of this CPU.
    pub fn distances_into(&self, target: Coord, out: &mut Vec<u16>) {
        Backend::best().distances_into(target, self, out);
    }

    /// The `k` sites nearest to `target`, nearest first, ties broken by
    /// position, with the fastest kernel of this CPU.
    pub fn nearest(&self, target: Coord, k: usize) -> Vec<Neighbor> {
        Backend::best().nearest(target, self, k)
    }
}
