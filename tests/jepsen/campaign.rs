//! One campaign: a cluster behind the fault proxy, clients running
//! commands through `hologram::node::Client` (each with retries at other
//! nodes, every command recorded with its invocation and completion): a
//! third append to the log, a third run the register workload and the
//! rest the bank workload (`kv_workload`, on accounts opened before the
//! faults start); a status reader, and a seeded fault schedule; after each round the faults
//! heal and the time until the cluster commits again on every node is
//! measured; at the end every register and the balances are read, every
//! node's log is read and the run checked ([`check_run`]: every command,
//! whatever its payload, in the log; [`check_kv`]: the key-value results).

use super::kv_workload::{
    account_key, next_input, observe, KvEnd, KvInput, KvRecord, ACCOUNTS, OPENING, REGISTERS,
};
use super::models::{BankInput, RegisterInput};
use super::nodes::Nodes;
use super::proxy::{Counters, Direction};
use super::schedule::{schedule, Major, Round};
use super::verify::{check_run, Checked, End, Op, RunRecord, StatusRead};
use super::verify_kv::{check_kv, KvChecked};
use futures::future::join_all;
use hologram::consensus::Command;
use hologram::lattice::NodeId;
use hologram::node::{Ack, Client, KvOp, KvResult, NodeError};
use hologram::receipt::ChainHead;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Concurrent clients.
pub const CLIENTS: usize = 8;
/// How long a client waits for one node's answer before it tries another.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);
/// The most nodes a client tries per command (the same signed command each
/// time): client `k` tries `1 + k % ATTEMPTS`, so that some give up at the
/// first timeout (an unknown outcome) and others retry.
const ATTEMPTS: usize = 3;
/// How long the cluster may take to commit on every node after a heal.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(40);
/// The pause between rounds, faults healed.
const SETTLE: Duration = Duration::from_millis(500);

/// What a campaign measured.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// What the checks counted.
    pub checked: Checked,
    /// What the key-value checks counted.
    pub kv: KvChecked,
    /// Disk faults injected, and after how many of them the node had
    /// stopped (its process exited) by the heal.
    pub disk_stops: (u64, u64),
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Time from each heal until a new command was applied on every node,
    /// with the kind of the round's main fault.
    pub recoveries: Vec<(&'static str, Duration)>,
    /// Datagrams the proxy dropped (cut, lost), duplicated and held back.
    pub datagrams: [u64; 4],
    /// The wall time of the campaign, and of its parts: the schedule, the
    /// end (clients stopping, the nodes converging, the logs read), the
    /// checks.
    pub wall: Duration,
    /// See [`Figures::wall`].
    pub parts: [Duration; 3],
}

impl Figures {
    /// Adds another campaign's figures.
    pub fn add(&mut self, other: &Figures) {
        let (c, o) = (&mut self.checked, &other.checked);
        c.operations += o.operations;
        c.acked += o.acked;
        c.unknown.0 += o.unknown.0;
        c.unknown.1 += o.unknown.1;
        c.not_applied += o.not_applied;
        c.log += o.log;
        c.reads += o.reads;
        c.stale_reads += o.stale_reads;
        self.kv.add(&other.kv);
        self.disk_stops.0 += other.disk_stops.0;
        self.disk_stops.1 += other.disk_stops.1;
        for (k, v) in &other.faults {
            *self.faults.entry(k).or_default() += v;
        }
        self.recoveries.extend(&other.recoveries);
        for (a, b) in self.datagrams.iter_mut().zip(other.datagrams) {
            *a += b;
        }
        self.wall += other.wall;
        for (a, b) in self.parts.iter_mut().zip(other.parts) {
            *a += b;
        }
    }

