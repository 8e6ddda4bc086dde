//! The CAM over the in-memory network: verified remote `get` of 1 MiB,
//! `DeduplicationNetwork` puts (5 nodes, N = 3, 1 KiB), and the
//! deduplication ratio of versioned files with small edits.
//!
//! Targets (issue 5): remote get at least 1 GB/s; at least 100,000 puts/s.
//! After criterion's report, `cargo bench --bench cam_network` prints the
//! measured figures against them, and the deduplication ratio.
//!
//! Puts are measured one at a time and the way a real client stores many
//! objects: several in flight at once (`buffer_unordered`) from one thread
//! per core, all sharing one `DeduplicationNetwork` client. The memory
//! network answers at once, so a thread's futures complete when first
//! polled and the parallelism is that of the threads. The target is checked
//! on the concurrent figures: `store_unique` calls, and `store_many` calls of
//! 64 objects (one request per owner instead of one per object and owner).
//!
//! Issue 22 targets, printed after those: the time anti-entropy takes to
//! bring 100,000 objects of 1 KiB back to N = 3 after one of five holders
//! is lost (at most 30 s), and a holder's scrub throughput over a redb file
//! while it serves reads, beside BLAKE3's rate on the same objects measured
//! in the same run (at least half of it). `HOLOGRAM_BENCH_HEAL_ONLY=1`
//! prints only these; `HOLOGRAM_BENCH_HEAL_ONLY=scrub` only the scrub's.

#[path = "support/measure.rs"]
mod measure;

use criterion::{criterion_group, Criterion, Throughput};
use futures::executor::block_on;
use futures::stream::{self, StreamExt};
use hologram::cam::dedup::{DedupMessage, Request};
use hologram::cam::ChunkParams;
use hologram::cam::MemoryStore;
use hologram::cam::{
    CamHandler, DedupHandler, DeduplicationNetwork, DistributedCAM, HashRing, Object,
    ProviderRecords, RedbStore, Store, DEDUP_PROTOCOL,
};
use hologram::lattice::transport::{Handler, MemoryNetwork, MemoryTransport};
use hologram::lattice::LatticeRouter;
use hologram::lattice::{Address, NodeId};
use measure::{best_seconds, cpu_seconds, random_bytes, verdict};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

type Cam = DistributedCAM<MemoryStore>;

/// Two CAM nodes; node 0 holds a 1 MiB object.
fn two_cams() -> (Cam, Cam, Address) {
    let network = MemoryNetwork::new(1);
    let ids = [NodeId::from_bytes([1; 32]), NodeId::from_bytes([2; 32])];
    let cams: Vec<Cam> = ids
        .iter()
        .map(|&id| {
            let store = Arc::new(MemoryStore::new());
            let providers = ProviderRecords::new(1024);
            let transport = network.join(
                id,
                Arc::new(CamHandler::new(Arc::clone(&store), providers.clone())),
            );
            let mut router = LatticeRouter::new(id);
            for &other in &ids {
                if other != id {
                    router.table_mut().insert(other);
                }
            }
            DistributedCAM::new(
                id,
                store,
                Arc::new(transport),
                Arc::new(RwLock::new(router)),
                providers,
            )
        })
        .collect();
    let mut cams = cams.into_iter();
    let (holder, asker) = (cams.next().expect("two"), cams.next().expect("two"));
    let address = block_on(holder.put(random_bytes(1 << 20, 7))).expect("stored");
    (holder, asker, address)
}

/// A remote get: the asker forgets its cached copy first.
fn remote_get(asker: &Cam, address: Address) {
    block_on(asker.store().remove(&address)).expect("memory store");
    black_box(block_on(asker.get(address)).expect("fetched"));
}

