//! Keys placed on shards by ranges of the u64 space (SPEC §8); load
//! statistics and splits are [`ReceiptSharding`](crate::ReceiptSharding)'s.
//!
//! A key's placement is `receipt.r96.as_u64()` ([`Key::placement`]). The
//! [`ShardMap`] cuts the u64 space into contiguous ranges, each owned by one
//! shard, and each shard is served by one node (later: one replicated group).
//! Every change bumps the map's version; a participant checks every key of a
//! request against its own map and refuses one it does not own with
//! [`TxnError::StaleShardMap`], so a request routed with a stale map is
//! retried, never applied on the wrong shard.

use crate::{Key, Op, TxnError};
use hologram_lattice::NodeId;
use hologram_receipt::Receipt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most shards a map holds.
pub const MAX_SHARDS: usize = 4096;

/// A shard's number.
pub type ShardId = u32;

/// Ranges of the u64 placement space, each owned by a shard and served by a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    version: u64,
    /// Start of each range → its shard. The first range starts at 0; each
    /// runs to the next start (the last to `u64::MAX`).
    starts: BTreeMap<u64, ShardId>,
    /// Shard → the node serving it.
    nodes: BTreeMap<ShardId, NodeId>,
}

impl ShardMap {
    /// `nodes.len()` shards of equal ranges, shard `i` on `nodes[i]`, version 1.
    /// Empty input gives one shard on no node (every lookup fails).
    pub fn even(nodes: &[NodeId]) -> Self {
        let n = nodes.len().max(1) as u128;
        let mut map = ShardMap {
            version: 1,
            starts: BTreeMap::new(),
            nodes: BTreeMap::new(),
        };
        for (i, node) in nodes.iter().enumerate() {
            let start = ((i as u128) << 64) / n;
            map.starts.insert(start as u64, i as ShardId);
            map.nodes.insert(i as ShardId, *node);
        }
        if map.starts.is_empty() {
            map.starts.insert(0, 0);
        }
        map
    }

    /// Checks what a decoded map must hold: a range starting at 0 and at
    /// most [`MAX_SHARDS`] shards.
    pub fn check(&self) -> Result<(), TxnError> {
        crate::types::bound("shard map", self.starts.len(), MAX_SHARDS)?;
        crate::types::bound("shard map", self.nodes.len(), MAX_SHARDS)?;
        if !self.starts.contains_key(&0) {
            return Err(TxnError::Decode {
                what: "shard map",
                reason: "no range starts at 0".into(),
            });
        }
        Ok(())
    }

    /// Appends the map's canonical bytes (what a hand-off signs):
    /// `version u64 ‖ n u32 ‖ n × (start u64 ‖ shard u32) ‖ m u32 ‖
    /// m × (shard u32 ‖ node 32)`, ranges by start, nodes by shard.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        // `check` bounds both counts by MAX_SHARDS, far below u32::MAX.
        out.extend_from_slice(&(self.starts.len() as u32).to_le_bytes());
        for (start, shard) in &self.starts {
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&shard.to_le_bytes());
        }
        out.extend_from_slice(&(self.nodes.len() as u32).to_le_bytes());
        for (shard, node) in &self.nodes {
            out.extend_from_slice(&shard.to_le_bytes());
            out.extend_from_slice(node.as_bytes());
        }
    }

    /// The map's version: it grows with every change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The shard holding `placement`.
    pub fn shard_at(&self, placement: u64) -> ShardId {
        self.starts
            .range(..=placement)
            .next_back()
            .map_or(0, |(_, &s)| s)
    }

    /// The shard of a receipt: by `receipt.r96.as_u64()` (the chapter's `compute_shard`).
    pub fn compute_shard(&self, receipt: &Receipt) -> ShardId {
        self.shard_at(receipt.r96.as_u64())
    }

    /// The shard of a key.
    pub fn shard_of(&self, key: &Key) -> ShardId {
        self.shard_at(key.placement())
    }

    /// The node serving a shard.
    pub fn node(&self, shard: ShardId) -> Option<NodeId> {
        self.nodes.get(&shard).copied()
    }

    /// The node serving a key.
    pub fn node_of(&self, key: &Key) -> Option<NodeId> {
        self.node(self.shard_of(key))
    }

    /// Every shard with its range `[start, end]` (inclusive) and node.
    pub fn shards(&self) -> Vec<(ShardId, u64, u64, Option<NodeId>)> {
        let mut out = Vec::with_capacity(self.starts.len());
        let mut iter = self.starts.iter().peekable();
        while let Some((&start, &shard)) = iter.next() {
            let end = iter.peek().map_or(u64::MAX, |(&next, _)| next - 1);
            out.push((shard, start, end, self.node(shard)));
        }
        out
    }

    /// The range `[start, end]` of a shard.
    pub fn range(&self, shard: ShardId) -> Option<(u64, u64)> {
        self.shards()
            .into_iter()
            .find(|s| s.0 == shard)
            .map(|(_, start, end, _)| (start, end))
    }

    /// The number of shards.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether the map has no shards (never true: the space is always covered).
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Splits `shard` at `at` (a placement strictly inside its range): the
    /// placements from `at` to the range's end become a new shard served by
    /// `node`. Returns the new shard's id. Bumps the version.
    pub fn split(&mut self, shard: ShardId, at: u64, node: NodeId) -> Result<ShardId, TxnError> {
        let (start, end) = self.range(shard).ok_or(TxnError::UnknownShard(shard))?;
        if at <= start || at > end {
            return Err(TxnError::BadSplitPoint { shard, at });
        }
        let new = self.nodes.keys().next_back().map_or(0, |&s| s + 1);
        self.starts.insert(at, new);
        self.nodes.insert(new, node);
        self.version += 1;
        Ok(new)
    }

    /// Moves a shard to another node. Bumps the version.
    pub fn assign(&mut self, shard: ShardId, node: NodeId) -> Result<(), TxnError> {
        let slot = self
            .nodes
            .get_mut(&shard)
            .ok_or(TxnError::UnknownShard(shard))?;
        *slot = node;
        self.version += 1;
        Ok(())
    }

    /// Groups a transaction's ops by the node serving each key, keeping
    /// their order. Fails with [`TxnError::UnknownShard`] when a shard has
    /// no node.
    pub fn route(&self, ops: Vec<Op>) -> Result<BTreeMap<NodeId, Vec<Op>>, TxnError> {
        let mut out: BTreeMap<NodeId, Vec<Op>> = BTreeMap::new();
        for op in ops {
            let shard = self.shard_of(op.key());
            let node = self.node(shard).ok_or(TxnError::UnknownShard(shard))?;
            out.entry(node).or_default().push(op);
        }
        Ok(out)
    }
}
