//! Object stores: `MemoryStore` put and get, `RedbStore` batched puts.
//!
//! Targets (issue 5), for 1 KiB objects:
//! - `MemoryStore::put` (including `Object::new`, i.e. hashing) at least 60%
//!   of the rate of bare `blake3::hash` on the same objects;
//! - a `MemoryStore::get` hit in at most 200 ns;
//! - `RedbStore::put_batch` of 1,000 objects per batch (one durable
//!   transaction each) at least 50,000 objects/s.
//!
//! `RedbStore::get` is measured too, for information.
//!
//! The stores' futures complete on their first poll, so they are polled once
//! with `now_or_never`. After criterion's report, `cargo bench --bench cam`
//! prints the figures it measured against those targets.

#[path = "support/measure.rs"]
mod measure;

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use futures::FutureExt;
use hologram::cam::{MemoryStore, RedbStore};
use hologram::cam::{Object, Store};
use hologram::lattice::Address;
use measure::{best_seconds, random_bytes, verdict};
use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const OBJECT: usize = 1024;
const BATCH: usize = 1000;

/// `n` distinct 1 KiB buffers.
fn buffers(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let all = random_bytes(n * OBJECT, seed);
    all.chunks(OBJECT).map(<[u8]>::to_vec).collect()
}

fn put_all(store: &MemoryStore, buffers: Vec<Vec<u8>>) {
    for bytes in buffers {
        store
            .put(Object::new(bytes))
            .now_or_never()
            .unwrap()
            .unwrap();
    }
}

fn get(store: &impl Store, address: &Address) -> Option<Object> {
    store.get(address).now_or_never().unwrap().unwrap()
}

/// A store file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("hologram-bench-{name}-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Fresh objects, different from all made before by this generator.
struct Fresh(u64);

impl Fresh {
    fn batch(&mut self) -> Vec<Object> {
        self.0 += 1;
        buffers(BATCH, self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
            .into_iter()
            .map(Object::new)
            .collect()
    }
}

fn bench_put(c: &mut Criterion) {
    let data = buffers(BATCH, 0x1234_5678);
    let mut group = c.benchmark_group("cam/put_1KiB");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("blake3::hash", |b| {
        b.iter(|| {
            for bytes in &data {
                black_box(blake3::hash(black_box(bytes)));
            }
        })
    });
    group.bench_function("MemoryStore::put(Object::new)", |b| {
        b.iter_batched(
            || (MemoryStore::new(), data.clone()),
            |(store, data)| {
                put_all(&store, data);
                store
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn bench_get(c: &mut Criterion) {
    let data = buffers(10_000, 0x8765_4321);
    let store = MemoryStore::new();
    put_all(&store, data.clone());
    let map: HashMap<Address, Object> = data
        .into_iter()
        .map(|bytes| {
            let object = Object::new(bytes);
            (object.address(), object)
        })
        .collect();
    let addresses: Vec<Address> = map.keys().copied().collect();

    let mut group = c.benchmark_group("cam/get_hit_1KiB");
    let mut i = 0;
    group.bench_function("HashMap::get(..).cloned()", |b| {
        b.iter(|| {
            i = (i + 1) % addresses.len();
            black_box(map.get(&addresses[i]).cloned())
        })
    });
    group.bench_function("MemoryStore::get", |b| {
        b.iter(|| {
            i = (i + 1) % addresses.len();
            black_box(get(&store, &addresses[i]))
        })
    });
    group.finish();
}

fn bench_redb(c: &mut Criterion) {
    let file = TempFile::new("put-batch");
    let store = RedbStore::create(&file.0).unwrap();
    let mut fresh = Fresh(0);
    let mut group = c.benchmark_group("cam/redb_put_batch_1000x1KiB");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("RedbStore::put_batch", |b| {
        b.iter_batched(
            || fresh.batch(),
            |batch| store.put_batch(batch).now_or_never().unwrap().unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();

    // For information (no target): a get hit, in a store of 10,000 objects,
    // reads the object's segment and re-hashes the object.
    let file = TempFile::new("get");
    let store = RedbStore::create(&file.0).unwrap();
    for _ in 0..10 {
        store
            .put_batch(fresh.batch())
            .now_or_never()
            .unwrap()
            .unwrap();
    }
    let addresses = store
        .scan(None, usize::MAX)
        .now_or_never()
        .unwrap()
        .unwrap();
    let mut group = c.benchmark_group("cam/redb_get_hit_1KiB");
    let mut i = 0;
    group.bench_function("RedbStore::get", |b| {
        b.iter(|| {
            i = (i + 1) % addresses.len();
            black_box(get(&store, &addresses[i]))
        })
    });
    group.finish();
}

fn check_targets() {
    println!("\nIssue 5 targets (1 KiB objects, single thread):");

    // (a) put beside hashing, on the same 20,000 objects.
    let data = buffers(20_000, 0x5555_aaaa);
    let hash = best_seconds(1, || {
        for bytes in &data {
            black_box(blake3::hash(black_box(bytes)));
        }
    });
    let mut put = Duration::MAX;
    for _ in 0..7 {
        let (store, data) = (MemoryStore::new(), data.clone());
        let start = Instant::now();
        put_all(&store, data);
        put = put.min(start.elapsed());
    }
    let n = data.len() as f64;
    let put = put.as_secs_f64();
    println!(
        "  MemoryStore::put {:.2} M objects/s, blake3::hash {:.2} M objects/s: {:.0}% (target ≥ 60%: {})",
        n / put / 1e6,
        n / hash / 1e6,
        100.0 * hash / put,
        verdict(hash / put >= 0.6),
    );

    // (b) get hits, cycling over 10,000 stored objects.
    let store = MemoryStore::new();
    put_all(&store, buffers(10_000, 0x7777_3333));
    let addresses = store
        .scan(None, usize::MAX)
        .now_or_never()
        .unwrap()
        .unwrap();
    let mut i = 0;
    let get_ns = 1e9
        * best_seconds(1_000_000, || {
            i = (i + 1) % addresses.len();
            black_box(get(&store, &addresses[i]));
        });
    println!(
        "  MemoryStore::get hit {get_ns:.0} ns (target ≤ 200 ns: {})",
        verdict(get_ns <= 200.0)
    );

    // (c) 20 durable batches of 1,000 fresh objects.
    let file = TempFile::new("targets");
    let store = RedbStore::create(&file.0).unwrap();
    let mut fresh = Fresh(1 << 32);
    let batches: Vec<Vec<Object>> = (0..20).map(|_| fresh.batch()).collect();
    let objects = (batches.len() * BATCH) as f64;
    let start = Instant::now();
    for batch in batches {
        store.put_batch(batch).now_or_never().unwrap().unwrap();
    }
    let rate = objects / start.elapsed().as_secs_f64();
    println!(
        "  RedbStore::put_batch(1,000) {:.0} objects/s over 20 batches (target ≥ 50,000: {})",
        rate,
        verdict(rate >= 50_000.0)
    );
}

criterion_group!(benches, bench_put, bench_get, bench_redb);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        check_targets();
    }
}
