//! Latency percentiles with bounded memory.

use std::time::Duration;

/// Exact buckets below this many microseconds.
const LINEAR: u64 = 16;
/// Sub-buckets per power of two above it (12.5% resolution).
const SUB_BITS: u32 = 3;
const BUCKETS: usize = LINEAR as usize + (64 - 4) * (1 << SUB_BITS);

/// A log-bucketed histogram of latencies: fixed memory (about 2 KiB),
/// percentiles to within 12.5%, and ageing so it follows a peer's recent
/// behaviour: when `window` samples have accumulated, every count is halved.
///
/// ```
/// use hologram_lattice::topology::LatencyHistogram;
/// use std::time::Duration;
/// let mut h = LatencyHistogram::new(1024);
/// for ms in 1..=100 {
///     h.record(Duration::from_millis(ms));
/// }
/// let p95 = h.percentile(0.95).unwrap();
/// assert!(p95 >= Duration::from_millis(95) && p95 <= Duration::from_millis(108));
/// ```
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    counts: Box<[u32; BUCKETS]>,
    total: u64,
    window: u64,
}

impl LatencyHistogram {
    /// An empty histogram that halves its counts every `window` samples
    /// (at least 2).
    pub fn new(window: u64) -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            window: window.max(2),
        }
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let b = bucket(micros);
        self.counts[b] = self.counts[b].saturating_add(1);
        self.total += 1;
        if self.total >= self.window {
            self.total = 0;
            for c in self.counts.iter_mut() {
                *c /= 2;
                self.total += u64::from(*c);
            }
        }
    }

    /// Samples currently weighing in (after ageing).
    pub fn samples(&self) -> u64 {
        self.total
    }

    /// The latency below which a fraction `q` (in `0.0..=1.0`) of the samples
    /// lie, as the upper edge of its bucket; `None` without samples.
    pub fn percentile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(Duration::from_micros(upper_edge(i)));
            }
        }
        Some(Duration::from_micros(upper_edge(BUCKETS - 1)))
    }
}

fn bucket(micros: u64) -> usize {
    if micros < LINEAR {
        return micros as usize;
    }
    let e = 63 - micros.leading_zeros(); // ≥ 4
    let sub = (micros >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (LINEAR + u64::from(e - 4) * (1 << SUB_BITS) + sub) as usize
}

/// The largest value in bucket `i`.
fn upper_edge(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let e = (i - LINEAR) / (1 << SUB_BITS) + 4;
    let sub = (i - LINEAR) % (1 << SUB_BITS);
    let width = 1u64 << (e - u64::from(SUB_BITS));
    ((1u64 << e) + sub * width).saturating_add(width - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for v in (0..5000u64).chain([u64::MAX / 3, u64::MAX]) {
            let b = bucket(v);
            assert!(b < BUCKETS);
            assert!(b >= last || v > 4999);
            assert!(upper_edge(b) >= v, "{v} in bucket {b}");
            last = b;
        }
    }

    #[test]
    fn ageing_follows_recent_behaviour() {
        let mut h = LatencyHistogram::new(64);
        for _ in 0..1000 {
            h.record(Duration::from_millis(100));
        }
        assert!(h.samples() < 64);
        for _ in 0..200 {
            h.record(Duration::from_millis(5));
        }
        assert!(h.percentile(0.5).unwrap() < Duration::from_millis(6));
        assert_eq!(LatencyHistogram::new(8).percentile(0.95), None);
    }
}
