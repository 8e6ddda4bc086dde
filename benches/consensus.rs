//! `ReceiptConsensus` throughput and latency (issue 6).
//!
//! - 4 validators in one process over `MemoryNetwork` (no injected faults),
//!   full signature checks, 64-byte commands batched 4,096 to a proposal,
//!   pipeline depth 4, a client keeping 8 batches in flight: committed
//!   commands per second (target: at least 200,000), with the CPU the
//!   process got, and the commit latency of a single command (p50 and p99).
//! - Pipelining: proposals decided per second with depth 8 against depth 1
//!   at 1 ms one-way latency (target: at least 4x). This one runs in the
//!   deterministic simulator, so "seconds" are its virtual clock: the
//!   comparison is of protocol round trips, not of CPU.
//!
//! - Client signatures (issue #19, point 8): every command is signed by its
//!   client and every replica verifies it once (on submit or gossip; a
//!   proposal's commands already in the mempool are not verified again).
//!   The `command` group measures, per 64-byte command, signing on the
//!   client, verifying one, verifying a proposal's 4,096 one by one and (for
//!   comparison only) in one batch,
//!   and beside them what making a command cost before (hashing its id).
//!   The throughput figure below signs the commands before the clock starts
//!   (clients sign on their own machines) and includes four replicas each
//!   verifying every command strictly, one by one, all in this one process
//!   (batches are not deterministic, see `verify_commands`): the 200,000
//!   target was set for unsigned commands. A second figure has the client
//!   sign 64 commands at a time (`Command::sign_batch`: one signature, each
//!   command with its Merkle path), so each replica verifies one signature
//!   per 64 commands. The README gives the measured figures.
//!
//! - Metrics cost (issue 21): the throughput run above, shorter, with a
//!   Prometheus recorder (`metrics-exporter-prometheus`) installed and
//!   switched on and off in alternation: one unmeasured run, then pairs of
//!   runs whose order alternates, best of each side (target: on, at least
//!   95% of the rate without).
//!
//! Criterion's group compares committing a batch through consensus with the
//! floor any replica pays for it: verifying its commit certificate and
//! hashing its batch. After criterion's report, `cargo bench --bench
//! consensus` prints the measured figures against the targets.

#[path = "support/measure.rs"]
mod measure;

use criterion::{criterion_group, Criterion, Throughput};
use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use hologram::consensus::{
    inbox, verify_commands, BatchProof, Command, Decision, DriverHandle, Replica, ReplicaConfig,
    ReplicaDriver, ReplicatedStateMachine, SimReplica, StateMachine, ValidatorSet,
};
use hologram::lattice::sim::{Faults, Simulation};
use hologram::lattice::transport::{MemoryNetwork, Timer};
use hologram::receipt::{forget_verified_signatures, KeyPair, Purpose, Receipt, SignatureBatch};
use measure::{cpu_seconds, verdict};
use metrics::{Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: usize = 4096;
/// Batches a client keeps submitted and not yet committed (its window).
const WINDOW: usize = 8;
/// Commands a client signs at once in the second throughput figure.
const SIGNED_TOGETHER: usize = 64;

fn keys(n: u8) -> (Vec<KeyPair>, ValidatorSet) {
    let keys: Vec<KeyPair> = (1..=n).map(|i| KeyPair::from_seed([i; 32])).collect();
    let set = ValidatorSet::new(keys.iter().map(KeyPair::node_id).collect()).expect("distinct");
    (keys, set)
}

/// The client that signs the bench's commands.
fn client() -> KeyPair {
    KeyPair::from_seed([0xc1; 32])
}

/// The 64-byte payload number `i`.
fn payload(i: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; 64];
    bytes[..8].copy_from_slice(&i.to_le_bytes());
    bytes
}

/// Four drivers over a memory network, running on `rt`.
struct Cluster {
    handles: Vec<DriverHandle>,
    decisions: UnboundedReceiver<Decision>,
    next: u64,
    client: KeyPair,
}