/// Five holders and a client, N = 3.
fn dedup_network() -> DeduplicationNetwork {
    let network = MemoryNetwork::new(2);
    let mut ring = HashRing::new();
    for i in 0..5u8 {
        let id = NodeId::from_bytes([10 + i; 32]);
        network.join(
            id,
            Arc::new(DedupHandler::new(Arc::new(MemoryStore::new()))),
        );
        ring.add(id);
    }
    let client = network.join(
        NodeId::from_bytes([99; 32]),
        Arc::new(DedupHandler::new(Arc::new(MemoryStore::new()))),
    );
    DeduplicationNetwork::new(Arc::new(client), Arc::new(RwLock::new(ring)), 3)
}

/// Fresh 1 KiB objects: a random template stamped with a counter.
struct Objects {
    template: Vec<u8>,
    counter: AtomicU64,
}

impl Objects {
    fn new() -> Self {
        Self {
            template: random_bytes(1024, 3),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> Vec<u8> {
        let mut data = self.template.clone();
        data[..8].copy_from_slice(&self.counter.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        data
    }
}

/// Threads driving puts, and puts in flight per thread.
const THREADS: usize = 2;
const IN_FLIGHT: usize = 32;

/// Objects per `store_many` call.
const BATCH: u64 = 64;

/// Stores `n` fresh objects, `IN_FLIGHT` at a time on each of `THREADS`
/// threads (with `store_many`, `IN_FLIGHT` batches of `BATCH`); returns the
/// elapsed time.
fn concurrent_puts(
    client: &DeduplicationNetwork,
    objects: &Objects,
    n: u64,
    batched: bool,
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let per_thread = n / THREADS as u64;
                if batched {
                    let puts = stream::iter(0..per_thread.div_ceil(BATCH))
                        .map(|_| client.store_many((0..BATCH).map(|_| objects.next()).collect()))
                        .buffer_unordered(IN_FLIGHT)
                        .for_each(|results| {
                            black_box(results);
                            async {}
                        });
                    block_on(puts);
                } else {
                    let puts = stream::iter(0..per_thread)
                        .map(|_| client.store_unique(objects.next()))
                        .buffer_unordered(IN_FLIGHT)
                        .for_each(|result| {
                            black_box(result);
                            async {}
                        });
                    block_on(puts);
                }
            });
        }
    });
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let (_holder, asker, address) = two_cams();
    let mut group = c.benchmark_group("cam_network");
    group.throughput(Throughput::Bytes(1 << 20));
    group.bench_function("remote get 1 MiB (verified)", |b| {
        b.iter(|| remote_get(&asker, address))
    });
    group.finish();

    let client = dedup_network();
    let objects = Objects::new();
    let mut group = c.benchmark_group("dedup_network");
    group.throughput(Throughput::Elements(1));
    group.bench_function("store_unique 1 KiB, 5 nodes, N=3, one at a time", |b| {
        b.iter(|| black_box(block_on(client.store_unique(objects.next()))))
    });
    group.bench_function(
        "store_unique 1 KiB, 5 nodes, N=3, 2 threads x 32 in flight",
        |b| b.iter_custom(|n| concurrent_puts(&client, &objects, n.max(THREADS as u64), false)),
    );
    group.bench_function(
        "store_many 64 x 1 KiB, 5 nodes, N=3, 2 threads x 32 in flight",
        |b| {
            b.iter_custom(|n| {
                let n = n.max(THREADS as u64 * BATCH);
                // Whole batches only: time per object of what was stored.
                let stored = n / (THREADS as u64 * BATCH) * THREADS as u64 * BATCH;
                concurrent_puts(&client, &objects, stored, true).mul_f64(n as f64 / stored as f64)
            })
        },
    );
    group.finish();
}

