//! Receipt sharding, hot-spot splits and access-driven load balancing.
//!
//! Run it with `cargo run --release --example sharding`.
//!
//! Part 1, `ReceiptSharding`: keys are placed by the R96 digest of their
//! receipt over ranges of the u64 space (SPEC §8). A workload that hammers one
//! shard makes its sustained load exceed 1.2× the target; `rebalance_shards`
//! splits it at the median of the placements it sampled, and only keys of
//! that shard change owner.
//!
//! Part 2, `LoadBalancer` (the chapter's exercise 5): objects all start on
//! one node; access counts taken from receipts move hot objects to idle
//! nodes, with hysteresis and a cooldown so placement settles instead of
//! oscillating. Reads are served throughout (old node while copying, new
//! node after the switch).

use hologram::lattice::NodeId;
use hologram::receipt::Receipt;
use hologram::txn::{BalancerConfig, Key, LoadBalancer, ReceiptSharding, ShardMap, ShardingConfig};
use std::collections::BTreeMap;

fn node(i: u8) -> NodeId {
    NodeId::from_bytes([i; 32])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // --- Part 1: a hot shard splits ------------------------------------------
    let map = ShardMap::even(&[node(1), node(2), node(3), node(4)]);
    let mut sharding = ReceiptSharding::new(map.clone(), ShardingConfig::default());
    let keys: Vec<Key> = (0..20_000u32)
        .map(|i| Key::new(format!("user-{i}").into_bytes()))
        .collect::<Result<_, _>>()?;
    let hot = map.shard_of(&keys[0]);
    // Three windows of load: every key once, the hot shard's keys 4 more times.
    for _ in 0..3 {
        for key in &keys {
            let times = if map.shard_of(key) == hot { 5 } else { 1 };
            for _ in 0..times {
                sharding.record(&key.receipt());
            }
        }
        sharding.end_window();
    }
    println!(
        "shard loads (sustained accesses per window; target {:.0}):",
        sharding.target_load()
    );
    for (shard, start, end, owner) in sharding.map().shards() {
        let load = sharding.load(shard).map_or(0.0, |l| l.sustained);
        let owner = owner.map_or(0, |n| n.as_bytes()[0]);
        println!("  shard {shard:?} [{start:#018x}, {end:#018x}] on node {owner}: {load:.0}");
    }
    let splits = sharding.rebalance_shards(|_| node(5))?;
    for split in &splits {
        println!(
            "split {:?} at {:#018x}: the upper half is new shard {:?} on node 5",
            split.shard, split.at, split.new_shard
        );
    }
    let after = sharding.map();
    let mut moved_from: BTreeMap<bool, usize> = BTreeMap::new();
    for key in &keys {
        if map.node_of(key) != after.node_of(key) {
            *moved_from.entry(map.shard_of(key) == hot).or_default() += 1;
        }
    }
    let hot_keys = keys.iter().filter(|k| map.shard_of(k) == hot).count();
    println!(
        "keys that changed owner: {} of the hot shard's {hot_keys}, {} of the other shards' {}",
        moved_from.get(&true).unwrap_or(&0),
        moved_from.get(&false).unwrap_or(&0),
        keys.len() - hot_keys
    );
    assert_eq!(
        moved_from.get(&false),
        None,
        "only the split shard's keys move"
    );
    assert!(!splits.is_empty(), "the hot shard split");

    // --- Part 2: hot objects spread out --------------------------------------
    let mut balancer = LoadBalancer::new(BalancerConfig::default());
    let nodes = [node(1), node(2), node(3)];
    for n in nodes {
        balancer.add_node(n);
    }
    let objects: Vec<Receipt> = (0..24u32)
        .map(|i| Receipt::from_bytes(format!("object {i}").as_bytes()))
        .collect();
    for o in &objects {
        balancer.place(o.content, nodes[0]);
    }
    println!("\nload per node (accesses per epoch), all objects starting on node 1:");
    let mut history = Vec::new();
    for epoch in 0..10 {
        // Object i is read (i % 6) + 1 times an epoch: some hot, some cold.
        for (i, o) in objects.iter().enumerate() {
            for _ in 0..=(i % 6) {
                balancer.record(o);
                assert!(
                    !balancer.read_targets(&o.content).is_empty(),
                    "always readable"
                );
            }
        }
        let planned = balancer.end_epoch();
        // Carry the moves out: copy, switch reads, drop the old copy.
        for m in &planned {
            balancer.copied(&m.object);
            balancer.finished(&m.object);
        }
        let loads: Vec<f64> = nodes.iter().map(|n| balancer.node_load(n)).collect();
        println!(
            "  epoch {epoch}: {:>5.1} {:>5.1} {:>5.1}   ({} objects moved)",
            loads[0],
            loads[1],
            loads[2],
            planned.len()
        );
        history.push(planned.len());
    }
    let settled = history.iter().rev().take(3).all(|&n| n == 0);
    println!("placement settled (no moves in the last 3 epochs): {settled}");
    assert!(settled, "the balancer keeps moving objects");
    let counts: BTreeMap<u8, usize> = objects.iter().fold(BTreeMap::new(), |mut m, o| {
        if let Some(n) = balancer.node_of(&o.content) {
            *m.entry(n.as_bytes()[0]).or_default() += 1;
        }
        m
    });
    println!("objects per node: {counts:?}");
    Ok(())
}