    /// One paragraph of figures.
    pub fn summary(&self, histories: usize) -> String {
        let mut r: Vec<Duration> = self.recoveries.iter().map(|(_, d)| *d).collect();
        r.sort_unstable();
        let p50 = r.get(r.len() / 2).copied().unwrap_or_default();
        let max = r.last().copied().unwrap_or_default();
        let mut by_kind: BTreeMap<&str, (usize, Duration)> = BTreeMap::new();
        for (kind, d) in &self.recoveries {
            let e = by_kind.entry(kind).or_default();
            e.0 += 1;
            e.1 = e.1.max(*d);
        }
        let by_kind: Vec<String> = by_kind
            .iter()
            .map(|(k, (n, d))| format!("{k} ({n}) max {:.2} s", d.as_secs_f64()))
            .collect();
        let c = &self.checked;
        format!(
            "{histories} histories checked, 0 violations; {} operations ({} commands acknowledged, \
             {} unknown outcomes of which {} applied, {} not applied; {} status reads, {} of them \
             stale; key-value: {} register and {} bank operations, {} of unknown outcome, \
             {} balance totals checked, {} transfers refused for want of funds); \
             faults {:?} (a full disk stopped its node {} times of {}); datagrams dropped by cuts {}, lost {}, duplicated {}, held back {}; \
             recovery after {} heals: p50 {:.2} s, max {:.2} s (after {}); {:.0} s in all \
             (schedule {:.0} s, end {:.0} s, checks {:.1} s)",
            c.operations,
            c.acked,
            c.unknown.0,
            c.unknown.1,
            c.not_applied,
            c.reads,
            c.stale_reads,
            self.kv.register,
            self.kv.bank,
            self.kv.unknown,
            self.kv.totals,
            self.kv.refused,
            self.faults,
            self.disk_stops.1,
            self.disk_stops.0,
            self.datagrams[0],
            self.datagrams[1],
            self.datagrams[2],
            self.datagrams[3],
            r.len(),
            p50.as_secs_f64(),
            max.as_secs_f64(),
            by_kind.join(", "),
            self.wall.as_secs_f64(),
            self.parts[0].as_secs_f64(),
            self.parts[1].as_secs_f64(),
            self.parts[2].as_secs_f64(),
        )
    }
}

