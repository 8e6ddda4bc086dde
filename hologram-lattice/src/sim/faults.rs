//! What the simulated network does to messages.

/// Fault rates and latencies of the simulated network.
///
/// Each message is lost with probability `loss`; otherwise it is delivered
/// after a latency drawn uniformly from `latency_ms` (so messages between
/// the same pair can overtake each other: reordering), duplicated with
/// probability `duplicate` (the copy with its own latency), and corrupted with
/// probability `corrupt` (one random bit of its encoding flipped; a copy that no
/// longer decodes is dropped, as a real node's decoder would reject it).
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a delivered message arrives twice.
    pub duplicate: f64,
    /// Probability that a delivered message has one bit flipped.
    pub corrupt: f64,
    /// Smallest and largest one-way latency, in virtual milliseconds.
    pub latency_ms: (u64, u64),
}

impl Faults {
    /// A perfect network: nothing lost, duplicated or corrupted, 1 ms latency.
    pub const NONE: Faults = Faults {
        loss: 0.0,
        duplicate: 0.0,
        corrupt: 0.0,
        latency_ms: (1, 1),
    };

    /// A hostile but live network: 10% loss, 5% duplication, 1% corruption,
    /// 1–50 ms latency.
    pub const HOSTILE: Faults = Faults {
        loss: 0.10,
        duplicate: 0.05,
        corrupt: 0.01,
        latency_ms: (1, 50),
    };

    /// Rates clamped into `0.0..=1.0` and latencies ordered, so that any
    /// user-built value is usable.
    pub(crate) fn normalized(&self) -> Faults {
        let p = |x: f64| if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) };
        let (lo, hi) = self.latency_ms;
        Faults {
            loss: p(self.loss),
            duplicate: p(self.duplicate),
            corrupt: p(self.corrupt),
            latency_ms: (lo.min(hi), lo.max(hi)),
        }
    }
}

impl Default for Faults {
    fn default() -> Self {
        Faults::NONE
    }
}
