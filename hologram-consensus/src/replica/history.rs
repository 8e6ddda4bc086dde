//! The delivered decisions a replica keeps in memory to serve catch-up,
//! bounded by heights ([`ReplicaConfig::retain_decisions`]) and by bytes
//! ([`ReplicaConfig::retain_decision_bytes`]). Older heights are served from
//! the durable log ([`Outputs::log_reads`]).
//!
//! [`ReplicaConfig::retain_decisions`]: super::ReplicaConfig::retain_decisions
//! [`ReplicaConfig::retain_decision_bytes`]: super::ReplicaConfig::retain_decision_bytes
//! [`Outputs::log_reads`]: super::Outputs::log_reads

use super::catchup::decision_wire_bound;
use crate::message::Decision;
use std::collections::BTreeMap;
use std::ops::Range;

/// The newest delivered decisions, within a height and a byte bound.
pub(super) struct History {
    decisions: BTreeMap<u64, Decision>,
    /// The sum of [`decision_wire_bound`] over `decisions`.
    bytes: usize,
    max_heights: usize,
    max_bytes: usize,
}

impl History {
    /// An empty history keeping at most `max_heights` decisions and
    /// `max_bytes` bytes of them (by [`decision_wire_bound`]).
    pub(super) fn new(max_heights: usize, max_bytes: usize) -> Self {
        Self {
            decisions: BTreeMap::new(),
            bytes: 0,
            max_heights,
            max_bytes,
        }
    }

    /// Keeps `d` (delivered at height `h`), dropping the oldest decisions
    /// while either bound is exceeded (the newest one always stays).
    pub(super) fn insert(&mut self, h: u64, d: Decision) {
        let size = decision_wire_bound(&d);
        if let Some(old) = self.decisions.insert(h, d) {
            self.bytes = self.bytes.saturating_sub(decision_wire_bound(&old));
        }
        self.bytes = self.bytes.saturating_add(size);
        while self.decisions.len() > 1
            && (self.decisions.len() > self.max_heights || self.bytes > self.max_bytes)
        {
            if let Some((_, old)) = self.decisions.pop_first() {
                self.bytes = self.bytes.saturating_sub(decision_wire_bound(&old));
            }
        }
    }

    /// Forgets the decisions below `h` (compacted into a snapshot).
    pub(super) fn prune_below(&mut self, h: u64) {
        let kept = self.decisions.split_off(&h);
        for d in self.decisions.values() {
            self.bytes = self.bytes.saturating_sub(decision_wire_bound(d));
        }
        self.decisions = kept;
    }

    /// The decision of height `h`, if still kept.
    pub(super) fn get(&self, h: u64) -> Option<&Decision> {
        self.decisions.get(&h)
    }

    /// The kept decisions of `heights`, in height order.
    pub(super) fn range(&self, heights: Range<u64>) -> impl Iterator<Item = &Decision> {
        self.decisions.range(heights).map(|(_, d)| d)
    }

    /// The oldest height kept (`None` when empty).
    pub(super) fn first(&self) -> Option<u64> {
        self.decisions.first_key_value().map(|(h, _)| *h)
    }

    /// The bytes kept (by [`decision_wire_bound`]).
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many decisions are kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.decisions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::catchup::tests::decision;

    #[test]
    fn the_byte_bound_drops_the_oldest_and_keeps_the_newest() {
        let size = decision_wire_bound(&decision(0, 1000));
        let mut history = History::new(1000, 3 * size);
        for h in 0..10 {
            history.insert(h, decision(h, 1000));
            assert!(history.bytes() <= 3 * size);
        }
        assert_eq!(history.len(), 3);
        assert_eq!(history.first(), Some(7));
        assert!(history.get(6).is_none() && history.get(9).is_some());
        assert_eq!(history.range(0..100).count(), 3);
        // One decision larger than the bound is still kept alone.
        history.insert(10, decision(10, 8000));
        assert_eq!((history.len(), history.first()), (1, Some(10)));
        // Pruned below a compaction point, the bytes follow.
        history.insert(11, decision(11, 10));
        history.prune_below(11);
        assert_eq!((history.len(), history.first()), (1, Some(11)));
        assert_eq!(history.bytes(), decision_wire_bound(&decision(11, 10)));
    }

    #[test]
    fn the_height_bound_still_holds() {
        let mut history = History::new(4, usize::MAX);
        for h in 0..10 {
            history.insert(h, decision(h, 10));
        }
        assert_eq!(history.len(), 4);
        assert_eq!(history.first(), Some(6));
        let total: usize = history.range(0..10).map(decision_wire_bound).sum();
        assert_eq!(history.bytes(), total);
    }
}