impl Cluster {
    fn new(rt: &tokio::runtime::Runtime, depth: usize) -> Cluster {
        let (keys, set) = keys(4);
        let network = MemoryNetwork::new(1);
        let timer = Timer::new();
        let mut handles = Vec::new();
        let mut streams = Vec::new();
        for k in &keys {
            let mut config = ReplicaConfig::new(set.clone());
            config.max_batch = BATCH;
            config.max_pipeline_depth = depth;
            let replica = Replica::new(k.clone(), config).expect("config");
            let (handler, inbox) = inbox();
            let transport = network.join(k.node_id(), Arc::new(handler));
            let (driver, handle, decisions) =
                ReplicaDriver::new(replica, Arc::new(transport), timer.clone(), inbox);
            rt.spawn(driver.run());
            handles.push(handle);
            streams.push(decisions);
        }
        Cluster {
            handles,
            decisions: streams.swap_remove(0),
            next: 0,
            client: client(),
        }
    }

    /// `n` fresh 64-byte commands, signed by the client.
    fn commands(&mut self, n: usize) -> Vec<Command> {
        (0..n)
            .map(|_| {
                self.next += 1;
                Command::sign(&self.client, self.next, 0, payload(self.next)).expect("small")
            })
            .collect()
    }

    /// `n` fresh 64-byte commands, signed by the client `per` at a time (one
    /// signature for each `per`, every command with its batch proof).
    fn commands_signed_together(&mut self, n: usize, per: usize) -> Vec<Command> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let take = per.min(n - out.len());
            let first = self.next + 1;
            self.next += take as u64;
            let items = (first..=self.next).map(|i| (i, 0, payload(i).into()));
            out.extend(Command::sign_batch(&self.client, items).expect("small"));
        }
        out
    }

    /// Submits `commands` to every validator (as a client would), keeping at
    /// most [`WINDOW`] batches submitted and not yet committed, and waits
    /// until validator 0 has committed them all.
    async fn commit(&mut self, commands: Vec<Command>) {
        let n = commands.len();
        let mut chunks = commands.chunks(BATCH);
        let (mut submitted, mut committed) = (0, 0);
        while committed < n {
            while submitted < committed + WINDOW * BATCH {
                let Some(chunk) = chunks.next() else { break };
                for h in &self.handles {
                    h.submit(chunk.to_vec(), false).await.expect("taken");
                }
                submitted += chunk.len();
            }
            let d = self.decisions.next().await.expect("running");
            committed += d.batch.len();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Height 0 decided by four replicas in the simulator, with 4096 commands
/// of 64 B from one client.
fn first_decision() -> Decision {
    let (keys, set) = keys(4);
    let nodes = keys.iter().map(|k| {
        let mut config = ReplicaConfig::new(set.clone());
        config.max_batch = BATCH;
        (
            k.node_id(),
            SimReplica::new(k.clone(), config).expect("config"),
        )
    });
    let mut sim = Simulation::new(1, Faults::NONE, nodes);
    let client = client();
    let commands: Vec<Command> = (0..BATCH as u64)
        .map(|i| Command::sign(&client, i, 0, vec![i as u8; 64]).expect("small"))
        .collect();
    for k in &keys {
        sim.with_node(k.node_id(), |n, ctx| n.submit(ctx, commands.clone(), false));
    }
    sim.run_until(1_000).expect("no invariant");
    let log = sim.node(keys[0].node_id()).expect("node").log();
    let first = log.first().expect("height 0 decided").clone();
    assert_eq!(first.batch.len(), BATCH, "one height of every command");
    first
}

/// Decided heights per virtual second in the simulator, 1 ms one way.
fn pipelined_rate(depth: usize) -> f64 {
    let (keys, set) = keys(4);
    let nodes = keys.iter().map(|k| {
        let mut config = ReplicaConfig::new(set.clone());
        config.max_batch = 64;
        config.max_pipeline_depth = depth;
        (
            k.node_id(),
            SimReplica::new(k.clone(), config).expect("config"),
        )
    });
    let mut sim = Simulation::new(1, Faults::NONE, nodes);
    let client = client();
    let commands: Vec<Command> = (0..64 * 2_000u32)
        .map(|i| Command::sign(&client, u64::from(i), 0, i.to_le_bytes().to_vec()).expect("small"))
        .collect();
    for k in &keys {
        sim.with_node(k.node_id(), |n, ctx| n.submit(ctx, commands.clone(), false));
    }
    let (warm, end) = (100, 600);
    sim.run_until(warm).expect("no invariant");
    let first = sim.node(keys[0].node_id()).expect("node").log().len();
    sim.run_until(end).expect("no invariant");
    let last = sim.node(keys[0].node_id()).expect("node").log().len();
    (last - first) as f64 / ((end - warm) as f64 / 1000.0)
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut cluster = Cluster::new(&rt, 4);
    let mut group = c.benchmark_group("consensus");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.bench_function("commit 4096 x 64 B, 4 validators (MemoryNetwork)", |b| {
        b.iter(|| {
            let commands = cluster.commands(BATCH);
            rt.block_on(cluster.commit(commands))
        })
    });
    // The floor: what verifying one decision costs a replica.
    let decision = {
        let commands = cluster.commands(BATCH);
        rt.block_on(async {
            for h in &cluster.handles {
                h.submit(commands.clone(), false).await.expect("taken");
            }
            cluster.decisions.next().await.expect("running")
        })
    };
    let (_, set) = keys(4);
    group.bench_function("verify one decision: certificate + batch receipt", |b| {
        b.iter(|| {
            // As a replica that did not verify these votes before.
            forget_verified_signatures();
            decision.certificate.verify(&set).expect("valid");
            black_box(decision.batch.receipt() == decision.certificate.value)
        })
    });
    // Applying a decided height: each command's transition receipt (the
    // state's receipt before and after, the command's own), chained.
    group.bench_function(
        "apply one decision of 4096 x 64 B (ReplicatedStateMachine, a counter)",
        |b| {
            let first = first_decision();
            b.iter(|| {
                let mut rsm = ReplicatedStateMachine::new(Counter(0), set.clone());
                let applied = rsm.apply_decision(&first).expect("height 0, certified");
                black_box(applied.len())
            })
        },
    );
    group.finish();
    // Drain what the floor's setup left undelivered.
    drop(cluster);
    drop(rt);
}

/// A counter machine for the apply bench: its state receipt is the
/// receipt of its eight bytes, as a small machine's would be.
struct Counter(u64);

impl StateMachine for Counter {
    type Output = u64;
    fn apply(&mut self, command: &Command) -> u64 {
        self.0 += command.bytes().len() as u64;
        self.0
    }
    fn state_receipt(&self) -> Receipt {
        Receipt::from_bytes(&self.0.to_le_bytes())
    }
    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(self.0.to_le_bytes().to_vec())
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = bytes.try_into().map_err(|_| "not 8 bytes")?;
        self.0 = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// A Prometheus recorder that can be switched off (it then hands out no-op
/// handles, as no recorder does), so that runs with and without it
/// alternate in one process (a global recorder is installed only once).
struct Switched {
    on: AtomicBool,
    inner: PrometheusRecorder,
}

impl Recorder for Switched {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, text: SharedString) {
        self.inner.describe_counter(key, unit, text)
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, text: SharedString) {
        self.inner.describe_gauge(key, unit, text)
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, text: SharedString) {
        self.inner.describe_histogram(key, unit, text)
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> metrics::Counter {
        match self.on.load(Ordering::Relaxed) {
            true => self.inner.register_counter(key, metadata),
            false => metrics::Counter::noop(),
        }
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> metrics::Gauge {
        match self.on.load(Ordering::Relaxed) {
            true => self.inner.register_gauge(key, metadata),
            false => metrics::Gauge::noop(),
        }
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> metrics::Histogram {
        match self.on.load(Ordering::Relaxed) {
            true => self.inner.register_histogram(key, metadata),
            false => metrics::Histogram::noop(),
        }
    }
}

/// Committed commands per second over `batches` batches, on a fresh cluster.
fn short_rate(rt: &tokio::runtime::Runtime, batches: usize) -> f64 {
    let mut cluster = Cluster::new(rt, 4);
    let warm = cluster.commands(2 * BATCH);
    rt.block_on(cluster.commit(warm));
    let commands = cluster.commands(batches * BATCH);
    let start = Instant::now();
    rt.block_on(cluster.commit(commands));
    (batches * BATCH) as f64 / start.elapsed().as_secs_f64()
}

/// The metrics-cost target: the throughput with a Prometheus recorder
/// recording against it without. Installs the global recorder: run last.
fn metrics_cost() {
    const BATCHES: usize = 20;
    const PAIRS: usize = 6;
    let rt = runtime();
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let switched: &'static Switched = Box::leak(Box::new(Switched {
        on: AtomicBool::new(false),
        inner: recorder,
    }));
    metrics::set_global_recorder(switched).expect("the first recorder");
    // One run unmeasured (the first run of a process is the slowest), then
    // pairs whose order alternates, so that neither side gets the warmer
    // half of the machine's drift.
    short_rate(&rt, BATCHES);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for pair in 0..PAIRS {
        for on in [pair % 2 == 0, pair % 2 == 1] {
            switched.on.store(on, Ordering::Relaxed);
            let rate = short_rate(&rt, BATCHES);
            match on {
                true => with.push(rate),
                false => without.push(rate),
            }
        }
    }
    switched.on.store(false, Ordering::Relaxed);
    let best = |rates: &[f64]| rates.iter().copied().fold(0.0, f64::max);
    let (on, off) = (best(&with), best(&without));
    let scrape = handle.render();
    let series = scrape
        .lines()
        .filter(|l| l.starts_with("hologram_"))
        .count();
    println!(
        "  metrics cost (issue 21): best of {} alternated runs of {} batches each: {:.0} committed \
         commands/s without a recorder, {:.0}/s with the Prometheus recorder ({:.1}%, {} series \
         recorded; target >= 95%: {})",
        PAIRS,
        BATCHES,
        off,
        on,
        100.0 * on / off,
        series,
        verdict(on >= 0.95 * off)
    );
}

fn check_targets() {
    println!("\nIssue 19 point 8, client signatures:");
    command_costs();
    println!("\nIssue 6 targets:");
    let rt = runtime();
    let mut cluster = Cluster::new(&rt, 4);
    // Warm up, then measure 100 batches.
    let warm = cluster.commands(4 * BATCH);
    rt.block_on(cluster.commit(warm));
    let n = 100 * BATCH;
    // Clients sign on their own machines: the commands are made before the
    // clock starts. Each of the four replicas verifies every one of them
    // (strictly, one by one) within the measured time, all in this process.
    let commands = cluster.commands(n);
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    rt.block_on(cluster.commit(commands));
    let wall = start.elapsed().as_secs_f64();
    let rate = n as f64 / wall;
    println!(
        "  4 validators over MemoryNetwork, 64-byte commands in batches of {BATCH}, full signature checks: {:.0} committed commands/s (target 200,000: {})",
        rate,
        verdict(rate >= 200_000.0)
    );
    // On a shared machine the wall-clock rate is capped by the CPU the
    // process gets; say how much it got and what a CPU-second achieves.
    if let Some(cpu) = cpu_before
        .zip(cpu_seconds())
        .map(|(b, a)| a - b)
        .filter(|cpu| *cpu > 0.0)
    {
        println!(
            "    (the process ran on {:.2} cores: {:.0} committed commands per CPU-second; \
             each replica has a quarter of that CPU, so one replica on a core of its own \
             would commit about {:.0}/s)",
            cpu / wall,
            n as f64 / cpu,
            4.0 * n as f64 / cpu
        );
    }
    // The same with the client signing 64 commands at a time (what a client
    // with 64 in flight sends in one request): each replica verifies one
    // signature per 64 commands.
    let commands = cluster.commands_signed_together(n, SIGNED_TOGETHER);
    let start = Instant::now();
    rt.block_on(cluster.commit(commands));
    let together = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "  the same, the client signing {SIGNED_TOGETHER} commands at a time: {together:.0} committed commands/s \
         ({:.2}x one signature per command; target 200,000: {})",
        together / rate,
        verdict(together >= 200_000.0)
    );
    let mut latencies: Vec<Duration> = (0..200)
        .map(|_| {
            let one = cluster.commands(1);
            let start = Instant::now();
            rt.block_on(cluster.commit(one));
            start.elapsed()
        })
        .collect();
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "  single-command commit latency (4 validators, in process): p50 {:?}, p99 {:?}",
        pct(50),
        pct(99)
    );
    drop(cluster);
    drop(rt);
    let (d1, d8) = (pipelined_rate(1), pipelined_rate(8));
    println!(
        "  proposals decided per (virtual) second at 1 ms one-way latency: depth 1 {:.0}/s, depth 8 {:.0}/s, {:.1}x (target 4x: {})",
        d1,
        d8,
        d8 / d1,
        verdict(d8 >= 4.0 * d1)
    );
    metrics_cost();
}

