//! `ReceiptSharding`: per-shard load statistics and load-based splits.
//!
//! Accesses are recorded where receipts already flow
//! ([`ReceiptSharding::record`] takes the receipt of the key or object
//! touched). Each shard counts its accesses in the current window and keeps
//! a bounded uniform sample of their placements (reservoir sampling with a
//! fixed-seed generator, so runs are reproducible). At the end of a window the
//! counts fold into a per-shard exponentially weighted average: the
//! **sustained** load, which a single burst does not move far.
//!
//! [`ReceiptSharding::rebalance_shards`] compares each shard's sustained load
//! with the target (the mean over shards) and splits every shard above
//! `split_factor` × target (1.2, as the chapter has it) at the **median of
//! its sampled placements**, so each half carries about half the sampled
//! load. The split changes only that shard's range: keys of other shards
//! stay where they are, and only the split shard's keys at or above the
//! split point move (see [`crate::ParticipantCore::hand_off`]). A shard whose
//! samples are all one placement (one hot key, or keys that share an R96
//! digest) cannot be split by range; the load balancer moves such objects.

use crate::sharding::{ShardId, ShardMap};
use crate::TxnError;
use hologram_lattice::NodeId;
use hologram_receipt::Receipt;
use std::collections::BTreeMap;

/// Tuning of [`ReceiptSharding`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShardingConfig {
    /// Split a shard whose sustained load exceeds this multiple of the target.
    pub split_factor: f64,
    /// Weight of the newest window in the sustained load (0..=1).
    pub smoothing: f64,
    /// Placements sampled per shard and window.
    pub sample_size: usize,
}

impl Default for ShardingConfig {
    fn default() -> Self {
        ShardingConfig {
            split_factor: 1.2,
            smoothing: 0.5,
            sample_size: 256,
        }
    }
}

/// One shard's load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardLoad {
    /// Accesses in the current window.
    pub window: u64,
    /// The sustained load: an exponentially weighted average of windows.
    pub sustained: f64,
    /// A uniform sample of the placements accessed this window (bounded).
    samples: Vec<u64>,
    /// The sample of the last completed window (what splits use).
    last_samples: Vec<u64>,
    /// Accesses offered to the sample this window.
    offered: u64,
}

/// A split [`ReceiptSharding::rebalance_shards`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// The shard that was split (it keeps the lower half).
    pub shard: ShardId,
    /// The new shard (the upper half).
    pub new_shard: ShardId,
    /// The first placement of the upper half.
    pub at: u64,
    /// The node serving the new shard.
    pub node: NodeId,
}

/// Shards of the u64 placement space with their load (module docs).
#[derive(Debug, Clone)]
pub struct ReceiptSharding {
    map: ShardMap,
    loads: BTreeMap<ShardId, ShardLoad>,
    config: ShardingConfig,
    rng: u64,
}

