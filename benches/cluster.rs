//! The durable cluster at speed (issue #15): four `hologram-node` processes
//! on 127.0.0.1 (fresh data directories, every decision fsync'd as always),
//! driven by the load generator (`hologram::node::run_load`, in this
//! process), each #15 target printed as met or NOT MET.
//!
//! The nodes are the `hologram-node` binary Cargo built for this bench
//! (`CARGO_BIN_EXE_hologram-node`, which Cargo sets for benches); their
//! keys are made with its `--gen-key`.
//!
//! `HOLOGRAM_CLUSTER_SECS` sets each phase's duration (default 10; the
//! issue's figures use 30). `HOLOGRAM_CLUSTER_RSS=1` adds the memory phase:
//! the nodes' RSS once 200,000 commands are committed and once 2,000,000
//! are (long: at the rate measured it runs for minutes).
//! `HOLOGRAM_CLUSTER_SYNC=1` adds the #16 phase: one node is stopped, the
//! other three commit 1,000,000 commands (their data directories measured
//! at 100,000, 500,000 and 1,000,000: bounded?), then the stopped node is
//! restarted from its data directory and timed until it serves again (it
//! restores a snapshot from its peers; target ≤ 10 s). Also minutes long.
//!
//! Run: `cargo bench --features net --bench cluster`. Linux only (CPU time
//! and RSS come from `/proc`).

#[path = "support/measure.rs"]
mod measure;

#[path = "../tests/support/localhost.rs"]
mod localhost;

use hologram::lattice::NodeId;
use hologram::node::{parse_peer, run_load, Client, LoadConfig, LoadProgress, LoadReport};
use hologram::receipt::KeyPair;
use localhost::{free_udp_addrs, fresh_dir};
use measure::{cpu_seconds_of, verdict};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

/// The program under test.
const NODE_BIN: &str = env!("CARGO_BIN_EXE_hologram-node");
/// Validators in the cluster.
const NODES: usize = 4;
/// How long a node may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Command payload bytes.
const SIZE: usize = 64;
/// The throughput phase's clients and in-flight commands per client: 256
/// in flight in all. Each client sends the commands it has room for
/// together, signed at once (a batch of up to 8); a second phase sends
/// each alone, for comparison.
const LOAD: (usize, usize) = (32, 8);

/// One node: its id, address and process (none while stopped).
struct Node {
    id: NodeId,
    addr: SocketAddr,
    child: Option<Child>,
    /// Starts so far.
    runs: usize,
}

/// Four running nodes in a temporary directory; dropping it kills them
/// and removes the directory.
struct Cluster {
    dir: PathBuf,
    nodes: Vec<Node>,
}

impl Node {
    /// The process's id, while it runs.
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Cluster {
    fn start() -> Cluster {
        let dir = fresh_dir("hologram-bench-cluster");
        let addrs = free_udp_addrs(NODES);
        let mut peers = String::new();
        let mut ids = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let key = dir.join(format!("node{i}.key"));
            let made = Process::new(NODE_BIN)
                .arg("--gen-key")
                .arg(&key)
                .output()
                .unwrap();
            assert!(made.status.success(), "--gen-key: {made:?}");
            let line = format!("{}@{addr}", String::from_utf8_lossy(&made.stdout).trim());
            let (id, _) = parse_peer(&line).unwrap();
            peers.push_str(&line);
            peers.push('\n');
            ids.push(id);
        }
        std::fs::write(dir.join("peers.txt"), peers).unwrap();
        let mut cluster = Cluster {
            dir: dir.clone(),
            nodes: Vec::new(),
        };
        for (id, addr) in ids.into_iter().zip(addrs) {
            cluster.nodes.push(Node {
                id,
                addr,
                child: None,
                runs: 0,
            });
        }
        for i in 0..NODES {
            cluster.spawn(i);
        }
        for i in 0..NODES {
            cluster.wait_ready(i);
        }
        cluster
    }

    /// The output file of node `i`'s current run.
    fn out(&self, i: usize) -> PathBuf {
        self.dir
            .join(format!("node{i}-run{}.out", self.nodes[i].runs))
    }

    /// The data directory of node `i`.
    fn data(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{i}"))
    }