/// Logical bytes over stored bytes for 20 files of 256 KiB, each saved in 10
/// versions that differ by a few small edits (insertions and overwrites).
fn dedup_ratio() -> (u64, u64) {
    let network = MemoryNetwork::new(3);
    let id = NodeId::from_bytes([5; 32]);
    let store = Arc::new(MemoryStore::new());
    let providers = ProviderRecords::new(16);
    let transport = network.join(
        id,
        Arc::new(CamHandler::new(Arc::clone(&store), providers.clone())),
    );
    let cam: Cam = DistributedCAM::new(
        id,
        Arc::clone(&store),
        Arc::new(transport),
        Arc::new(RwLock::new(LatticeRouter::new(id))),
        providers,
    );
    let params = ChunkParams {
        min: 4 << 10,
        avg: 16 << 10,
        max: 64 << 10,
    };
    let mut logical = 0u64;
    let mut x = 0x1234_5678_u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for file in 0..20u64 {
        let mut data = random_bytes(256 << 10, file + 1);
        for _version in 0..10 {
            block_on(cam.put_blob(&data, params)).expect("stored");
            logical += data.len() as u64;
            for _ in 0..3 {
                let at = (next() % data.len() as u64) as usize;
                if next() % 2 == 0 {
                    data.splice(at..at, b"edit".iter().copied());
                } else {
                    let end = (at + 16).min(data.len());
                    data[at..end].fill(0x5a);
                }
            }
        }
    }
    let mut stored = 0u64;
    let mut after = None;
    loop {
        let page = block_on(store.scan(after, 1024)).expect("memory store");
        let Some(&last) = page.last() else { break };
        after = Some(last);
        for a in page {
            stored += block_on(store.get(&a))
                .expect("memory store")
                .map_or(0, |o| o.len() as u64);
        }
    }
    (logical, stored)
}

fn check_targets() {
    println!("\nIssue 5 targets (best of 7 runs):");
    let (_holder, asker, address) = two_cams();
    let rate = (1u64 << 20) as f64 / best_seconds(50, || remote_get(&asker, address));
    println!(
        "  verified remote get of 1 MiB over MemoryNetwork: {:.2} GB/s (target 1 GB/s: {})",
        rate / 1e9,
        verdict(rate >= 1e9)
    );
    let client = dedup_network();
    let objects = Objects::new();
    let one = 1.0
        / best_seconds(2000, || {
            black_box(block_on(client.store_unique(objects.next())));
        });
    for (batched, how) in [
        (
            false,
            format!("store_unique, {THREADS} threads x {IN_FLIGHT} in flight"),
        ),
        (
            true,
            format!("store_many of {BATCH}, {THREADS} threads x {IN_FLIGHT} in flight"),
        ),
    ] {
        let n = 20_480;
        let (mut puts, mut cpu) = (0.0, None);
        for _ in 0..7 {
            let before = cpu_seconds();
            let wall = concurrent_puts(&client, &objects, n, batched).as_secs_f64();
            if n as f64 / wall > puts {
                puts = n as f64 / wall;
                cpu = before.zip(cpu_seconds()).map(|(b, a)| (a - b, wall));
            }
        }
        println!(
            "  DeduplicationNetwork 1 KiB puts, 5 nodes, N=3, {how}: {puts:.0} puts/s (target 100,000: {})",
            verdict(puts >= 100_000.0),
        );
        // On a shared machine the wall-clock rate is capped by the CPU the
        // process gets; say how much it got and what a CPU-second achieves.
        if let Some((cpu, wall)) = cpu.filter(|(cpu, _)| *cpu > 0.0) {
            println!(
                "    (the process ran on {:.2} of {THREADS} cores: {:.0} puts per CPU-second)",
                cpu / wall,
                n as f64 / cpu
            );
        }
    }
    println!("  DeduplicationNetwork 1 KiB puts one at a time: {one:.0} puts/s");
    let (logical, stored) = dedup_ratio();
    println!(
        "  deduplication of 20 files x 10 versions with small edits: {} MiB logical, {:.1} MiB stored, ratio {:.1}:1",
        logical >> 20,
        stored as f64 / (1 << 20) as f64,
        logical as f64 / stored as f64
    );
}

/// Objects of the issue 22 figures.
const HEAL_OBJECTS: usize = 100_000;

/// Five holders on one ring, N = 3, holding `n` objects of 1 KiB; the
/// holders (with their transports) and the ring.
type Holders = Vec<(NodeId, Arc<DedupHandler<MemoryStore>>, MemoryTransport)>;