/// Nanoseconds since `origin`.
fn ns(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The payload of the command of `value`, and back.
fn payload(value: u64) -> Vec<u8> {
    format!("jepsen {value}").into_bytes()
}

/// Submits `command`: to `first`, then to the next nodes, `attempts` in
/// all, each bounded by [`ATTEMPT_TIMEOUT`]; how it ended.
async fn submit(
    client: &Client,
    ids: &[NodeId],
    first: usize,
    attempts: usize,
    command: &Command,
) -> Result<Ack, End> {
    for attempt in 0..attempts {
        let node = ids[(first + attempt) % ids.len()];
        match tokio::time::timeout(ATTEMPT_TIMEOUT, client.submit(node, command.clone())).await {
            Ok(Ok(ack)) => return Ok(ack),
            // Decided, and never applied under its sequence.
            Ok(Err(NodeError::NotApplied(_))) => return Err(End::NotApplied),
            // Pending, busy, refused, failed on the way, or no answer in
            // time: it may still be applied; try the next node.
            Ok(Err(_)) | Err(_) => {}
        }
    }
    Err(End::Unknown)
}

/// Shared by the workload's tasks.
struct Shared {
    origin: Instant,
    ids: Vec<NodeId>,
    next_value: AtomicU64,
    stop: AtomicBool,
    ops: Mutex<Vec<Op>>,
    reads: Mutex<Vec<StatusRead>>,
    /// The value of every command submitted, by (client, sequence).
    values: Mutex<HashMap<(NodeId, u64), u64>>,
    /// Every key-value operation of the workloads.
    kv: Mutex<Vec<KvRecord>>,
}

impl Shared {
    fn record(&self, op: Op) {
        self.ops.lock().unwrap().push(op);
    }

    /// The value of a command of the log (`None`: nobody here submitted it).
    fn value_of(&self, command: &Command) -> Option<u64> {
        let values = self.values.lock().unwrap();
        values.get(&(command.client(), command.sequence())).copied()
    }
}

/// Submits `client`'s command of a fresh value's payload, first to node
/// `first`; records it; when it was invoked, how it ended and its `Ack`.
async fn one_op(
    shared: &Shared,
    client: &Client,
    k: usize,
    first: usize,
    payload: impl FnOnce(u64) -> Vec<u8>,
) -> (u64, End, Option<Ack>) {
    let value = shared.next_value.fetch_add(1, Ordering::Relaxed);
    let command = client.command(payload(value)).expect("a command");
    let id = (command.client(), command.sequence());
    shared.values.lock().unwrap().insert(id, value);
    let call = ns(shared.origin);
    let attempts = 1 + k % ATTEMPTS;
    let (end, ack) = match submit(client, &shared.ids, first, attempts, &command).await {
        Ok(ack) => (
            End::Acked {
                at: ns(shared.origin),
                position: ack.position,
            },
            Some(ack),
        ),
        Err(end) => (end, None),
    };
    shared.record(Op {
        client: k,
        value,
        call,
        end: end.clone(),
    });
    (call, end, ack)
}

/// Submits `client`'s command of a fresh value, first to node `first`;
/// records it; the position it was acknowledged at.
async fn one_command(shared: &Shared, client: &Client, k: usize, first: usize) -> Option<u64> {
    let (_, _, ack) = one_op(shared, client, k, first, payload).await;
    ack.map(|a| a.position)
}

/// Runs `client`'s key-value operation `input` (a command like any other,
/// recorded as one), first at node `first`; records it; its result if
/// acknowledged.
async fn one_kv(
    shared: &Shared,
    client: &Client,
    k: usize,
    first: usize,
    input: KvInput,
) -> Option<KvResult> {
    let op = input
        .op()
        .encode()
        .expect("the workload's operations are in bounds");
    let (call, end, ack) = one_op(shared, client, k, first, |_| op).await;
    let end = match (end, ack) {
        (End::Acked { at, .. }, Some(ack)) => KvEnd::Returned {
            at,
            result: ack
                .kv
                .expect("a key-value operation's acknowledgement has its result"),
        },
        (End::NotApplied, _) => KvEnd::NotApplied,
        _ => KvEnd::Unknown,
    };
    let result = match &end {
        KvEnd::Returned { result, .. } => Some(result.clone()),
        _ => None,
    };
    shared.kv.lock().unwrap().push(KvRecord {
        client: k,
        input,
        call,
        end,
    });
    result
}

/// What client `k` runs: appends, the register workload or the bank's.
fn role(k: usize) -> usize {
    k % 3
}

async fn client_loop(shared: Arc<Shared>, client: Client, k: usize, seed: u64) {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (k as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut seen = HashMap::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let first = rng.random_range(0..shared.ids.len());
        if role(k) == 0 {
            one_command(&shared, &client, k, first).await;
        } else {
            let fresh = shared.next_value.fetch_add(1, Ordering::Relaxed) + 1;
            let input = next_input(&mut rng, role(k) == 2, fresh, &seen);
            if let Some(result) = one_kv(&shared, &client, k, first, input.clone()).await {
                observe(&mut seen, &input, &result);
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..30))).await;
    }
    client.close();
}

/// Runs `input` as client `k` until it is acknowledged (before the faults
/// or after they all healed).
async fn until_acked(shared: &Shared, client: &Client, k: usize, input: impl Fn() -> Payload) {
    for attempt in 0.. {
        let ok = match input() {
            Payload::Kv(input) => one_kv(shared, client, k, attempt, input).await.is_some(),
            Payload::Raw(op) => {
                let (_, _, ack) = one_op(shared, client, k, attempt, |_| op).await;
                ack.is_some()
            }
        };
        if ok {
            return;
        }
        assert!(attempt < 50, "no acknowledgement in 50 tries");
    }
}

/// A command for [`until_acked`]: a recorded key-value operation, or a
/// payload outside the workloads' histories.
enum Payload {
    Kv(KvInput),
    Raw(Vec<u8>),
}

