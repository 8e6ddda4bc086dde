//! NEON kernels (little-endian aarch64).
//!
//! The safe wrappers here are reached only through a `Backend` of kind NEON,
//! which [`super::Backend::best`] hands out only after
//! `is_aarch64_feature_detected!("neon")` said yes.

use super::pair_table::{PairTable, NIBBLE_TABLES};
use super::topk::TopK;
use crate::Coord;
use core::arch::aarch64::*;

/// Counts the class pairs of the longest prefix of `chunk` that is a whole
/// number of 16-byte blocks; returns its length.
pub(super) fn histogram_pairs(chunk: &[u8], table: &mut PairTable) -> usize {
    debug_assert!(std::arch::is_aarch64_feature_detected!("neon"));
    // SAFETY: only reached through a NEON `Backend`, created after detection.
    unsafe { histogram_pairs_neon(chunk, table) }
}

#[target_feature(enable = "neon")]
unsafe fn histogram_pairs_neon(chunk: &[u8], table: &mut PairTable) -> usize {
    // SAFETY (whole function): loads read 16 bytes inside the slices they are
    // taken from (`chunks_exact(16)` and 16-byte arrays); NEON is guaranteed by
    // the caller.
    let hi_tab = vld1q_u8(NIBBLE_TABLES.0.as_ptr());
    let lo_tab = vld1q_u8(NIBBLE_TABLES.1.as_ptr());
    let low_nibble = vdupq_n_u8(0x0f);
    let ninety_six = vdupq_n_u16(96);
    let low_byte = vdupq_n_u16(0x00ff);
    let mut blocks = chunk.chunks_exact(16);
    for block in &mut blocks {
        let v = vld1q_u8(block.as_ptr());
        let classes = vaddq_u8(
            vqtbl1q_u8(hi_tab, vshrq_n_u8::<4>(v)),
            vqtbl1q_u8(lo_tab, vandq_u8(v, low_nibble)),
        );
        // Little-endian u16 lanes: the even byte is low, the odd byte high.
        let words = vreinterpretq_u16_u8(classes);
        let pairs = vmlaq_u16(
            vshrq_n_u16::<8>(words),
            vandq_u16(words, low_byte),
            ninety_six,
        );
        let first = vdupq_laneq_u16::<0>(pairs);
        if vminvq_u16(vceqq_u16(pairs, first)) == u16::MAX {
            table.bump_by(usize::from(vgetq_lane_u16::<0>(pairs)), 8);
            continue;
        }
        let quads = vreinterpretq_u64_u16(pairs);
        for q in [vgetq_lane_u64::<0>(quads), vgetq_lane_u64::<1>(quads)] {
            table.bump_quad(q);
        }
    }
    chunk.len() - blocks.remainder().len()
}

/// Distances from `target` for the longest prefix that is a whole number of
/// 16-site blocks; returns its length.
pub(super) fn distances(target: Coord, pages: &[u8], bytes: &[u8], out: &mut [u16]) -> usize {
    debug_assert!(std::arch::is_aarch64_feature_detected!("neon"));
    // SAFETY: only reached through a NEON `Backend`, created after detection.
    unsafe { distances_neon(target, pages, bytes, out) }
}

/// The k nearest over the longest prefix of whole 16-site blocks, offered to
/// `top` in index order; returns the prefix length.
pub(super) fn nearest(target: Coord, pages: &[u8], bytes: &[u8], top: &mut TopK) -> usize {
    debug_assert!(std::arch::is_aarch64_feature_detected!("neon"));
    // SAFETY: only reached through a NEON `Backend`, created after detection.
    unsafe { nearest_neon(target, pages, bytes, top) }
}

/// The 16 `u16` distances of a block, in site order, as two vectors of 8.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn block_distances(
    p: uint8x16_t,
    b: uint8x16_t,
    tp: uint8x16_t,
    tb: uint8x16_t,
) -> (uint16x8_t, uint16x8_t) {
    let adp = vabdq_u8(p, tp);
    let dp = vminq_u8(adp, vsubq_u8(vdupq_n_u8(48), adp));
    let adb = vabdq_u8(b, tb);
    let db = vminq_u8(adb, vsubq_u8(vdupq_n_u8(0), adb));
    (
        vreinterpretq_u16_u8(vzip1q_u8(db, dp)),
        vreinterpretq_u16_u8(vzip2q_u8(db, dp)),
    )
}

#[target_feature(enable = "neon")]
unsafe fn distances_neon(target: Coord, pages: &[u8], bytes: &[u8], out: &mut [u16]) -> usize {
    let n = pages.len().min(bytes.len()).min(out.len()) / 16 * 16;
    let tp = vdupq_n_u8(target.page());
    let tb = vdupq_n_u8(target.byte());
    for ((p, b), o) in pages[..n]
        .chunks_exact(16)
        .zip(bytes[..n].chunks_exact(16))
        .zip(out[..n].chunks_exact_mut(16))
    {
        // SAFETY: each chunk holds exactly 16 elements; NEON is guaranteed by the caller.
        let (first, second) = block_distances(vld1q_u8(p.as_ptr()), vld1q_u8(b.as_ptr()), tp, tb);
        vst1q_u16(o.as_mut_ptr(), first);
        vst1q_u16(o.as_mut_ptr().add(8), second);
    }
    n
}

#[target_feature(enable = "neon")]
unsafe fn nearest_neon(target: Coord, pages: &[u8], bytes: &[u8], top: &mut TopK) -> usize {
    let n = pages.len().min(bytes.len()) / 16 * 16;
    let tp = vdupq_n_u8(target.page());
    let tb = vdupq_n_u8(target.byte());
    let mut block = [0u16; 16];
    for (i, (p, b)) in pages[..n]
        .chunks_exact(16)
        .zip(bytes[..n].chunks_exact(16))
        .enumerate()
    {
        // SAFETY: each chunk holds exactly 16 bytes; NEON is guaranteed by the caller.
        let (first, second) = block_distances(vld1q_u8(p.as_ptr()), vld1q_u8(b.as_ptr()), tp, tb);
        let threshold = vdupq_n_u16(top.threshold());
        let nearer = vorrq_u16(vcltq_u16(first, threshold), vcltq_u16(second, threshold));
        if vmaxvq_u16(nearer) == 0 {
            continue;
        }
        // SAFETY: `block` holds 16 u16.
        vst1q_u16(block.as_mut_ptr(), first);
        vst1q_u16(block.as_mut_ptr().add(8), second);
        for (j, &d) in block.iter().enumerate() {
            top.offer(d, i * 16 + j);
        }
    }
    n
}
