use super::*;
use crate::NodeId;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

fn id(n: u32) -> NodeId {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&n.to_be_bytes());
    NodeId::from_bytes(b)
}

/// Every node reachable from node 0 over neighbour links taken both ways.
fn connected(nodes: &[AdaptiveTopology]) -> bool {
    let n = nodes.len();
    let index = |p: NodeId| u32::from_be_bytes(p.as_bytes()[..4].try_into().unwrap()) as usize;
    let mut adj = vec![BTreeSet::new(); n];
    for (i, t) in nodes.iter().enumerate() {
        for p in t.neighbours() {
            adj[i].insert(index(p));
            adj[index(p)].insert(i);
        }
    }
    let mut seen = vec![false; n];
    let mut queue = VecDeque::from([0]);
    seen[0] = true;
    while let Some(i) = queue.pop_front() {
        for &j in &adj[i] {
            if !seen[j] {
                seen[j] = true;
                queue.push_back(j);
            }
        }
    }
    seen.iter().all(|&s| s)
}

#[test]
fn a_third_made_slow_is_dropped_without_losing_connectivity_or_degree() {
    crate::sim::check_seeds("adaptive topology", 4, |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = 60u32;
        let slow = |p: u32| p.is_multiple_of(3);
        let config = TopologyConfig::default();
        let mut nodes: Vec<AdaptiveTopology> = (0..n)
            .map(|i| {
                let mut t = AdaptiveTopology::new(id(i), config.clone());
                while t.degree() < config.target_degree {
                    t.connect(id(rng.random_range(0..n)));
                }
                t
            })
            .collect();
        let mut changes_per_round = Vec::new();
        for round in 0..60 {
            let mut changes = 0;
            for t in nodes.iter_mut() {
                let peers: Vec<NodeId> = t.neighbours().collect();
                for p in peers {
                    let k = u32::from_be_bytes(p.as_bytes()[..4].try_into().unwrap());
                    for _ in 0..4 {
                        let ms = if slow(k) {
                            rng.random_range(80..120)
                        } else {
                            rng.random_range(5..15)
                        };
                        t.record_latency(&p, Duration::from_millis(ms));
                    }
                }
                let candidates: Vec<NodeId> = (0..6).map(|_| id(rng.random_range(0..n))).collect();
                let change = t.optimize_topology(candidates);
                changes += change.dropped.len() + change.added.len();
                if t.degree() < config.min_degree {
                    return Err(format!(
                        "round {round}: degree {} under the minimum",
                        t.degree()
                    ));
                }
            }
            if !connected(&nodes) {
                return Err(format!("round {round}: the topology fell apart"));
            }
            changes_per_round.push(changes);
        }
        let slow_links: usize = nodes
            .iter()
            .map(|t| {
                t.neighbours()
                    .filter(|p| slow(u32::from_be_bytes(p.as_bytes()[..4].try_into().unwrap())))
                    .count()
            })
            .sum();
        let links: usize = nodes.iter().map(AdaptiveTopology::degree).sum();
        // At the start a third of the links are slow; at the end, almost none.
        if slow_links * 20 > links {
            return Err(format!("{slow_links} of {links} links still slow"));
        }
        // Hysteresis: the last rounds change (almost) nothing.
        let late: usize = changes_per_round[50..].iter().sum();
        if late > 3 {
            return Err(format!(
                "still flapping: {late} changes in the last 10 rounds"
            ));
        }
        Ok(())
    });
}

#[test]
fn never_under_min_degree_and_cooling_peers_stay_out() {
    let config = TopologyConfig {
        min_degree: 3,
        target_degree: 4,
        ..TopologyConfig::default()
    };
    let mut t = AdaptiveTopology::new(id(0), config);
    for p in 1..=4 {
        t.connect(id(p));
    }
    assert!(!t.connect(id(0)));
    for round in 0..5 {
        for p in 1..=4 {
            let ms = if p == 4 { 500 } else { 10 };
            for _ in 0..10 {
                t.record_latency(&id(p), Duration::from_millis(ms));
            }
        }
        let change = t.optimize_topology([id(4), id(5)]);
        if round == 0 {
            assert!(change.dropped.is_empty(), "one slow round is not enough");
        }
        assert!(t.degree() >= 3);
    }
    assert!(!t.is_neighbour(&id(4)));
    assert!(t.is_neighbour(&id(5)));
    // id(4) is cooling: offered again, it is not taken back.
    t.optimize_topology([id(4)]);
    assert!(!t.is_neighbour(&id(4)));
}
