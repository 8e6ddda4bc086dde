//! Batched lattice distance and k-nearest over 65,536 peers, for every kernel
//! backend.
//!
//! Targets (issue 2): at least 4·10⁹ distances/s, and the 3 nearest of 65,536
//! in at most 20 µs. After criterion's report, `cargo bench --bench distance`
//! prints what it measured against those targets.

#[path = "support/measure.rs"]
mod measure;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use hologram::lattice::Backend;
use hologram::lattice::{Coord, PeerColumns};
use measure::{best_seconds, verdict};
use std::hint::black_box;

const PEERS: u64 = 65_536;

fn peers() -> PeerColumns {
    (0..PEERS)
        .map(|i| Coord::from_index(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 17))
        .collect()
}

fn bench_distance(c: &mut Criterion) {
    let cols = peers();
    let target = Coord::new(17, 99);
    let mut group = c.benchmark_group("distance/65536");
    group.throughput(Throughput::Elements(PEERS));
    for backend in Backend::available() {
        let mut out = Vec::with_capacity(cols.len());
        group.bench_function(BenchmarkId::from_parameter(backend.name()), |b| {
            b.iter(|| backend.distances_into(black_box(target), black_box(&cols), &mut out))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("nearest3/65536");
    group.throughput(Throughput::Elements(PEERS));
    for backend in Backend::available() {
        group.bench_function(BenchmarkId::from_parameter(backend.name()), |b| {
            b.iter(|| backend.nearest(black_box(target), black_box(&cols), 3))
        });
    }
    group.finish();
}

fn check_targets() {
    let cols = peers();
    let best = Backend::best();
    let mut out = Vec::with_capacity(cols.len());
    let targets = [Coord::new(17, 99), Coord::new(0, 0), Coord::new(40, 250)];
    let per_batch = best_seconds(2000, || {
        for t in targets {
            best.distances_into(black_box(t), black_box(&cols), &mut out);
        }
    }) / targets.len() as f64;
    let rate = PEERS as f64 / per_batch;
    let knn = best_seconds(2000, || {
        for t in targets {
            black_box(best.nearest(black_box(t), black_box(&cols), 3));
        }
    }) / targets.len() as f64;
    println!(
        "\nIssue 2 targets ({}, single thread, best of 7 runs):",
        best.name()
    );
    println!(
        "  batched distance: {:.2}·10⁹ distances/s (target 4·10⁹: {})",
        rate / 1e9,
        verdict(rate >= 4e9)
    );
    println!(
        "  3 nearest of 65,536: {:.1} µs (target 20 µs: {})",
        knn * 1e6,
        verdict(knn <= 20e-6)
    );
}

criterion_group!(benches, bench_distance);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        check_targets();
    }
}
