//! The knobs of the broadcast protocol.

use std::num::NonZeroU64;

/// Where a node sends a message it delivers for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardPolicy {
    /// The chapter's two phases: page neighbours (when the message came from
    /// another page, or from the node itself), then `gossip_fanout` pages the
    /// C768 [`ScheduleRotation`](hologram_lattice::ScheduleRotation) picks.
    Lattice,
    /// Plain flooding: every member but the one it came from. Reliable and
    /// quadratic; kept as the baseline the lattice policy is measured against.
    Flood,
}

/// Configuration of a [`LatticeProtocol`](super::LatticeProtocol) node.
///
/// Every node of a network should use the same values (they only change how
/// much each node sends and keeps, never what is valid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastConfig {
    /// Pages each first delivery gossips to (phase 2), at most 47.
    pub gossip_fanout: usize,
    /// How targets are chosen.
    pub policy: ForwardPolicy,
    /// Length of a C768 schedule slot: the rotation's phase is
    /// `⌊now_ms / slot_ms⌋ mod 768` (SPEC §4). It only picks gossip targets.
    pub slot_ms: NonZeroU64,
    /// Largest broadcast body accepted (the payload is 8 bytes more).
    pub max_body: usize,
    /// Messages issued more than this long ago are refused as stale; ids are
    /// remembered for at least this long.
    pub max_age_ms: u64,
    /// Messages issued more than this far in the future are refused.
    pub max_skew_ms: u64,
    /// Most message ids remembered for duplicate suppression. When full, the
    /// oldest is forgotten and nothing issued at or before it is accepted.
    pub seen_capacity: usize,
    /// Most delivered messages kept to answer repair pulls.
    pub cache_capacity: usize,
    /// Milliseconds between two rounds of repair announcements.
    pub repair_interval_ms: u64,
    /// Peers each repair round announces to.
    pub repair_fanout: usize,
    /// Repair rounds in which a delivered message is announced.
    pub announce_rounds: u8,
    /// Distinct acknowledgements that make a delivery certificate.
    pub ack_threshold: usize,
    /// Most of its own broadcasts a node collects acknowledgements for at once.
    pub max_pending: usize,
}

impl Default for BroadcastConfig {
    /// Fanout 3, lattice policy, 100 ms slots, 64 KiB bodies, a 10-minute
    /// window of 65,536 ids, 1,024 cached messages, repair every 200 ms to 3
    /// peers for 4 rounds, certificates at 1 acknowledgement (set it to the
    /// fraction of the network you need).
    fn default() -> Self {
        Self {
            gossip_fanout: 3,
            policy: ForwardPolicy::Lattice,
            slot_ms: NonZeroU64::MIN.saturating_add(99),
            max_body: 64 << 10,
            max_age_ms: 10 * 60 * 1000,
            max_skew_ms: 60 * 1000,
            seen_capacity: 1 << 16,
            cache_capacity: 1024,
            repair_interval_ms: 200,
            repair_fanout: 3,
            announce_rounds: 4,
            ack_threshold: 1,
            max_pending: 256,
        }
    }
}
