//! AVX2 kernels (x86_64).
//!
//! The safe wrappers here are reached only through a `Backend` of kind AVX2,
//! which [`super::Backend::best`] hands out only after
//! `is_x86_feature_detected!("avx2")` said yes.

use super::pair_table::{PairTable, NIBBLE_TABLES};
use super::topk::TopK;
use crate::Coord;
use core::arch::x86_64::*;

/// Counts the class pairs of the longest prefix of `chunk` that is a whole
/// number of 32-byte blocks; returns its length.
pub(super) fn histogram_pairs(chunk: &[u8], table: &mut PairTable) -> usize {
    debug_assert!(std::arch::is_x86_feature_detected!("avx2"));
    // SAFETY: only reached through an AVX2 `Backend`, created after detection.
    unsafe { histogram_pairs_avx2(chunk, table) }
}

#[target_feature(enable = "avx2")]
unsafe fn histogram_pairs_avx2(chunk: &[u8], table: &mut PairTable) -> usize {
    // SAFETY (whole function): loads read 16 or 32 bytes inside the slices they
    // are taken from (`chunks_exact(32)` and 16-byte arrays); the intrinsics
    // need AVX2, which the caller guarantees.
    let hi_tab = _mm256_broadcastsi128_si256(_mm_loadu_si128(NIBBLE_TABLES.0.as_ptr().cast()));
    let lo_tab = _mm256_broadcastsi128_si256(_mm_loadu_si128(NIBBLE_TABLES.1.as_ptr().cast()));
    let low_nibble = _mm256_set1_epi8(0x0f);
    // Bytes alternate 96 (even position) and 1 (odd): maddubs gives 96·c0 + c1.
    let weights = _mm256_set1_epi16(0x0160);
    let mut blocks = chunk.chunks_exact(32);
    for block in &mut blocks {
        let v = _mm256_loadu_si256(block.as_ptr().cast());
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low_nibble);
        let lo = _mm256_and_si256(v, low_nibble);
        let classes = _mm256_add_epi8(
            _mm256_shuffle_epi8(hi_tab, hi),
            _mm256_shuffle_epi8(lo_tab, lo),
        );
        let pairs = _mm256_maddubs_epi16(classes, weights);
        // A run of one pair (zero pages, constant fills) would serialize the
        // increments on one bin: count it at once.
        let first = _mm256_broadcastw_epi16(_mm256_castsi256_si128(pairs));
        if _mm256_movemask_epi8(_mm256_cmpeq_epi16(pairs, first)) == -1 {
            table.bump_by(_mm256_extract_epi16::<0>(pairs) as u16 as usize, 16);
            continue;
        }
        let quads = [
            _mm256_extract_epi64::<0>(pairs) as u64,
            _mm256_extract_epi64::<1>(pairs) as u64,
            _mm256_extract_epi64::<2>(pairs) as u64,
            _mm256_extract_epi64::<3>(pairs) as u64,
        ];
        for q in quads {
            table.bump_quad(q);
        }
    }
    chunk.len() - blocks.remainder().len()
}

/// Distances from `target` for the longest prefix that is a whole number of
/// 32-site blocks; returns its length.
pub(super) fn distances(target: Coord, pages: &[u8], bytes: &[u8], out: &mut [u16]) -> usize {
    debug_assert!(std::arch::is_x86_feature_detected!("avx2"));
    // SAFETY: only reached through an AVX2 `Backend`, created after detection.
    unsafe { distances_avx2(target, pages, bytes, out) }
}

/// The k nearest over the longest prefix of whole 32-site blocks, offered to
/// `top` in index order; returns the prefix length.
pub(super) fn nearest(target: Coord, pages: &[u8], bytes: &[u8], top: &mut TopK) -> usize {
    debug_assert!(std::arch::is_x86_feature_detected!("avx2"));
    // SAFETY: only reached through an AVX2 `Backend`, created after detection.
    unsafe { nearest_avx2(target, pages, bytes, top) }
}

/// Broadcast target page and byte, and the page period.
struct Target {
    page: __m256i,
    byte: __m256i,
    forty_eight: __m256i,
}