async fn status_loop(shared: Arc<Shared>, client: Client, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    while !shared.stop.load(Ordering::Relaxed) {
        let node = rng.random_range(0..shared.ids.len());
        let call = ns(shared.origin);
        if let Ok(Ok(status)) =
            tokio::time::timeout(ATTEMPT_TIMEOUT, client.status(shared.ids[node])).await
        {
            shared.reads.lock().unwrap().push(StatusRead {
                node,
                call,
                applied: status.applied,
                head: status.head,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.close();
}

/// After a heal: a new command (of client [`CLIENTS`], which retries
/// [`ATTEMPTS`] times), first to `target`, acknowledged, and
/// applied on every node; the time since `healed`.
async fn recover(
    shared: &Shared,
    probe: &Client,
    target: usize,
    healed: Instant,
    seed: u64,
) -> Duration {
    let position = loop {
        if let Some(p) = one_command(shared, probe, CLIENTS, target).await {
            break p;
        }
        assert!(
            healed.elapsed() < RECOVERY_TIMEOUT,
            "seed {seed}: no command acknowledged {RECOVERY_TIMEOUT:?} after the heal"
        );
    };
    loop {
        let statuses = join_all(shared.ids.iter().map(|n| probe.status(*n))).await;
        if statuses
            .iter()
            .all(|s| s.as_ref().is_ok_and(|s| s.applied > position))
        {
            return healed.elapsed();
        }
        assert!(
            healed.elapsed() < RECOVERY_TIMEOUT,
            "seed {seed}: not applied everywhere {RECOVERY_TIMEOUT:?} after the heal: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Injects `round`'s faults; a disk fault is skipped (`false`) where the
/// data directories are not size-limited mounts.
fn inject(nodes: &mut Nodes, round: &Round) -> bool {
    for &(a, b, faults) in &round.links {
        nodes.degrade(a, b, faults);
    }
    match &round.major {
        Major::None => {}
        Major::Partition(side) => nodes.partition(side),
        Major::Kill(i) => nodes.kill(*i),
        Major::Pause(i) => nodes.pause(*i, true),
        Major::DiskFull(i) => match &nodes.disks {
            Ok(()) => {
                let filled = nodes.fill_disk(*i);
                tracing::debug!(node = i, filled, "disk full");
            }
            Err(_) => return false,
        },
    }
    true
}

/// Runs the campaign of `seed`: `n` nodes, `rounds` rounds of faults; its
/// figures and what it recorded. Panics, naming the seed, on a violation or
/// if liveness is not recovered.
pub fn campaign(seed: u64, n: usize, rounds: usize) -> (Figures, RunRecord) {
    let start = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut nodes = Nodes::new(n, seed);
    for i in 0..n {
        nodes.start(i);
    }
    let members = nodes.members();
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        ids: members.iter().map(|(id, _)| *id).collect(),
        next_value: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        ops: Mutex::new(Vec::new()),
        reads: Mutex::new(Vec::new()),
        values: Mutex::new(HashMap::new()),
        kv: Mutex::new(Vec::new()),
    });
    let anonymous = || {
        let _inside = runtime.enter();
        Client::anonymous(&members).unwrap()
    };
    let probe = anonymous();
    // The bank opens its accounts before the workload starts (not part of
    // the bank's history: its model starts with them open).
    runtime.block_on(async {
        for i in 0..ACCOUNTS {
            let open = KvOp::Write {
                key: account_key(i),
                value: OPENING.to_le_bytes().to_vec(),
            };
            let op = open.encode().unwrap();
            until_acked(&shared, &probe, CLIENTS, || Payload::Raw(op.clone())).await;
        }
    });
    let mut tasks = Vec::new();
    for k in 0..CLIENTS {
        tasks.push(runtime.spawn(client_loop(shared.clone(), anonymous(), k, seed)));
    }
    tasks.push(runtime.spawn(status_loop(shared.clone(), anonymous(), seed)));
    let mut figures = Figures::default();
    std::thread::sleep(Duration::from_millis(500));
    let plan = schedule(seed, n, rounds);
    let scheduled = Instant::now();
    for (r, round) in plan.iter().enumerate() {
        let injected = inject(&mut nodes, round);
        for kind in round.kinds() {
            if injected || kind != "disk full" {
                *figures.faults.entry(kind).or_default() += 1;
            }
        }
        if !injected {
            *figures.faults.entry("disk full (skipped)").or_default() += 1;
        }
        std::thread::sleep(round.hold);
        // Only a full disk may end a node's process: it must stop, not go
        // on without its store.
        let exited = nodes.exits.len();
        nodes.reap();
        if matches!(round.major, Major::DiskFull(_)) && injected {
            figures.disk_stops.0 += 1;
            figures.disk_stops.1 += (nodes.exits.len() - exited) as u64;
            for (i, why) in &nodes.exits[exited..] {
                println!("seed {seed}: node {i} stopped on a full disk: {why}");
            }
        } else {
            assert_eq!(
                nodes.exits.len(),
                exited,
                "seed {seed}: a node exited by itself: {:?}",
                nodes.exits
            );
        }
        // Recovery counts from the heal's start (a restart included).
        let healed = Instant::now();
        nodes.heal();
        let target = match round.major {
            Major::Kill(i) | Major::Pause(i) | Major::DiskFull(i) => i,
            Major::Partition(ref side) => side[0],
            Major::None => r % n,
        };
        let took = runtime.block_on(recover(&shared, &probe, target, healed, seed));
        let kind = match round.major {
            Major::None => "degraded links only",
            Major::Partition(_) => "a partition",
            Major::Kill(_) => "a kill",
            Major::Pause(_) => "a pause",
            Major::DiskFull(_) => "a full disk",
        };
        figures.recoveries.push((kind, took));
        std::thread::sleep(SETTLE);
    }
    // Quiesce: the clients finish their commands.
    shared.stop.store(true, Ordering::Relaxed);
    let ending = Instant::now();
    figures.parts[0] = ending - scheduled;
    runtime.block_on(async {
        for task in tasks {
            task.await.unwrap();
        }
        // The final reads: every register, and every balance.
        for key in 0..REGISTERS {
            let read = || Payload::Kv(KvInput::Register(key, RegisterInput::Read));
            until_acked(&shared, &probe, CLIENTS, read).await;
        }
        let read = || Payload::Kv(KvInput::Bank(BankInput::Read));
        until_acked(&shared, &probe, CLIENTS, read).await;
    });
    // Every node converged, then its log read.
    let converge_from = Instant::now();
    let logs = runtime.block_on(async {
        loop {
            let statuses = join_all(shared.ids.iter().map(|n| probe.status(*n))).await;
            let ok: Vec<_> = statuses.into_iter().filter_map(Result::ok).collect();
            if ok.len() == n
                && ok
                    .iter()
                    .all(|s| (s.applied, s.head) == (ok[0].applied, ok[0].head))
            {
                break;
            }
            assert!(
                converge_from.elapsed() < RECOVERY_TIMEOUT,
                "seed {seed}: the nodes did not converge: {ok:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let asked = ns(shared.origin);
        let logs = join_all(shared.ids.iter().map(|n| probe.log(*n))).await;
        (asked, ns(shared.origin), logs)
    });
    probe.close();
    let (asked, answered, logs) = logs;
    let logs: Vec<_> = logs
        .into_iter()
        .map(|l| l.unwrap_or_else(|e| panic!("seed {seed}: reading a log: {e}")))
        .collect();
    let longest = logs.iter().max_by_key(|l| l.len()).unwrap();
    let mut heads = vec![ChainHead::GENESIS];
    for (_, receipt) in longest {
        let next = heads.last().unwrap().next(receipt);
        heads.push(next);
    }
    let record = RunRecord {
        seed,
        ops: std::mem::take(&mut *shared.ops.lock().unwrap()),
        logs: logs
            .iter()
            .map(|l| l.iter().map(|(c, _)| shared.value_of(c)).collect())
            .collect(),
        heads,
        final_read: (asked, answered),
        reads: std::mem::take(&mut *shared.reads.lock().unwrap()),
        kv: std::mem::take(&mut *shared.kv.lock().unwrap()),
    };
    let checking = Instant::now();
    figures.parts[1] = checking - ending;
    figures.checked = check_run(&record).unwrap_or_else(|violations| {
        panic!(
            "seed {seed}: {} violation(s):\n{}",
            violations.len(),
            violations.join("\n")
        )
    });
    figures.kv = check_kv(&record.kv, seed).unwrap_or_else(|violations| {
        panic!(
            "seed {seed}: {} key-value violation(s):\n{}",
            violations.len(),
            violations.join("\n")
        )
    });
    figures.parts[2] = checking.elapsed();
    for relay in nodes.proxy.relays() {
        for d in [Direction::Forward, Direction::Backward] {
            let c = relay.counters(d);
            for (slot, counter) in [&c.cut, &c.lost, &c.duplicated, &c.held]
                .into_iter()
                .enumerate()
            {
                figures.datagrams[slot] += Counters::get(counter);
            }
        }
    }
    drop(nodes);
    runtime.shutdown_timeout(Duration::from_secs(1));
    figures.wall = start.elapsed();
    (figures, record)
}
