//! `route_to_address` at 100,000 and 1,000,000 peers, beside the brute-force
//! SIMD scan over all peers (`PeerColumns::nearest`).
//!
//! Targets (issue 4): median at most 1 µs at 100,000 peers and 2 µs at
//! 1,000,000. After criterion's report, `cargo bench --bench routing` prints
//! the medians it measured against those targets.

#[path = "../tests/support/discovery_net.rs"]
mod discovery_net;

use criterion::{criterion_group, BenchmarkId, Criterion};
use hologram::lattice::routing::RoutingTable;
use hologram::lattice::LatticeRouter;
use hologram::lattice::{Address, NodeId, PeerColumns};
use rand::RngExt;
use std::hint::black_box;
use std::time::Instant;

fn node(i: u64) -> NodeId {
    NodeId::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

struct Setup {
    router: LatticeRouter,
    columns: PeerColumns,
    ids: Vec<NodeId>,
    targets: Vec<Address>,
}

fn setup(peers: u64) -> Setup {
    let mut ids: Vec<NodeId> = (0..peers).map(node).collect();
    ids.sort();
    let table = RoutingTable::from_sites(ids.iter().map(|&id| (id, id.coord())));
    let columns = ids.iter().map(|id| id.coord()).collect();
    let targets = (0..1024u32)
        .map(|i| Address::of(&i.to_le_bytes()))
        .collect();
    Setup {
        router: LatticeRouter::with_table(node(u64::MAX), table),
        columns,
        ids,
        targets,
    }
}

const SIZES: [u64; 2] = [100_000, 1_000_000];

fn bench_routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_to_address");
    for peers in SIZES {
        let s = setup(peers);
        let mut i = 0;
        group.bench_function(BenchmarkId::new("page index", peers), |b| {
            b.iter(|| {
                i = (i + 1) % s.targets.len();
                black_box(s.router.route_to_address(black_box(&s.targets[i])))
            })
        });
        group.bench_function(BenchmarkId::new("SIMD scan of all peers", peers), |b| {
            b.iter(|| {
                i = (i + 1) % s.targets.len();
                let near = s.columns.nearest(black_box(s.targets[i].coord()), 3);
                black_box(near.iter().map(|n| s.ids[n.index]).collect::<Vec<_>>())
            })
        });
    }
    group.finish();
}

/// Lookups in the simulated 1,000-node discovery network (10% Byzantine),
/// one at a time, each run until the network is quiet.
fn bench_lookups(c: &mut Criterion) {
    let mut net = discovery_net::build(1, 1_000);
    let honest = net.honest();
    let mut group = c.benchmark_group("simulated lookups/1000 nodes");
    group.bench_function("one lookup, 10% Byzantine", |b| {
        b.iter(|| {
            let who = honest[net.rng.random_range(0..honest.len())];
            let target = hologram::lattice::Coord::from_index(net.rng.random_range(0..12_288));
            net.start_lookup(who, target);
            let deadline = net.sim.now() + 60_000;
            net.sim.run_until_quiet(deadline).expect("invariant holds");
        })
    });
    group.finish();
}

fn check_targets() {
    println!("\nIssue 4 targets (median of single route_to_address calls):");
    for (peers, target_us) in SIZES.into_iter().zip([1.0, 2.0]) {
        let s = setup(peers);
        let mut samples: Vec<f64> = Vec::with_capacity(20_000);
        for round in 0..20 {
            for t in &s.targets {
                let start = Instant::now();
                black_box(s.router.route_to_address(black_box(t)));
                let ns = start.elapsed().as_nanos() as f64;
                if round > 0 {
                    samples.push(ns);
                }
            }
        }
        samples.sort_by(f64::total_cmp);
        let median_us = samples[samples.len() / 2] / 1e3;
        println!(
            "  {peers} peers: median {median_us:.3} µs (target {target_us} µs: {})",
            if median_us <= target_us {
                "met"
            } else {
                "NOT MET"
            }
        );
    }
}

criterion_group!(benches, bench_routing, bench_lookups);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        check_targets();
    }
}