impl Target {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn new(target: Coord) -> Self {
        Self {
            page: _mm256_set1_epi8(target.page() as i8),
            byte: _mm256_set1_epi8(target.byte() as i8),
            forty_eight: _mm256_set1_epi8(48),
        }
    }

    /// The 32 `u16` distances of a block of sites, in site order, as two
    /// vectors of 16. `pages` and `bytes` must hold at least 32 elements.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn block(&self, pages: &[u8], bytes: &[u8]) -> (__m256i, __m256i) {
        debug_assert!(pages.len() >= 32 && bytes.len() >= 32);
        let p = _mm256_loadu_si256(pages.as_ptr().cast());
        let b = _mm256_loadu_si256(bytes.as_ptr().cast());
        // min(d, period - d) on unsigned bytes: pages 0..=24, bytes 0..=128.
        let adp = _mm256_sub_epi8(_mm256_max_epu8(p, self.page), _mm256_min_epu8(p, self.page));
        let dp = _mm256_min_epu8(adp, _mm256_sub_epi8(self.forty_eight, adp));
        let adb = _mm256_sub_epi8(_mm256_max_epu8(b, self.byte), _mm256_min_epu8(b, self.byte));
        let db = _mm256_min_epu8(adb, _mm256_sub_epi8(_mm256_setzero_si256(), adb));
        // Byte distance low, page distance high. unpack works per 128-bit
        // lane: lo = sites 0..8 | 16..24, hi = 8..16 | 24..32.
        let lo = _mm256_unpacklo_epi8(db, dp);
        let hi = _mm256_unpackhi_epi8(db, dp);
        (
            _mm256_permute2x128_si256::<0x20>(lo, hi),
            _mm256_permute2x128_si256::<0x31>(lo, hi),
        )
    }
}

#[target_feature(enable = "avx2")]
unsafe fn distances_avx2(target: Coord, pages: &[u8], bytes: &[u8], out: &mut [u16]) -> usize {
    let n = pages.len().min(bytes.len()).min(out.len()) / 32 * 32;
    let t = Target::new(target);
    for ((p, b), o) in pages[..n]
        .chunks_exact(32)
        .zip(bytes[..n].chunks_exact(32))
        .zip(out[..n].chunks_exact_mut(32))
    {
        // SAFETY: each chunk holds exactly 32 elements (`o` is stored as two
        // 32-byte halves); AVX2 is guaranteed by the caller.
        let (first, second) = t.block(p, b);
        _mm256_storeu_si256(o.as_mut_ptr().cast(), first);
        _mm256_storeu_si256(o.as_mut_ptr().add(16).cast(), second);
    }
    n
}

#[target_feature(enable = "avx2")]
unsafe fn nearest_avx2(target: Coord, pages: &[u8], bytes: &[u8], top: &mut TopK) -> usize {
    let n = pages.len().min(bytes.len()) / 32 * 32;
    let t = Target::new(target);
    let mut block = [0u16; 32];
    for (i, (p, b)) in pages[..n]
        .chunks_exact(32)
        .zip(bytes[..n].chunks_exact(32))
        .enumerate()
    {
        // SAFETY: each chunk holds exactly 32 bytes; AVX2 is guaranteed by the caller.
        let (first, second) = t.block(p, b);
        // Distances are at most 6272, so signed 16-bit compares are exact.
        let threshold = _mm256_set1_epi16(top.threshold().min(i16::MAX as u16) as i16);
        let nearer = _mm256_or_si256(
            _mm256_cmpgt_epi16(threshold, first),
            _mm256_cmpgt_epi16(threshold, second),
        );
        if _mm256_testz_si256(nearer, nearer) == 1 {
            continue;
        }
        // SAFETY: `block` holds 32 u16, written as two 32-byte halves.
        _mm256_storeu_si256(block.as_mut_ptr().cast(), first);
        _mm256_storeu_si256(block.as_mut_ptr().add(16).cast(), second);
        for (j, &d) in block.iter().enumerate() {
            top.offer(d, i * 32 + j);
        }
    }
    n
}