/// What binding commands to their clients costs, per 64-byte command.
fn bench_commands(c: &mut Criterion) {
    let client = client();
    let signed: Vec<Command> = (0..BATCH as u64)
        .map(|i| Command::sign(&client, i, 0, payload(i)).expect("small"))
        .collect();
    let mut group = c.benchmark_group("command");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    group.bench_function("make one, before: hash its id (from_parts)", |b| {
        let (key, sig) = (signed[0].client(), signed[0].signature());
        b.iter(|| {
            i += 1;
            black_box(
                Command::from_parts(key, i, 0, sig, BatchProof::single(), payload(i))
                    .expect("small"),
            )
        })
    });
    group.bench_function("make one, now: sign it (client)", |b| {
        b.iter(|| {
            i += 1;
            black_box(Command::sign(&client, i, 0, payload(i)).expect("small"))
        })
    });
    group.bench_function("verify one (replica)", |b| {
        b.iter(|| {
            // Each time as a replica that sees the command first.
            forget_verified_signatures();
            signed[0].verify().expect("valid")
        })
    });
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("verify 4096 one by one (replica, a proposal)", |b| {
        b.iter(|| {
            forget_verified_signatures();
            verify_commands(&signed).expect("valid")
        })
    });
    group.bench_function(
        "verify 4096 in one batch (not used: not deterministic)",
        |b| {
            b.iter(|| {
                forget_verified_signatures();
                batch_of(&signed).verify().expect("valid")
            })
        },
    );
    group.finish();
}

