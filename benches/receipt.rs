//! Receipts and authenticated messages beside the obvious alternatives.
//!
//! Targets (issue 3):
//! - `ReceiptBuilder` on 1 MiB reaches at least 0.6× the throughput of
//!   `blake3::hash` on the same buffer (one pass over the data, not two).
//! - Verifying an `AuthenticatedMessage` of 1 KiB forwarded over 4 hops (5
//!   signatures, checked in one batch) is clearly faster than 5 single
//!   signature verifications.
//!
//! After criterion's report, `cargo bench --bench receipt` prints the ratios
//! it measured against those targets.

#[path = "support/measure.rs"]
mod measure;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use hologram::lattice::NodeId;
use hologram::lattice::{Address, R96Digest};
use hologram::receipt::{
    verify_signature, AuthenticatedMessage, KeyPair, Purpose, ReceiptBuilder, Signature,
};
use measure::{best_seconds, random_bytes, verdict};
use std::hint::black_box;

const MIB: usize = 1024 * 1024;
const HOPS: usize = 4;

fn build_receipt(mut b: ReceiptBuilder, data: &[u8]) -> hologram::receipt::Receipt {
    b.update(data);
    b.finish()
}

/// A 1 KiB message from node 0, forwarded over `HOPS` hops.
fn forwarded_message() -> AuthenticatedMessage {
    let keys: Vec<KeyPair> = (0..=HOPS as u8)
        .map(|i| KeyPair::from_seed([i + 1; 32]))
        .collect();
    let mut msg = AuthenticatedMessage::new(random_bytes(1024, 7), &keys[0]).unwrap();
    for i in 0..HOPS {
        msg = msg.forward(keys[i + 1].node_id(), &keys[i]).unwrap();
    }
    msg
}

/// `HOPS + 1` independent signatures to verify one at a time.
fn single_signatures() -> Vec<(NodeId, Vec<u8>, Signature)> {
    (0..=HOPS as u8)
        .map(|i| {
            let keys = KeyPair::from_seed([i + 1; 32]);
            let bytes = vec![i; 104];
            let sig = keys.sign(Purpose::WitnessHop, &bytes);
            (keys.node_id(), bytes, sig)
        })
        .collect()
}

fn verify_singles(sigs: &[(NodeId, Vec<u8>, Signature)]) {
    for (id, bytes, sig) in sigs {
        verify_signature(id, Purpose::WitnessHop, bytes, sig).unwrap();
    }
}

fn bench_builder(c: &mut Criterion) {
    let data = random_bytes(MIB, 0x9e37_79b9_7f4a_7c15);
    let mut group = c.benchmark_group("receipt_builder/1MiB");
    group.throughput(Throughput::Bytes(MIB as u64));
    group.bench_with_input(
        BenchmarkId::from_parameter("blake3::hash"),
        &data,
        |b, d| b.iter(|| blake3::hash(black_box(d))),
    );
    group.bench_with_input(
        BenchmarkId::from_parameter("ReceiptBuilder (two threads)"),
        &data,
        |b, d| b.iter(|| build_receipt(ReceiptBuilder::new(), black_box(d))),
    );
    group.bench_with_input(
        BenchmarkId::from_parameter("ReceiptBuilder::single_threaded"),
        &data,
        |b, d| b.iter(|| build_receipt(ReceiptBuilder::single_threaded(), black_box(d))),
    );
    group.bench_with_input(
        BenchmarkId::from_parameter("two passes (Address::of + R96Digest::of)"),
        &data,
        |b, d| b.iter(|| (Address::of(black_box(d)), R96Digest::of(black_box(d)))),
    );
    group.finish();
}

fn bench_message(c: &mut Criterion) {
    let msg = forwarded_message();
    let singles = single_signatures();
    let mut group = c.benchmark_group("authenticated_message/1KiB_4hops");
    group.bench_function("AuthenticatedMessage::verify (batch)", |b| {
        b.iter(|| black_box(&msg).verify().unwrap())
    });
    group.bench_function("5 × verify_signature (strict)", |b| {
        b.iter(|| verify_singles(black_box(&singles)))
    });
    group.finish();
}

fn check_targets() {
    println!("\nIssue 3 targets (best of 7 runs):");
    let data = random_bytes(MIB, 0x1234_5678);
    let blake = MIB as f64
        / best_seconds(64, || {
            black_box(blake3::hash(black_box(&data)));
        });
    for (name, make) in [
        (
            "ReceiptBuilder",
            ReceiptBuilder::new as fn() -> ReceiptBuilder,
        ),
        (
            "ReceiptBuilder::single_threaded",
            ReceiptBuilder::single_threaded,
        ),
    ] {
        let builder = MIB as f64
            / best_seconds(64, || {
                black_box(build_receipt(make(), black_box(&data)));
            });
        println!(
            "  {name} 1MiB: {:.2} GB/s, blake3 (one thread) {:.2} GB/s ({:.2}× blake3, target 0.6×: {})",
            builder / 1e9,
            blake / 1e9,
            builder / blake,
            verdict(builder >= 0.6 * blake),
        );
    }
    let msg = forwarded_message();
    let singles = single_signatures();
    let batch = best_seconds(200, || black_box(&msg).verify().unwrap());
    let single = best_seconds(200, || verify_singles(black_box(&singles)));
    println!(
        "  AuthenticatedMessage 1KiB × 4 hops verify: {:.1} µs, 5 single verifications {:.1} µs ({:.2}× faster, target clearly faster: {})",
        batch * 1e6,
        single * 1e6,
        single / batch,
        verdict(single / batch >= 1.2),
    );
}

criterion_group!(benches, bench_builder, bench_message);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        check_targets();
    }
}