fn five_holders(n: usize) -> (Holders, Arc<RwLock<HashRing>>, Vec<Address>) {
    let network = MemoryNetwork::new(22);
    let ring = Arc::new(RwLock::new(HashRing::new()));
    let mut holders = Vec::new();
    for i in 0..5u8 {
        let id = NodeId::from_bytes([40 + i; 32]);
        let holder = Arc::new(DedupHandler::new(Arc::new(MemoryStore::new())).with_ring(
            id,
            Arc::clone(&ring),
            3,
        ));
        let transport = network.join(id, Arc::clone(&holder) as _);
        ring.write().expect("ring").add(id);
        holders.push((id, holder, transport));
    }
    let client = network.join(
        NodeId::from_bytes([98; 32]),
        Arc::new(DedupHandler::new(Arc::new(MemoryStore::new()))),
    );
    let client = DeduplicationNetwork::new(Arc::new(client), Arc::clone(&ring), 3);
    let objects = Objects::new();
    let batches: Vec<Vec<Vec<u8>>> = (0..n.div_ceil(64))
        .map(|b| (0..64.min(n - b * 64)).map(|_| objects.next()).collect())
        .collect();
    let stored = block_on(
        stream::iter(batches)
            .map(|batch| client.store_many(batch))
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>(),
    );
    let addresses = stored
        .into_iter()
        .flatten()
        .filter_map(|r| match r {
            hologram::cam::StoreResult::Stored(a, 3) => Some(a),
            _ => None,
        })
        .collect();
    (holders, ring, addresses)
}

/// How many of `addresses` have all N owners holding them.
fn at_n(holders: &Holders, ring: &RwLock<HashRing>, addresses: &[Address]) -> usize {
    let ring = ring.read().expect("ring");
    addresses
        .iter()
        .filter(|a| {
            ring.owners(a, 3).iter().all(|owner| {
                holders.iter().any(|(id, holder, _)| {
                    id == owner && block_on(holder.refs(a)).is_ok_and(|refs| refs > 0)
                })
            })
        })
        .count()
}

/// One holder of five is lost for good (leaves the ring, its copies gone);
/// the other four each run an anti-entropy round, in parallel, until every
/// object is back at N = 3. Returns the time, the objects fetched, and how
/// many objects were at N before and after.
fn restore_after_loss() -> (Duration, usize, usize, usize, usize) {
    let (holders, ring, addresses) = five_holders(HEAL_OBJECTS);
    let lost = holders[0].0;
    ring.write().expect("ring").remove(&lost);
    let before = at_n(&holders, &ring, &addresses);
    let fetched = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for (_, holder, transport) in &holders[1..] {
            let fetched = &fetched;
            s.spawn(move || {
                let report = block_on(holder.anti_entropy_round(transport, Duration::from_secs(5)))
                    .expect("anti-entropy");
                fetched.fetch_add(report.fetched as u64, Ordering::Relaxed);
            });
        }
    });
    let elapsed = start.elapsed();
    let after = at_n(&holders, &ring, &addresses);
    (
        elapsed,
        fetched.load(Ordering::Relaxed) as usize,
        addresses.len(),
        before,
        after,
    )
}

/// Objects per scrub step: the scrub persists its cursor (one durable
/// commit) after each.
const SCRUB_STEP: usize = 16384;