/// The commands' signatures as one [`SignatureBatch`], to show what batching
/// would save (replicas do not batch: see `verify_commands`).
fn batch_of(commands: &[Command]) -> SignatureBatch {
    let mut batch = SignatureBatch::with_capacity(commands.len());
    for c in commands {
        batch.push(
            c.client(),
            Purpose::Command,
            c.id().as_bytes(),
            c.signature(),
        );
    }
    batch
}

/// Per-command costs of signing and verifying, measured directly.
fn command_costs() {
    let client = client();
    let n = BATCH as u64;
    let per = |start: Instant, n: u64| start.elapsed().as_secs_f64() * 1e6 / n as f64;
    let start = Instant::now();
    let unsigned: Vec<Command> = (0..n)
        .map(|i| {
            Command::from_parts(
                client.node_id(),
                i,
                0,
                hologram::receipt::Signature::from_bytes([0; 64]),
                BatchProof::single(),
                payload(i),
            )
            .expect("small")
        })
        .collect();
    let hash = per(start, n);
    let start = Instant::now();
    let signed: Vec<Command> = (0..n)
        .map(|i| Command::sign(&client, i, 0, payload(i)).expect("small"))
        .collect();
    let sign = per(start, n);
    let start = Instant::now();
    for c in &signed {
        c.verify().expect("valid");
    }
    let one = per(start, n);
    // The batch as a replica that did not verify them one by one before.
    forget_verified_signatures();
    let start = Instant::now();
    batch_of(&signed).verify().expect("valid");
    let batch = per(start, n);
    black_box(unsigned);
    println!(
        "  per 64-byte command: making it before (hash) {hash:.2} µs, signing it now {sign:.1} µs; \
         verifying it (each replica, once, one by one: deterministic) {one:.1} µs; \
         in a batch of {BATCH} it would be {batch:.1} µs, but batches are not deterministic"
    );
}

criterion_group!(benches, bench, bench_commands);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        check_targets();
    }
}
