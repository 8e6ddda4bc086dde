//! R96 digest beside BLAKE3 on the same buffers, for every kernel backend.
//!
//! Target (issue 2): the best backend's R96 digest reaches at least 1.5× the
//! single-thread throughput of `blake3::hash`, and beats the scalar reference.
//! After criterion's report, `cargo bench --bench r96` prints the ratios it
//! measured against those targets.

#[path = "support/measure.rs"]
mod measure;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use hologram::lattice::Backend;
use hologram::lattice::R96Histogram;
use measure::{best_seconds, random_bytes, verdict};
use std::hint::black_box;

fn r96_digest(backend: Backend, data: &[u8]) -> [u8; 32] {
    let mut counts = [0u64; 96];
    backend.r96_histogram(data, &mut counts);
    R96Histogram::from_counts(counts).digest().to_bytes()
}

const SIZES: [(usize, &str); 2] = [(64 * 1024, "64KiB"), (1024 * 1024, "1MiB")];

fn bench_r96(c: &mut Criterion) {
    for (size, label) in SIZES {
        let data = random_bytes(size, 0x9e37_79b9_7f4a_7c15);
        let mut group = c.benchmark_group(format!("r96_digest/{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter("blake3::hash"),
            &data,
            |b, d| b.iter(|| blake3::hash(black_box(d))),
        );
        for backend in Backend::available() {
            group.bench_with_input(
                BenchmarkId::from_parameter(backend.name()),
                &data,
                |b, d| b.iter(|| r96_digest(backend, black_box(d))),
            );
        }
        group.finish();
    }
}

/// Bytes per second of `f` on `data`, best of 7 runs of about 64 MiB.
fn throughput(data: &[u8], f: impl Fn(&[u8])) -> f64 {
    let reps = (64 * 1024 * 1024 / data.len()).max(4) as u32;
    data.len() as f64 / best_seconds(reps, || f(black_box(data)))
}

fn check_targets() {
    println!("\nIssue 2 targets (single thread, best of 7 runs):");
    for (size, label) in SIZES {
        let data = random_bytes(size, 0x1234_5678);
        let blake = throughput(&data, |d| {
            black_box(blake3::hash(d));
        });
        let best = Backend::best();
        let fast = throughput(&data, |d| {
            black_box(r96_digest(best, d));
        });
        let scalar = throughput(&data, |d| {
            black_box(r96_digest(Backend::SCALAR, d));
        });
        println!(
            "  {label}: blake3 {:.2} GB/s, r96 {} {:.2} GB/s ({:.2}× blake3, target 1.5×: {}), scalar {:.2} GB/s (faster than scalar: {})",
            blake / 1e9,
            best.name(),
            fast / 1e9,
            fast / blake,
            verdict(fast >= 1.5 * blake),
            scalar / 1e9,
            verdict(fast > scalar),
        );
    }
}

criterion_group!(benches, bench_r96);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        check_targets();
    }
}
