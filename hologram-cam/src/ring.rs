//! The consistent-hash ring of the deduplication network (SPEC §8).

use hologram_lattice::{Address, PeerId};
use std::collections::BTreeSet;

/// Virtual nodes per node by default. A node's share of the ring is then
/// the sum of 256 arcs: within 1/16 (one standard deviation) of the mean
/// share, so the largest share of a network of tens of nodes is typically
/// 1.1–1.2× the mean and rarely (a few placements in a thousand) past 1.25×.
pub const DEFAULT_VNODES: u32 = 256;

/// Key-derivation context of a virtual node's position.
pub const VNODE_CONTEXT: &str = "hologram ring-vnode v1";

/// A consistent-hash ring with virtual nodes, keyed by BLAKE3.
///
/// Node `n`'s `i`-th virtual node sits at the first 8 bytes (LE) of
/// BLAKE3-derive("hologram ring-vnode v1", n ‖ i as u32 LE). An address sits
/// at its own first 8 bytes (LE): it is already a BLAKE3 hash. The owners of
/// an address are the first `n` distinct nodes met walking clockwise from
/// it, the primary first. Adding or removing a node moves only the keys
/// whose owner sets it joins or leaves: about `1/nodes` of them.
///
/// ```
/// use hologram_cam::HashRing;
/// use hologram_lattice::{Address, NodeId};
/// let mut ring = HashRing::new();
/// for i in 0..5u8 {
///     ring.add(NodeId::from_bytes([i; 32]));
/// }
/// let owners = ring.owners(&Address::of(b"x"), 3);
/// assert_eq!(owners.len(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct HashRing {
    vnodes: u32,
    points: Vec<(u64, PeerId)>,
    nodes: BTreeSet<PeerId>,
}

impl Default for HashRing {
    fn default() -> Self {
        Self::new()
    }
}

impl HashRing {
    /// An empty ring with [`DEFAULT_VNODES`] virtual nodes per node.
    pub fn new() -> Self {
        Self::with_vnodes(DEFAULT_VNODES)
    }

    /// An empty ring with `vnodes` (at least 1) virtual nodes per node.
    pub fn with_vnodes(vnodes: u32) -> Self {
        Self {
            vnodes: vnodes.max(1),
            points: Vec::new(),
            nodes: BTreeSet::new(),
        }
    }

    /// Adds a node; returns whether it was new.
    pub fn add(&mut self, node: PeerId) -> bool {
        if !self.nodes.insert(node) {
            return false;
        }
        self.points
            .extend((0..self.vnodes).map(|i| (vnode_position(&node, i), node)));
        self.points.sort_unstable();
        true
    }

    /// Removes a node; returns whether it was present.
    pub fn remove(&mut self, node: &PeerId) -> bool {
        if !self.nodes.remove(node) {
            return false;
        }
        self.points.retain(|(_, n)| n != node);
        true
    }

    /// The nodes, in id order.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = PeerId> + '_ {
        self.nodes.iter().copied()
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the ring has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The first `n` distinct nodes clockwise from `address` (fewer if the
    /// ring has fewer), the primary first.
    pub fn owners(&self, address: &Address, n: usize) -> Vec<PeerId> {
        self.owners_at(key_position(address), n)
    }

    /// The primary owner of `address`.
    pub fn primary(&self, address: &Address) -> Option<PeerId> {
        self.owners(address, 1).first().copied()
    }

    fn owners_at(&self, position: u64, n: usize) -> Vec<PeerId> {
        let want = n.min(self.nodes.len());
        let mut owners = Vec::with_capacity(want);
        if want == 0 {
            return owners;
        }
        let start = self.points.partition_point(|&(p, _)| p < position);
        let len = self.points.len();
        for k in 0..len {
            let node = self.points[(start + k) % len].1;
            if !owners.contains(&node) {
                owners.push(node);
                if owners.len() == want {
                    break;
                }
            }
        }
        owners
    }

    /// The nodes that own some key together with `node` when every key has
    /// `n` owners (its ring neighbours), in id order: those anti-entropy
    /// compares `node`'s objects with. Empty when `node` is not on the ring.
    pub fn neighbours(&self, node: &PeerId, n: usize) -> Vec<PeerId> {
        let mut found = BTreeSet::new();
        if self.nodes.contains(node) {
            // Every key on the arc ending at a point has that point's owners.
            for &(position, _) in &self.points {
                let owners = self.owners_at(position, n);
                if owners.contains(node) {
                    found.extend(owners.into_iter().filter(|o| o != node));
                }
            }
        }
        found.into_iter().collect()
    }

    /// Each node's share of the ring when every key has `n` owners: the
    /// fraction of keys it holds, exactly (arc lengths, not samples). The
    /// shares sum to `min(n, nodes)`.
    pub fn shares(&self, n: usize) -> Vec<(PeerId, f64)> {
        let mut share: std::collections::BTreeMap<PeerId, f64> =
            self.nodes.iter().map(|&id| (id, 0.0)).collect();
        let len = self.points.len();
        for k in 0..len {
            let start = if k == 0 {
                self.points[len - 1].0
            } else {
                self.points[k - 1].0
            };
            let arc = self.points[k].0.wrapping_sub(start) as f64 / 2f64.powi(64);
            // Keys on the arc (start, point k] are owned starting at point k.
            for owner in self.owners_at(self.points[k].0, n) {
                if let Some(s) = share.get_mut(&owner) {
                    *s += arc;
                }
            }
        }
        share.into_iter().collect()
    }
}

/// Where a node's `i`-th virtual node sits.
fn vnode_position(node: &PeerId, i: u32) -> u64 {
    let h = blake3::Hasher::new_derive_key(VNODE_CONTEXT)
        .update(node.as_bytes())
        .update(&i.to_le_bytes())
        .finalize();
    first_u64(h.as_bytes())
}

/// Where an address sits.
fn key_position(address: &Address) -> u64 {
    first_u64(address.as_bytes())
}

fn first_u64(bytes: &[u8; 32]) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_lattice::NodeId;
    use proptest::prelude::*;

