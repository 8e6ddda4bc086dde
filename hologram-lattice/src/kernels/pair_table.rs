//! Histogram by byte pairs: the fast paths count each pair of classes
//! `(class(b[2i]), class(b[2i+1]))` in one of 96 × 96 `u16` bins, which halves
//! the memory increments of a byte-at-a-time histogram, and fold the bins into
//! the 96 class counters every [`CHUNK`] bytes, before a bin can overflow.

/// Number of pair bins: 96 × 96 = 9216 are used; the table is rounded up to a
/// power of two so that masking an index proves it in bounds (no check on the
/// hot path). Only the first 18 KiB are ever touched.
pub(crate) const PAIR_BINS: usize = 1 << 14;
const USED_BINS: usize = 96 * 96;
const MASK: usize = PAIR_BINS - 1;

/// Bytes counted between folds: 61,440 pairs, so no `u16` bin can overflow.
pub(crate) const CHUNK: usize = 120 * 1024;

/// Inputs shorter than this go to the byte-at-a-time loop: clearing and folding
/// the 18 KiB table would cost more than it saves.
pub(crate) const MIN_LEN: usize = 4096;

/// The 96 × 96 pair bins.
pub(crate) struct PairTable {
    bins: [u16; PAIR_BINS],
}

impl PairTable {
    pub(crate) fn new() -> Self {
        Self {
            bins: [0; PAIR_BINS],
        }
    }

    /// Counts one pair, `index = 96 * first_class + second_class`.
    #[inline(always)]
    pub(crate) fn bump(&mut self, index: usize) {
        self.bins[index & MASK] += 1;
    }

    /// Counts four pairs whose indices are packed as the `u16`s of `q`
    /// (little-endian order), as SIMD kernels extract them.
    #[inline(always)]
    pub(crate) fn bump_quad(&mut self, q: u64) {
        self.bump((q & 0xffff) as usize);
        self.bump((q >> 16 & 0xffff) as usize);
        self.bump((q >> 32 & 0xffff) as usize);
        self.bump((q >> 48) as usize);
    }

    /// Counts `n` copies of one pair.
    #[inline(always)]
    pub(crate) fn bump_by(&mut self, index: usize, n: u16) {
        self.bins[index & MASK] += n;
    }

    /// Adds every pair to the class counters (both of its classes) and clears the bins.
    pub(crate) fn fold_into(&mut self, counts: &mut [u64; 96]) {
        let mut second = [0u32; 96];
        for (first, row) in self.bins[..USED_BINS].chunks_exact(96).enumerate() {
            let mut row_sum = 0u32;
            for (s, &n) in second.iter_mut().zip(row) {
                *s += u32::from(n);
                row_sum += u32::from(n);
            }
            counts[first] += u64::from(row_sum);
        }
        for (c, s) in counts.iter_mut().zip(second) {
            *c += u64::from(s);
        }
        self.bins[..USED_BINS].fill(0);
    }
}

/// Runs `kernel` over `data` in [`CHUNK`]s, folding after each. The kernel
/// counts a prefix of whole pairs it chooses and returns its length; the rest
/// of each chunk is counted byte by byte.
pub(crate) fn histogram_with(
    data: &[u8],
    counts: &mut [u64; 96],
    mut kernel: impl FnMut(&[u8], &mut PairTable) -> usize,
) {
    if data.len() < MIN_LEN {
        super::scalar::r96_histogram(data, counts);
        return;
    }
    let mut table = PairTable::new();
    for chunk in data.chunks(CHUNK) {
        let done = kernel(chunk, &mut table);
        table.fold_into(counts);
        super::scalar::r96_histogram(chunk.get(done..).unwrap_or_default(), counts);
    }
}

/// The class of a byte is `hi[b >> 4] + lo[b & 15]`: 24·h2 + 8·d from the high
/// nibble, l from the low one. Two 16-entry tables, so that one SIMD shuffle
/// (`vpshufb`, `tbl`) looks each up for a whole vector.
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_endian = "little")
))]
pub(crate) const NIBBLE_TABLES: ([u8; 16], [u8; 16]) = {
    let mut hi = [0u8; 16];
    let mut lo = [0u8; 16];
    let mut n = 0;
    while n < 16 {
        hi[n] = crate::class::CLASS_TABLE[n << 4];
        lo[n] = crate::class::CLASS_TABLE[n];
        n += 1;
    }
    (hi, lo)
};
