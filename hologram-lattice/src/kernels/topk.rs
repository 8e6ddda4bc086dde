//! Selection of the k nearest sites while scanning, shared by the fast paths.

use crate::columns::Neighbor;

/// The best `k` neighbours seen so far, sorted by (distance, index).
///
/// Sites must be offered in increasing index order: then a later site only
/// displaces a kept one when it is strictly nearer, which is what
/// [`TopK::threshold`] lets a SIMD loop test for a whole block at once.
pub(crate) struct TopK {
    k: usize,
    best: Vec<Neighbor>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            best: Vec::with_capacity(k.min(1024) + 1),
        }
    }

    /// A site must be strictly nearer than this to be kept.
    #[inline(always)]
    pub(crate) fn threshold(&self) -> u16 {
        match self.best.last() {
            Some(last) if self.best.len() == self.k => last.distance,
            _ if self.k == 0 => 0,
            _ => u16::MAX,
        }
    }

    /// Offers site `index` at `distance`.
    #[inline]
    pub(crate) fn offer(&mut self, distance: u16, index: usize) {
        if distance >= self.threshold() {
            return;
        }
        let at = self.best.partition_point(|n| n.distance <= distance);
        self.best.insert(at, Neighbor { distance, index });
        self.best.truncate(self.k);
    }

    pub(crate) fn into_vec(self) -> Vec<Neighbor> {
        self.best
    }
}
