//! The chapter's `AdaptiveTopology`: keep fast neighbours, replace slow ones.

use super::LatencyHistogram;
use crate::PeerId;
use std::collections::BTreeMap;
use std::time::Duration;

/// Settings of an [`AdaptiveTopology`].
#[derive(Debug, Clone, PartialEq)]
pub struct TopologyConfig {
    /// The topology never drops below this many neighbours.
    pub min_degree: usize,
    /// Replacements are added up to this many neighbours.
    pub target_degree: usize,
    /// A neighbour is slow when its p95 exceeds this multiple of the p95 of
    /// the neighbour at the first quartile (and it is in the slowest quarter).
    /// The quartile, not the median, so that a node whose neighbours are
    /// mostly slow still sees them as slow.
    pub slow_factor: f64,
    /// Consecutive rounds a neighbour must be slow before it is dropped.
    pub strikes: u32,
    /// Rounds a dropped peer waits before it may be added again.
    pub cooldown_rounds: u64,
    /// Samples a neighbour needs before it is judged.
    pub min_samples: u64,
    /// Samples after which a neighbour's histogram ages (halves).
    pub window: u64,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        Self {
            min_degree: 4,
            target_degree: 8,
            slow_factor: 1.5,
            strikes: 2,
            cooldown_rounds: 10,
            min_samples: 8,
            window: 256,
        }
    }
}

/// What one [`AdaptiveTopology::optimize_topology`] round changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopologyChange {
    /// Neighbours dropped, slowest first.
    pub dropped: Vec<PeerId>,
    /// Peers added in their place.
    pub added: Vec<PeerId>,
}

impl TopologyChange {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.dropped.is_empty() && self.added.is_empty()
    }
}

#[derive(Debug, Clone)]
struct Neighbour {
    latency: LatencyHistogram,
    strikes: u32,
}

/// A node's set of neighbours, adapted to their measured latency.
///
/// Latencies (and failures, counted at the caller's timeout) go into a
/// bounded [`LatencyHistogram`] per neighbour. Each
/// [`optimize_topology`](AdaptiveTopology::optimize_topology) round does what
/// the chapter's does, ranking neighbours by p95 and dropping the slowest
/// quarter, with hysteresis so it does not flap: only neighbours with enough
/// samples are judged, a neighbour must be both in the slowest quarter and
/// `slow_factor` × slower than the first-quartile neighbour for `strikes`
/// rounds in a row, the
/// degree never goes under `min_degree`, and a dropped peer is not taken back
/// for `cooldown_rounds`. Replacements come from candidates the caller
/// discovers through the router. This is a deterministic core: pinging and
/// connecting are the caller's.
#[derive(Debug, Clone)]
pub struct AdaptiveTopology {
    local: PeerId,
    config: TopologyConfig,
    neighbours: BTreeMap<PeerId, Neighbour>,
    cooling: BTreeMap<PeerId, u64>,
    round: u64,
}

impl AdaptiveTopology {
    /// A topology for `local` with no neighbours.
    pub fn new(local: PeerId, config: TopologyConfig) -> Self {
        Self {
            local,
            config,
            neighbours: BTreeMap::new(),
            cooling: BTreeMap::new(),
            round: 0,
        }
    }

    /// Adds a neighbour (not the local node, not twice). Returns whether it was added.
    pub fn connect(&mut self, peer: PeerId) -> bool {
        if peer == self.local || self.neighbours.contains_key(&peer) {
            return false;
        }
        self.neighbours.insert(
            peer,
            Neighbour {
                latency: LatencyHistogram::new(self.config.window),
                strikes: 0,
            },
        );
        true
    }

    /// The current neighbours, in id order.
    pub fn neighbours(&self) -> impl ExactSizeIterator<Item = PeerId> + '_ {
        self.neighbours.keys().copied()
    }

    /// Whether `peer` is a neighbour.
    pub fn is_neighbour(&self, peer: &PeerId) -> bool {
        self.neighbours.contains_key(peer)
    }

    /// The number of neighbours.
    pub fn degree(&self) -> usize {
        self.neighbours.len()
    }

    /// Records a measured round trip to a neighbour (others are ignored).
    pub fn record_latency(&mut self, peer: &PeerId, latency: Duration) {
        if let Some(n) = self.neighbours.get_mut(peer) {
            n.latency.record(latency);
        }
    }

    /// A neighbour's p95 latency, once it has samples.
    pub fn p95(&self, peer: &PeerId) -> Option<Duration> {
        self.neighbours.get(peer)?.latency.percentile(0.95)
    }

    /// One round: judge the neighbours, drop those slow for long enough (never
    /// under `min_degree`), and add peers from `candidates` (in the order
    /// given, skipping neighbours, the local node and cooling peers) up to
    /// `target_degree`.
    pub fn optimize_topology(
        &mut self,
        candidates: impl IntoIterator<Item = PeerId>,
    ) -> TopologyChange {
        self.round += 1;
        let round = self.round;
        self.cooling.retain(|_, until| *until > round);
        let mut change = TopologyChange::default();

        let mut judged: Vec<(Duration, PeerId)> = self
            .neighbours
            .iter()
            .filter(|(_, n)| n.latency.samples() >= self.config.min_samples)
            .filter_map(|(id, n)| Some((n.latency.percentile(0.95)?, *id)))
            .collect();
        judged.sort();
        if judged.len() >= 4 {
            let baseline = judged[judged.len() / 4].0.as_secs_f64();
            let quarter = judged.len() - judged.len() / 4;
            for (rank, (p95, id)) in judged.iter().enumerate() {
                let slow =
                    rank >= quarter && p95.as_secs_f64() > self.config.slow_factor * baseline;
                if let Some(n) = self.neighbours.get_mut(id) {
                    n.strikes = if slow { n.strikes + 1 } else { 0 };
                }
            }
            let mut droppable = self.neighbours.len().saturating_sub(self.config.min_degree);
            for (_, id) in judged.iter().rev() {
                if droppable == 0 {
                    break;
                }
                if self
                    .neighbours
                    .get(id)
                    .is_some_and(|n| n.strikes >= self.config.strikes)
                {
                    self.neighbours.remove(id);
                    self.cooling
                        .insert(*id, round + self.config.cooldown_rounds);
                    change.dropped.push(*id);
                    droppable -= 1;
                }
            }
        }

        for peer in candidates {
            if self.neighbours.len() >= self.config.target_degree {
                break;
            }
            if !self.cooling.contains_key(&peer) && self.connect(peer) {
                change.added.push(peer);
            }
        }
        change
    }
}