impl ReceiptSharding {
    /// Sharding over `map`, with no load recorded yet.
    pub fn new(map: ShardMap, config: ShardingConfig) -> Self {
        ReceiptSharding {
            map,
            loads: BTreeMap::new(),
            config,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The current shard map.
    pub fn map(&self) -> &ShardMap {
        &self.map
    }

    /// The shard of a receipt: by `receipt.r96.as_u64()` over ranges.
    pub fn compute_shard(&self, receipt: &Receipt) -> ShardId {
        self.map.compute_shard(receipt)
    }

    /// Moves a shard to another node (a migration; its load statistics stay).
    pub fn assign(&mut self, shard: ShardId, node: NodeId) -> Result<(), TxnError> {
        self.map.assign(shard, node)
    }

    /// The load statistics of a shard.
    pub fn load(&self, shard: ShardId) -> Option<&ShardLoad> {
        self.loads.get(&shard)
    }

    /// Records one access to what `receipt` describes; returns its shard.
    pub fn record(&mut self, receipt: &Receipt) -> ShardId {
        let placement = receipt.r96.as_u64();
        let shard = self.map.shard_at(placement);
        let random = self.next_random();
        let size = self.config.sample_size.max(1);
        let load = self.loads.entry(shard).or_default();
        load.window += 1;
        load.offered += 1;
        if load.samples.len() < size {
            load.samples.push(placement);
        } else if let Some(slot) = load.samples.get_mut((random % load.offered) as usize) {
            *slot = placement;
        }
        shard
    }

    /// Ends the current window: folds its counts into the sustained loads
    /// (shards without accesses decay towards zero).
    pub fn end_window(&mut self) {
        let a = self.config.smoothing.clamp(0.0, 1.0);
        for (shard, _, _, _) in self.map.shards() {
            let load = self.loads.entry(shard).or_default();
            load.sustained = a * load.window as f64 + (1.0 - a) * load.sustained;
            load.window = 0;
            load.offered = 0;
            if !load.samples.is_empty() {
                load.last_samples = std::mem::take(&mut load.samples);
            }
        }
    }

    /// The target load per shard: the mean sustained load.
    pub fn target_load(&self) -> f64 {
        let total: f64 = self.loads.values().map(|l| l.sustained).sum();
        total / self.map.len().max(1) as f64
    }

    /// Splits every shard whose sustained load exceeds `split_factor` ×
    /// target at the median of its sampled placements, the upper half on the
    /// node `place(shard)` names. Returns the splits made (none for a shard
    /// whose samples cannot be cut).
    pub fn rebalance_shards(
        &mut self,
        mut place: impl FnMut(ShardId) -> NodeId,
    ) -> Result<Vec<Split>, TxnError> {
        let target = self.target_load();
        let overloaded: Vec<ShardId> = self
            .loads
            .iter()
            .filter(|(_, l)| target > 0.0 && l.sustained > target * self.config.split_factor)
            .map(|(&s, _)| s)
            .collect();
        let mut splits = Vec::new();
        for shard in overloaded {
            let Some((start, _)) = self.map.range(shard) else {
                continue;
            };
            let Some(load) = self.loads.get(&shard) else {
                continue;
            };
            let Some(at) = split_point(&load.last_samples, start) else {
                continue;
            };
            let node = place(shard);
            let new_shard = self.map.split(shard, at, node)?;
            let (low, high): (Vec<u64>, Vec<u64>) =
                load.last_samples.iter().partition(|&&p| p < at);
            let share = high.len() as f64 / load.last_samples.len().max(1) as f64;
            let sustained = load.sustained;
            for (id, part, last_samples) in [(shard, 1.0 - share, low), (new_shard, share, high)] {
                let sustained = sustained * part;
                let load = ShardLoad {
                    sustained,
                    last_samples,
                    ..ShardLoad::default()
                };
                self.loads.insert(id, load);
            }
            splits.push(Split {
                shard,
                new_shard,
                at,
                node,
            });
        }
        Ok(splits)
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The median of the samples as a split point strictly above `start`, or
/// `None` when every sample sits at one placement.
fn split_point(samples: &[u64], start: u64) -> Option<u64> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let median = *sorted.get(sorted.len() / 2)?;
    if median > start && sorted.first() != Some(&median) {
        return Some(median);
    }
    // Too many samples at the bottom: cut just above the lowest placement.
    sorted.iter().copied().find(|&p| p > median && p > start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;

    fn node(i: u8) -> NodeId {
        NodeId::from_bytes([i; 32])
    }

    #[test]
    fn a_hot_shard_is_split_at_the_median_and_only_it_changes() {
        let mut sharding = ReceiptSharding::new(
            ShardMap::even(&[node(1), node(2), node(3), node(4)]),
            ShardingConfig::default(),
        );
        // Keys with varied bytes (short counters like "k12" and "k21" share
        // an R96 digest, so they share a placement).
        let keys: Vec<Key> = (0..4000u32)
            .map(|i| Key::new(blake3::hash(&i.to_le_bytes()).to_hex().as_bytes().to_vec()).unwrap())
            .collect();
        let hot = sharding.map().shard_of(&keys[0]);
        for _ in 0..3 {
            for k in &keys {
                sharding.record(&k.receipt());
                if sharding.map().shard_of(k) == hot {
                    // The hot shard gets three times the traffic.
                    sharding.record(&k.receipt());
                    sharding.record(&k.receipt());
                }
            }
            sharding.end_window();
        }
        let before = sharding.map().clone();
        let splits = sharding.rebalance_shards(|_| node(9)).unwrap();
        assert_eq!(splits.len(), 1, "only the hot shard is over 1.2x target");
        let split = splits[0];
        assert_eq!(split.shard, hot);
        assert!(sharding.map().version() > before.version());
        // Only keys of the hot shard at or above the split point moved.
        let mut moved = (0, 0);
        for k in &keys {
            let (old, new) = (before.node_of(k), sharding.map().node_of(k));
            if old != new {
                assert_eq!(before.shard_of(k), hot);
                assert!(k.placement() >= split.at);
                moved.0 += 1;
            }
            if before.shard_of(k) == hot {
                moved.1 += 1;
            }
        }
        // The halves carry about equal load (the median of a sample).
        let share = moved.0 as f64 / moved.1 as f64;
        assert!((0.35..0.65).contains(&share), "moved {moved:?}");
        // The other shards, under 1.2x the target, were left alone.
        assert_eq!(sharding.map().len(), before.len() + 1);
    }

    #[test]
    fn one_hot_placement_cannot_be_split_by_range() {
        let mut sharding = ReceiptSharding::new(
            ShardMap::even(&[node(1), node(2)]),
            ShardingConfig::default(),
        );
        let hot = Key::new(b"hot".to_vec()).unwrap();
        for _ in 0..1000 {
            sharding.record(&hot.receipt());
        }
        sharding.end_window();
        assert!(sharding.rebalance_shards(|_| node(9)).unwrap().is_empty());
        assert_eq!(sharding.map().len(), 2);
    }
}