    fn node(seed: u64, i: u64) -> NodeId {
        NodeId::from_bytes(
            *blake3::hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat()).as_bytes(),
        )
    }

    fn ring(seed: u64, n: u64) -> HashRing {
        let mut r = HashRing::new();
        for i in 0..n {
            r.add(node(seed, i));
        }
        r
    }

    fn keys(n: u32) -> Vec<Address> {
        (0..n).map(|i| Address::of(&i.to_le_bytes())).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn placement_is_balanced(seed in any::<u64>(), n in 3u64..40, replicas in 1usize..4) {
            let r = ring(seed, n);
            let shares = r.shares(replicas);
            let total: f64 = shares.iter().map(|s| s.1).sum();
            prop_assert!((total - replicas.min(n as usize) as f64).abs() < 1e-9);
            let mean = total / n as f64;
            let max = shares.iter().map(|s| s.1).fold(0.0, f64::max);
            // Six standard deviations of a share (1/16 of the mean each, at
            // 256 virtual nodes): a placement past this is a bug, not luck
            // (1.25x, which the first version checked, is about four, and a
            // seeded run found a placement at 1.255x).
            prop_assert!(max <= 1.375 * mean, "max share {max:.4}, mean {mean:.4}");
        }

        #[test]
        fn joins_and_leaves_move_only_what_they_must(seed in any::<u64>(), n in 3u64..20) {
            let before = ring(seed, n);
            let mut after = before.clone();
            let newcomer = node(seed, 1_000);
            after.add(newcomer);
            let keys = keys(4_000);
            let mut moved = 0;
            for k in &keys {
                let (old, new) = (before.owners(k, 3), after.owners(k, 3));
                if old != new {
                    // Only the newcomer takes a place; everyone else keeps order.
                    prop_assert!(new.contains(&newcomer));
                    let rest: Vec<_> = new.iter().filter(|&&p| p != newcomer).copied().collect();
                    prop_assert_eq!(&rest[..], &old[..rest.len()]);
                    moved += 1;
                }
            }
            // About 3/(n+1) of the keys gain the newcomer as one of 3 owners.
            let expected = 3.0 / (n + 1) as f64 * keys.len() as f64;
            prop_assert!((moved as f64) < 1.6 * expected + 50.0, "{moved} moved, ~{expected} expected");
            // Leaving is the inverse: only keys the leaver held move.
            let mut left = after.clone();
            left.remove(&newcomer);
            for k in &keys {
                prop_assert_eq!(left.owners(k, 3), before.owners(k, 3));
            }
        }
    }

    #[test]
    fn owners_are_distinct_and_bounded() {
        let r = ring(1, 4);
        for k in keys(500) {
            let o = r.owners(&k, 10);
            assert_eq!(o.len(), 4);
            let set: BTreeSet<_> = o.iter().collect();
            assert_eq!(set.len(), 4);
            assert_eq!(r.primary(&k), o.first().copied());
        }
        assert!(HashRing::new().owners(&Address::of(b""), 3).is_empty());
        // Neighbours: everyone, in a ring of 4 with 3 owners; with 1 owner,
        // nobody; off the ring, nobody.
        assert_eq!(r.neighbours(&node(1, 0), 3).len(), 3);
        assert!(r.neighbours(&node(1, 0), 1).is_empty());
        assert!(r.neighbours(&node(1, 9), 3).is_empty());
        let mut big = ring(2, 40);
        let me = node(2, 0);
        let neighbours = big.neighbours(&me, 2);
        for k in keys(2_000) {
            let owners = big.owners(&k, 2);
            if owners.contains(&me) {
                assert!(owners.iter().all(|o| *o == me || neighbours.contains(o)));
            }
        }
        big.remove(&me);
        assert!(big.neighbours(&me, 2).is_empty());
        let mut r = r;
        assert!(!r.add(node(1, 0)));
        assert!(r.remove(&node(1, 0)));
        assert!(!r.remove(&node(1, 0)));
        assert_eq!(r.len(), 3);
    }
}
