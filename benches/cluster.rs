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
//!
//! Run: `cargo bench --features net --bench cluster`. Linux only (CPU time
//! and RSS come from `/proc`).

#[path = "support/measure.rs"]
mod measure;

#[path = "../tests/support/localhost.rs"]
mod localhost;

use hologram::lattice::NodeId;
use hologram::node::{parse_peer, run_load, LoadConfig, LoadProgress, LoadReport};
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

/// One node: its id, address and process.
struct Node {
    id: NodeId,
    addr: SocketAddr,
    child: Child,
}

/// Four running nodes in a temporary directory; dropping it kills them
/// and removes the directory.
struct Cluster {
    dir: PathBuf,
    nodes: Vec<Node>,
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
        let peers_file = dir.join("peers.txt");
        std::fs::write(&peers_file, peers).unwrap();
        let mut cluster = Cluster {
            dir: dir.clone(),
            nodes: Vec::new(),
        };
        for (i, (id, addr)) in ids.into_iter().zip(addrs).enumerate() {
            let out = dir.join(format!("node{i}.out"));
            let child = Process::new(NODE_BIN)
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--key")
                .arg(dir.join(format!("node{i}.key")))
                .arg("--data")
                .arg(dir.join(format!("node{i}")))
                .arg("--peers")
                .arg(&peers_file)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::fs::File::create(out.with_extension("err")).unwrap())
                .spawn()
                .unwrap();
            cluster.nodes.push(Node { id, addr, child });
        }
        for i in 0..NODES {
            cluster.wait_ready(i);
        }
        cluster
    }

    /// Waits for node `i`'s ready line.
    fn wait_ready(&mut self, i: usize) {
        let out = self.dir.join(format!("node{i}.out"));
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if text.contains("ready node=") {
                return;
            }
            if let Some(status) = self.nodes[i].child.try_wait().unwrap() {
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

    /// CPU seconds the nodes' processes have used so far, in all.
    fn cpu(&self) -> f64 {
        self.nodes
            .iter()
            .map(|n| cpu_seconds_of(&n.child.id().to_string()).unwrap_or(f64::NAN))
            .sum()
    }

    /// Each node's resident memory in KiB.
    fn rss(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| proc_rss_kib(n.child.id()).unwrap_or(0))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
    let cluster = Cluster::start();
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
    drop(cluster);
}