    /// Starts node `i`'s process (from its data directory, if it has one).
    fn spawn(&mut self, i: usize) {
        self.nodes[i].runs += 1;
        let out = self.out(i);
        let child = Process::new(NODE_BIN)
            .arg("--listen")
            .arg(self.nodes[i].addr.to_string())
            .arg("--key")
            .arg(self.dir.join(format!("node{i}.key")))
            .arg("--data")
            .arg(self.data(i))
            .arg("--peers")
            .arg(self.dir.join("peers.txt"))
            // Four nodes share two cores: one runtime thread each.
            .args(["--threads", "1"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(out.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        self.nodes[i].child = Some(child);
    }

    /// Kills node `i`'s process.
    fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for node `i`'s ready line.
    fn wait_ready(&mut self, i: usize) {
        let out = self.out(i);
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if text.contains("ready node=") {
                return;
            }
            let child = self.nodes[i].child.as_mut().expect("the node runs");
            if let Some(status) = child.try_wait().unwrap() {
                let err = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
                panic!("node {i} exited before it was ready: {status}\n{err}");
            }
            assert!(start.elapsed() < READY_TIMEOUT, "node {i} is not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn members(&self) -> Vec<(NodeId, SocketAddr)> {
        self.nodes.iter().map(|n| (n.id, n.addr)).collect()
    }

    /// CPU seconds the running nodes' processes have used so far, in all.
    fn cpu(&self) -> f64 {
        (self.nodes.iter().filter_map(Node::pid))
            .map(|pid| cpu_seconds_of(&pid.to_string()).unwrap_or(f64::NAN))
            .sum()
    }

    /// Each running node's resident memory in KiB.
    fn rss(&self) -> Vec<u64> {
        (self.nodes.iter().filter_map(Node::pid))
            .map(|pid| proc_rss_kib(pid).unwrap_or(0))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Bytes in the files under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Resident memory of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
fn proc_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One phase's measurement.
struct Phase {
    report: LoadReport,
    /// The nodes' CPU seconds during the phase.
    node_cpu: f64,
}

impl Phase {
    fn print(&self, name: &str) {
        let r = &self.report;
        let wall = r.elapsed.as_secs_f64();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{name:<22} {:>9} commands in {wall:>6.2} s = {:>8.0} commands/s | latency ms p50 {:>7.2} \
             p90 {:>7.2} p99 {:>7.2} max {:>8.2} | nodes' CPU {:>5.2} cores ({:.0}%), generator {:.2} cores",
            r.commands,
            r.rate(),
            ms(r.latency[0]),
            ms(r.latency[1]),
            ms(r.latency[2]),
            ms(r.latency[3]),
            self.node_cpu / wall,
            100.0 * self.node_cpu / wall / cores() as f64,
            r.cpu.map_or(f64::NAN, |c| c.as_secs_f64() / wall),
        );
        if !r.errors.is_empty() {
            println!("{:<22} errors: {:?}", "", r.errors);
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `config` against the cluster, measuring the nodes' CPU.
fn phase(rt: &tokio::runtime::Runtime, cluster: &Cluster, name: &str, config: LoadConfig) -> Phase {
    eprintln!("-- {name}");
    let cpu_before = cluster.cpu();
    let report = rt
        .block_on(run_load(&config, |p: LoadProgress| {
            eprintln!(
                "{:>4}s {:>8} acknowledged {:>10} total",
                p.second, p.acknowledged, p.total
            )
        }))
        .unwrap();
    let phase = Phase {
        report,
        node_cpu: cluster.cpu() - cpu_before,
    };
    phase.print(name);
    phase
}

fn load(cluster: &Cluster, clients: usize, in_flight: usize, secs: u64) -> LoadConfig {
    LoadConfig {
        nodes: cluster.members(),
        clients,
        in_flight,
        batch: in_flight,
        duration: Duration::from_secs(secs),
        commands: None,
        size: SIZE,
        rate: None,
    }
}

fn print_rss(cluster: &Cluster, committed: u64) -> Vec<u64> {
    let rss = cluster.rss();
    let mib: Vec<String> = rss
        .iter()
        .map(|k| format!("{:.1}", *k as f64 / 1024.0))
        .collect();
    println!(
        "{:<22} after {committed} commands: nodes' RSS MiB [{}]",
        "",
        mib.join(", ")
    );
    rss
}

/// The node the #16 phase stops and restarts.
const BEHIND: usize = 3;
/// The commands the #16 phase commits while that node is stopped, and
/// where it measures the data directories.
const SYNC_COMMANDS: [u64; 3] = [100_000, 500_000, 1_000_000];

/// What the #16 phase measured.
struct SyncPhase {
    /// Each running node's data directory in bytes, at each of
    /// [`SYNC_COMMANDS`].
    sizes: Vec<Vec<u64>>,
    /// From the restart to the ready line, to caught up (a snapshot
    /// restored, the others' height reached), to a command submitted to it
    /// acknowledged.
    ready: Duration,
    caught_up: Duration,
    serving: Duration,
    /// The heights it was behind, and the snapshot it restored.
    behind: u64,
    snapshot: u64,
}

/// The #16 phase: see the crate docs.
fn sync_phase(rt: &tokio::runtime::Runtime, cluster: &mut Cluster) -> SyncPhase {
    // The clients' endpoints live on the runtime.
    let _runtime = rt.enter();
    let members = cluster.members();
    let client = Client::anonymous(&members).unwrap();
    let status = |i: usize| rt.block_on(client.status(members[i].0));
    let before = status(BEHIND).unwrap();
    cluster.stop(BEHIND);
    let running: Vec<usize> = (0..NODES).filter(|&i| i != BEHIND).collect();
    let mut done = 0;
    let mut sizes = Vec::new();
    for target in SYNC_COMMANDS {
        let ran = phase(
            rt,
            cluster,
            &format!("node {BEHIND} down, to {target}"),
            LoadConfig {
                nodes: running.iter().map(|&i| members[i]).collect(),
                commands: Some(target - done),
                ..load(cluster, LOAD.0, LOAD.1, 24 * 3600)
            },
        );
        done += ran.report.commands;
        let at: Vec<u64> = running
            .iter()
            .map(|&i| dir_bytes(&cluster.data(i)))
            .collect();
        let mib: Vec<String> = at
            .iter()
            .map(|b| format!("{:.1}", *b as f64 / (1 << 20) as f64))
            .collect();
        println!(
            "{:<22} after {done} commands with node {BEHIND} down: data directories MiB [{}] \
             (node {BEHIND}'s: {:.1})",
            "",
            mib.join(", "),
            dir_bytes(&cluster.data(BEHIND)) as f64 / (1 << 20) as f64
        );
        sizes.push(at);
    }
    let top = running
        .iter()
        .filter_map(|&i| status(i).ok())
        .map(|s| s.heights)
        .max()
        .unwrap_or(0);
    let start = Instant::now();
    cluster.spawn(BEHIND);
    cluster.wait_ready(BEHIND);
    let ready = start.elapsed();
    let caught = loop {
        if let Ok(s) = status(BEHIND) {
            if s.heights >= top {
                break s;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "node {BEHIND} does not catch up"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let caught_up = start.elapsed();
    let keys = KeyPair::from_seed([0x16; 32]);
    let writer = Client::new(&keys, &members).unwrap();
    let command = writer.command(b"served again".to_vec()).unwrap();
    while rt
        .block_on(writer.submit(members[BEHIND].0, command.clone()))
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "node {BEHIND} does not serve"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let serving = start.elapsed();
    println!(
        "{:<22} node {BEHIND} restarted {} heights behind: ready in {:.2} s, caught up (restored \
         {} snapshot(s), at height {}) in {:.2} s, a command submitted to it applied at {:.2} s",
        "",
        top - before.heights,
        ready.as_secs_f64(),
        caught.restored,
        caught.snapshot,
        caught_up.as_secs_f64(),
        serving.as_secs_f64()
    );
    SyncPhase {
        sizes,
        ready,
        caught_up,
        serving,
        behind: top - before.heights,
        snapshot: caught.snapshot,
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let secs: u64 = std::env::var("HOLOGRAM_CLUSTER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(10);
    let rss_phase = std::env::var("HOLOGRAM_CLUSTER_RSS").is_ok_and(|v| v == "1");
    let sync = std::env::var("HOLOGRAM_CLUSTER_SYNC").is_ok_and(|v| v == "1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "cluster: {NODES} hologram-node processes on 127.0.0.1, every decision fsync'd; \
         {SIZE} B commands; {secs} s a phase; {} cores; load average before {}",
        cores(),
        load_average()
    );
    let mut cluster = Cluster::start();
    let mut committed = 0;

    let full = phase(
        &rt,
        &cluster,
        "256 in flight",
        load(&cluster, LOAD.0, LOAD.1, secs),
    );
    committed += full.report.commands;
    print_rss(&cluster, committed);

    // The obvious alternative, side by side: each command in a request,
    // and under a signature, of its own.
    let alone = phase(
        &rt,
        &cluster,
        "256 in flight, alone",
        LoadConfig {
            batch: 1,
            ..load(&cluster, LOAD.0, LOAD.1, secs)
        },
    );
    committed += alone.report.commands;
    print_rss(&cluster, committed);

    let half_rate = (full.report.rate() / 2.0).max(1.0) as u64;
    let half = phase(
        &rt,
        &cluster,
        &format!("half rate ({half_rate}/s)"),
        LoadConfig {
            rate: Some(half_rate),
            ..load(&cluster, LOAD.0, LOAD.1, secs)
        },
    );
    committed += half.report.commands;
    print_rss(&cluster, committed);

    let one = phase(
        &rt,
        &cluster,
        "one client, 1 in flight",
        load(&cluster, 1, 1, secs),
    );
    committed += one.report.commands;
    print_rss(&cluster, committed);

    let mut rss_verdict = None;
    if rss_phase {
        let mut at = Vec::new();
        for target in [200_000u64, 2_000_000] {
            let left = target.saturating_sub(committed);
            if left > 0 {
                let ran = phase(
                    &rt,
                    &cluster,
                    &format!("to {target} commands"),
                    LoadConfig {
                        commands: Some(left),
                        ..load(&cluster, LOAD.0, LOAD.1, 24 * 3600)
                    },
                );
                committed += ran.report.commands;
            }
            at.push(print_rss(&cluster, committed));
        }
        let worst = at[1]
            .iter()
            .zip(&at[0])
            .map(|(big, small)| *big as f64 / (*small).max(1) as f64)
            .fold(0.0, f64::max);
        rss_verdict = Some(worst);
    }
    let sync = sync.then(|| sync_phase(&rt, &mut cluster));
    println!("load average after {}", load_average());

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let rate = full.report.rate();
    let wall = full.report.elapsed.as_secs_f64();
    println!("\n#15 targets:");
    println!(
        "  >= 20,000 commands/s of {SIZE} B, 256 in flight: {rate:.0} commands/s \
         (nodes' CPU {:.2} cores of {}) ... {}",
        full.node_cpu / wall,
        cores(),
        verdict(rate >= 20_000.0)
    );
    println!(
        "  (the same load with each command signed and sent alone: {:.0} commands/s; \
         signed {} at a time: {:.2}x that)",
        alone.report.rate(),
        LOAD.1,
        rate / alone.report.rate().max(1e-9)
    );
    let (p50, p99) = (half.report.latency[0], half.report.latency[2]);
    println!(
        "  at half that rate ({half_rate}/s offered, {:.0} acknowledged/s) p50 <= 10 ms: {:.2} ms ... {}",
        half.report.rate(),
        ms(p50),
        verdict(p50 <= Duration::from_millis(10))
    );
    println!(
        "  at half that rate p99 <= 50 ms: {:.2} ms ... {}",
        ms(p99),
        verdict(p99 <= Duration::from_millis(50))
    );
    let solo = one.report.latency[0];
    println!(
        "  one client, one command at a time, p50 <= 5 ms: {:.2} ms ... {}",
        ms(solo),
        verdict(solo <= Duration::from_millis(5))
    );
    match rss_verdict {
        Some(ratio) => println!(
            "  RSS after 2,000,000 commands <= 1.2 x after 200,000: {ratio:.2} x (worst node) ... {}",
            verdict(ratio <= 1.2)
        ),
        None => println!(
            "  RSS after 2,000,000 commands <= 1.2 x after 200,000: not run \
             (HOLOGRAM_CLUSTER_RSS=1 runs it)"
        ),
    }
    let errors: u64 = [&full, &alone, &half, &one]
        .iter()
        .flat_map(|p| p.report.errors.values())
        .sum();
    println!("  failed submissions in all phases: {errors}");
    match sync {
        Some(s) => {
            let worst = |k: usize| s.sizes[k].iter().copied().max().unwrap_or(0);
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            println!("\n#16 targets:");
            println!(
                "  data directory bounded under a steady load: largest {:.1} MiB after 100,000 \
                 commands, {:.1} after 500,000, {:.1} after 1,000,000 (<= 1.2 x the 500,000 \
                 figure) ... {}",
                mib(worst(0)),
                mib(worst(1)),
                mib(worst(2)),
                verdict(worst(2) as f64 <= 1.2 * worst(1) as f64)
            );
            println!(
                "  a node 1,000,000 commands ({} heights) behind serves again in <= 10 s: \
                 {:.2} s (ready {:.2} s, caught up from the snapshot at height {} {:.2} s) ... {}",
                s.behind,
                s.serving.as_secs_f64(),
                s.ready.as_secs_f64(),
                s.snapshot,
                s.caught_up.as_secs_f64(),
                verdict(s.serving <= Duration::from_secs(10))
            );
        }
        None => println!(
            "\n#16 targets: not run (HOLOGRAM_CLUSTER_SYNC=1 runs them: data directories \
             over 1,000,000 commands, a node that far behind serving again)"
        ),
    }
    drop(cluster);
}