/// A holder over a redb file of `n` objects of 1 KiB scrubs whole passes
/// while another thread reads from it as fast as it can; returns the
/// scrub's bytes per second (best of 3 passes), those with no reads beside
/// it, the reads served meanwhile, and BLAKE3's bytes per second over the
/// same objects on one thread (the best of 3 runs before the passes and 3
/// after them).
fn scrub_rate(n: usize) -> (f64, f64, u64, f64) {
    let path =
        std::env::temp_dir().join(format!("hologram-bench-scrub-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let store = Arc::new(RedbStore::create(&path).expect("redb file"));
    let objects = Objects::new();
    let all: Vec<Object> = (0..n).map(|_| Object::new(objects.next())).collect();
    for chunk in all.chunks(1_000) {
        block_on(store.put_batch(chunk.to_vec())).expect("stored");
    }
    let holder = DedupHandler::new(Arc::clone(&store));
    // BLAKE3 over the same bytes, one object at a time, best of 3; taken
    // before the scrub's passes and again after them, the faster kept, so
    // that a burst of other load on the machine during one of them does not
    // flatter the scrub's share.
    let blake3_rate = || {
        let mut hashing = f64::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            for o in &all {
                black_box(blake3::hash(black_box(o.data())));
            }
            hashing = hashing.min(start.elapsed().as_secs_f64());
        }
        (n * 1024) as f64 / hashing
    };
    let hashed_before = blake3_rate();
    let pass = || {
        let start = Instant::now();
        let mut checked = 0;
        loop {
            let step = block_on(holder.scrub(SCRUB_STEP)).expect("scrubbed");
            checked += step.checked;
            assert!(step.corrupt.is_empty(), "nothing rots here");
            if step.finished_pass {
                break;
            }
        }
        (checked * 1024) as f64 / start.elapsed().as_secs_f64()
    };
    // The best of 3 passes, as BLAKE3's rate is the best of 3 runs: on a
    // shared machine one pass can fall on another process's burst.
    let best_pass = || (0..3).map(|_| pass()).fold(0.0, f64::max);
    let quiet = best_pass();
    let stop = AtomicBool::new(false);
    let served = AtomicU64::new(0);
    let mut scrubbed = 0.0;
    std::thread::scope(|s| {
        s.spawn(|| {
            let reader = NodeId::from_bytes([97; 32]);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let request = Request {
                    op: i as u64,
                    message: DedupMessage::Get(all[i * 7919 % n].address()),
                }
                .encode();
                black_box(
                    block_on(holder.request(reader, DEDUP_PROTOCOL, request)).expect("served"),
                );
                served.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        });
        scrubbed = best_pass();
        stop.store(true, Ordering::Relaxed);
    });
    let blake3_rate = hashed_before.max(blake3_rate());
    drop(holder);
    drop(store);
    let _ = std::fs::remove_file(&path);
    (scrubbed, quiet, served.load(Ordering::Relaxed), blake3_rate)
}

fn check_healing(scrub_only: bool) {
    println!("\nIssue 22 targets:");
    if !scrub_only {
        report_restore();
    }
    report_scrub();
}

/// Prints the time anti-entropy takes to restore N = 3.
fn report_restore() {
    let (elapsed, fetched, objects, before, after) = restore_after_loss();
    println!(
        "  restore N = 3 after one of 5 holders is lost, {objects} objects of 1 KiB: {:.2} s \
         ({fetched} copies fetched by anti-entropy; {before} objects at N before, {after} after; \
         target 30 s: {})",
        elapsed.as_secs_f64(),
        verdict(elapsed.as_secs_f64() <= 30.0 && after == objects),
    );
}

/// Prints the scrub's rate beside BLAKE3's.
fn report_scrub() {
    let (scrub, quiet, served, blake3_rate) = scrub_rate(HEAL_OBJECTS / 2);
    println!(
        "  scrub of a redb holder of {} objects of 1 KiB in steps of {SCRUB_STEP} while serving reads: {:.0} MB/s \
         (best of 3 passes; {served} reads served during them; {:.0} MB/s with no reads); BLAKE3 on one thread, \
         same objects: {:.0} MB/s; {:.0}% (target 50%: {})",
        HEAL_OBJECTS / 2,
        scrub / 1e6,
        quiet / 1e6,
        blake3_rate / 1e6,
        100.0 * scrub / blake3_rate,
        verdict(scrub >= 0.5 * blake3_rate),
    );
}

criterion_group!(benches, bench);

fn main() {
    if let Some(only) = std::env::var_os("HOLOGRAM_BENCH_HEAL_ONLY") {
        check_healing(only == "scrub");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        check_targets();
        check_healing(false);
    }
}
