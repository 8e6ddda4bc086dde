//! [`run_load`]: a load generator for a cluster of validator nodes — many
//! simulated clients, each with a key of its own, submitting distinct
//! signed commands and timing each until the node acknowledges it (answers
//! once the command is committed and applied there).

use super::client::Client;
use super::control::MAX_SUBMIT_COMMANDS;
use super::error::NodeError;
use super::state::Ack;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use hdrhistogram::Histogram;
use hologram_consensus::MAX_COMMAND_BYTES;
use hologram_lattice::transport::TransportError;
use hologram_lattice::NodeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The payload sizes a load takes: room for what makes each command
/// distinct (a run nonce, the client's number, its sequence number), up to
/// the largest command.
pub const LOAD_PAYLOAD: RangeInclusive<usize> = 20..=MAX_COMMAND_BYTES;

/// The most simulated clients, and the most commands each may have
/// outstanding (each client is a QUIC endpoint of its own).
pub const LOAD_LIMITS: (usize, usize) = (4096, 4096);

/// The most requests a client may have outstanding: a node serves at most
/// 64 concurrent requests per connection.
const MAX_REQUESTS: usize = 64;

/// What load to offer, and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadConfig {
    /// The nodes (id and address); each client spreads its commands over
    /// all of them, round robin.
    pub nodes: Vec<(NodeId, SocketAddr)>,
    /// Simulated clients, each with a key generated in memory and an
    /// endpoint of its own.
    pub clients: usize,
    /// Commands each client may have outstanding at once.
    pub in_flight: usize,
    /// The most commands in one request: a client submits the commands due
    /// (all it has room for, in closed loop) in requests of up to this
    /// many, signed with one signature ([`Client::submit_payloads`]); 1
    /// submits each command alone, in a request and with a signature of
    /// its own. A client has at most `in_flight / batch` (rounded up)
    /// requests out, so at a fixed rate the commands that fall due while
    /// they are out go together in the next request. Within 1 to
    /// [`MAX_SUBMIT_COMMANDS`], and at most 64 requests out.
    pub batch: usize,
    /// How long new commands are submitted; those outstanding at the end
    /// are still waited for.
    pub duration: Duration,
    /// Stop submitting after this many commands in all (before the
    /// duration if reached first).
    pub commands: Option<u64>,
    /// Bytes of each command's payload, within [`LOAD_PAYLOAD`].
    pub size: usize,
    /// Commands per second offered in all (open loop: each submission is
    /// due at a fixed time and its latency counts from then, so a slow
    /// cluster shows as latency, not as a lower offered rate); `None`
    /// submits as fast as answers come back (closed loop).
    pub rate: Option<u64>,
}

/// One second of a run, as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadProgress {
    /// Seconds since the start (1 for the first).
    pub second: u64,
    /// Commands acknowledged during that second.
    pub acknowledged: u64,
    /// Commands acknowledged since the start.
    pub total: u64,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// Commands acknowledged.
    pub commands: u64,
    /// From the first submission to the last answer.
    pub elapsed: Duration,
    /// Latency percentiles of the acknowledged commands (submission, or
    /// the time it was due at a fixed rate, to acknowledgement): p50, p90,
    /// p99 and the maximum.
    pub latency: [Duration; 4],
    /// Submissions that failed, by kind of error.
    pub errors: BTreeMap<&'static str, u64>,
    /// CPU time (user and system) of this process during the run, from
    /// `/proc/self/stat` (Linux; `None` elsewhere).
    pub cpu: Option<Duration>,
}

impl LoadReport {
    /// Acknowledged commands per second.
    pub fn rate(&self) -> f64 {
        self.commands as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What a simulated client hands back at the end.
struct ClientResult {
    latencies: Histogram<u64>,
    errors: BTreeMap<&'static str, u64>,
    last: Instant,
}

/// What every simulated client shares.
struct Shared {
    nonce: u64,
    size: usize,
    start: Instant,
    deadline: Instant,
    /// Commands that may still be submitted (`u64::MAX` for no limit).
    budget: AtomicU64,
    acknowledged: AtomicU64,
    nodes: Vec<NodeId>,
}

/// Offers `config`'s load, calling `progress` once a second, and reports
/// what it measured. Must run within a multi-threaded tokio runtime.
/// Fails only when the configuration is out of range or the clients'
/// endpoints cannot be made; failed submissions are counted by kind.
///
/// Before the clock starts, every client connects to every node (a status
/// request each, all at once), so that the latencies measured are those
/// of submissions on open connections, as a client that stays connected
/// sees them, not of the QUIC handshakes a fresh client makes first.
pub async fn run_load(
    config: &LoadConfig,
    mut progress: impl FnMut(LoadProgress),
) -> Result<LoadReport, NodeError> {
    check(config)?;
    let clients = (0..config.clients)
        .map(|_| Client::anonymous(&config.nodes).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    connect(&clients, &config.nodes).await;
    let cpu_before = cpu_time();
    let start = Instant::now();
    let shared = Arc::new(Shared {
        nonce: run_nonce(),
        size: config.size,
        start,
        deadline: start + config.duration,
        budget: AtomicU64::new(config.commands.unwrap_or(u64::MAX)),
        acknowledged: AtomicU64::new(0),
        nodes: config.nodes.iter().map(|(id, _)| *id).collect(),
    });
    // At a fixed rate, each client's commands fall due every `clients /
    // rate` seconds, the clients' schedules spread evenly over one period.
    let period = config
        .rate
        .map(|rate| Duration::from_secs_f64(config.clients as f64 / rate as f64));
    let mut tasks = JoinSet::new();
    for (c, client) in clients.iter().enumerate() {
        let schedule = period.map(|p| (p.mul_f64(c as f64 / config.clients as f64), p));
        tasks.spawn(client_loop(
            Arc::clone(client),
            Arc::clone(&shared),
            c as u32,
            (config.in_flight, config.batch),
            schedule,
        ));
    }
    let mut results = Vec::new();
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::from_std(start) + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let (mut second, mut reported) = (0, 0);
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(result)) => results.push(result),
                Some(Err(e)) => {
                    tracing::warn!("a simulated client failed: {e}");
                }
                None => break,
            },
            _ = ticks.tick() => {
                second += 1;
                let total = shared.acknowledged.load(Ordering::Relaxed);
                progress(LoadProgress { second, acknowledged: total - reported, total });
                reported = total;
            }
        }
    }
    let cpu = cpu_time().zip(cpu_before).map(|(a, b)| a.saturating_sub(b));
    for client in &clients {
        client.close();
    }
    let mut latencies = histogram();
    let mut errors = BTreeMap::new();
    let mut last = start;
    for result in results {
        latencies
            .add(&result.latencies)
            .map_err(|e| NodeError::Io {
                doing: "merging latency histograms".into(),
                source: std::io::Error::other(e.to_string()),
            })?;
        for (kind, n) in result.errors {
            *errors.entry(kind).or_insert(0) += n;
        }
        last = last.max(result.last);
    }
    let at = |q: f64| Duration::from_micros(latencies.value_at_quantile(q));
    Ok(LoadReport {
        commands: latencies.len(),
        elapsed: last - start,
        latency: [
            at(0.5),
            at(0.9),
            at(0.99),
            Duration::from_micros(latencies.max()),
        ],
        errors,
        cpu,
    })
}

/// Connects every client to every node: one status request each, all at
/// once. A node that does not answer is not waited for again: its
/// submissions fail (and are counted) in the run.
async fn connect(clients: &[Arc<Client>], nodes: &[(NodeId, SocketAddr)]) {
    let mut handshakes = JoinSet::new();
    for client in clients {
        for &(node, _) in nodes {
            let client = Arc::clone(client);
            handshakes.spawn(async move {
                if let Err(e) = client.status(node).await {
                    tracing::warn!(%node, "connecting before the run: {e}");
                }
            });
        }
    }
    while handshakes.join_next().await.is_some() {}
}

/// Refuses a configuration out of range.
fn check(config: &LoadConfig) -> Result<(), NodeError> {
    let bad = |why: String| NodeError::Io {
        doing: "configuring the load".into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
    };
    if config.nodes.is_empty() {
        return Err(bad("no node to submit to".into()));
    }
    if !(1..=LOAD_LIMITS.0).contains(&config.clients)
        || !(1..=LOAD_LIMITS.1).contains(&config.in_flight)
    {
        return Err(bad(format!(
            "{} clients with {} in flight each: 1 to {} clients, 1 to {} each",
            config.clients, config.in_flight, LOAD_LIMITS.0, LOAD_LIMITS.1
        )));
    }
    if !(1..=MAX_SUBMIT_COMMANDS).contains(&config.batch)
        || config.in_flight.div_ceil(config.batch) > MAX_REQUESTS
    {
        return Err(bad(format!(
            "{} in flight in requests of {}: 1 to {MAX_SUBMIT_COMMANDS} commands a request, \
             at most {MAX_REQUESTS} requests outstanding",
            config.in_flight, config.batch
        )));
    }
    if !LOAD_PAYLOAD.contains(&config.size) {
        return Err(bad(format!(
            "payload of {} bytes: {} to {} expected",
            config.size,
            LOAD_PAYLOAD.start(),
            LOAD_PAYLOAD.end()
        )));
    }
    if config.rate == Some(0) {
        return Err(bad("a rate of 0 commands/s".into()));
    }
    Ok(())
}

/// A request's commands, with when each was due, and what became of them.
type Sent = BoxFuture<'static, (Vec<Instant>, Result<Vec<Result<Ack, NodeError>>, NodeError>)>;

/// One simulated client, `number`: keeps up to `in_flight` commands
/// outstanding until the deadline or the budget runs out, submitting the
/// commands due (in closed loop, as many as it has room for) in requests
/// of at most `batch` commands signed at once, each request to the next
/// node, with at most `in_flight / batch` (rounded up) requests out: at a
/// fixed rate, the commands that fall due while they are out wait for the
/// next request (the client batches as a group commit does). `schedule`: at a fixed rate, when its first command is due and
/// the period between two.
async fn client_loop(
    client: Arc<Client>,
    shared: Arc<Shared>,
    number: u32,
    (in_flight, batch): (usize, usize),
    schedule: Option<(Duration, Duration)>,
) -> ClientResult {
    let mut result = ClientResult {
        latencies: histogram(),
        errors: BTreeMap::new(),
        last: shared.start,
    };
    let mut outstanding: FuturesUnordered<Sent> = FuturesUnordered::new();
    let requests = in_flight.div_ceil(batch);
    let (mut busy, mut sequence, mut node) = (0, 0u64, number as usize);
    let mut due = schedule.map(|(offset, _)| shared.start + offset);
    let mut stopped = false;
    loop {
        // Submit what is due, as room allows: at most `in_flight` commands
        // and `in_flight / batch` requests outstanding, so that commands
        // falling due while a request is out go together in the next one.
        while !stopped && busy < in_flight && outstanding.len() < requests {
            let now = Instant::now();
            let mut sent = Vec::new();
            while sent.len() < (in_flight - busy).min(batch) {
                match due {
                    Some(at) if at > now => break,
                    _ if now >= shared.deadline || !take_one(&shared.budget) => {
                        stopped = true;
                        break;
                    }
                    _ => {}
                }
                sent.push(due.unwrap_or(now));
                due = due.zip(schedule).map(|(at, (_, period))| at + period);
            }
            if sent.is_empty() {
                break;
            }
            let payloads = (0..sent.len())
                .map(|_| {
                    sequence += 1;
                    payload(shared.nonce, number, sequence, shared.size)
                })
                .collect();
            let target = shared.nodes[node % shared.nodes.len()];
            node += 1;
            busy += sent.len();
            let client = Arc::clone(&client);
            outstanding.push(
                async move {
                    let answers = client.submit_payloads(target, payloads).await;
                    let answers = answers.map(|a| a.into_iter().map(|(_, r)| r).collect());
                    (sent, answers)
                }
                .boxed(),
            );
        }
        // Wait for answers, or (at a fixed rate, with room) the next due.
        let wake = due.filter(|_| !stopped && busy < in_flight && outstanding.len() < requests);
        if outstanding.is_empty() && wake.is_none() {
            break;
        }
        let next_due = tokio::time::sleep_until(tokio::time::Instant::from_std(
            wake.unwrap_or(shared.deadline),
        ));
        tokio::select! {
            Some((sent, answers)) = outstanding.next() => {
                let now = Instant::now();
                result.last = now;
                busy -= sent.len();
                match answers {
                    Ok(answers) => {
                        for (at, answer) in sent.iter().zip(answers) {
                            result.record(&shared, now - *at, answer);
                        }
                    }
                    Err(e) => *result.errors.entry(error_kind(&e)).or_insert(0) += sent.len() as u64,
                }
            }
            _ = next_due, if wake.is_some() => {}
        }
    }
    result
}

impl ClientResult {
    /// One command's answer, `took` after it was due.
    fn record(&mut self, shared: &Shared, took: Duration, answer: Result<Ack, NodeError>) {
        match answer {
            Ok(_) => {
                let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                self.latencies.saturating_record(micros.max(1));
                shared.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => *self.errors.entry(error_kind(&e)).or_insert(0) += 1,
        }
    }
}

/// Takes one command from `budget`, if any is left.
fn take_one(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}

/// A latency histogram in microseconds, 1 µs to an hour, 3 significant
/// digits.
fn histogram() -> Histogram<u64> {
    // Constant bounds that `new_with_bounds` takes (low ≥ 1, high ≥ 2 ×
    // low, significant digits ≤ 5): it cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid constant histogram bounds")
}

/// A payload of `size` bytes unique to (run, client, sequence): those
/// first, little-endian, then a filler.
fn payload(nonce: u64, client: u32, sequence: u64, size: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&nonce.to_le_bytes());
    bytes.extend_from_slice(&client.to_le_bytes());
    bytes.extend_from_slice(&sequence.to_le_bytes());
    bytes.resize(size.max(bytes.len()), b'.');
    bytes
}

/// A number unlikely to repeat across runs: the clock's nanoseconds mixed
/// with the process id.
fn run_nonce() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 40)
}

/// A short name for the kind of a failed submission.
fn error_kind(e: &NodeError) -> &'static str {
    match e {
        NodeError::Transport(t) => match t {
            TransportError::Unreachable(_) => "unreachable",
            TransportError::TimedOut { .. } => "timed out",
            TransportError::TooLarge { .. } => "too large",
            TransportError::Refused(_) => "refused",
            TransportError::Remote(_) => "remote error",
            TransportError::Closed => "closed",
            TransportError::Io(_) => "connection",
            _ => "transport",
        },
        NodeError::Consensus(_) => "command",
        NodeError::Wire(_) => "bad answer",
        NodeError::UnexpectedResponse { .. } => "unexpected answer",
        NodeError::Busy { .. } => "busy",
        NodeError::Pending { .. } => "pending",
        NodeError::Refused { .. } => "refused",
        NodeError::NotApplied(_) => "not applied",
        _ => "other",
    }
}

/// CPU time of this process so far (user and system), from
/// `/proc/self/stat` on Linux (in clock ticks of 10 ms).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name (which ends at the last ')'): the state is the
    // first field, utime the 12th and stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_distinct_and_sized() {
        let a = payload(1, 2, 3, 64);
        assert_eq!(a.len(), 64);
        assert_ne!(a, payload(1, 2, 4, 64));
        assert_ne!(a, payload(1, 3, 3, 64));
        assert_ne!(a, payload(2, 2, 3, 64));
        assert_eq!(payload(1, 2, 3, 20).len(), 20);
    }

    #[test]
    fn the_budget_runs_out() {
        let budget = AtomicU64::new(2);
        assert!(take_one(&budget));
        assert!(take_one(&budget));
        assert!(!take_one(&budget));
        assert!(!take_one(&budget));
    }

    #[test]
    fn bad_configurations_are_refused() {
        let node = (NodeId::from_bytes([1; 32]), "127.0.0.1:1".parse().unwrap());
        let good = LoadConfig {
            nodes: vec![node],
            clients: 2,
            in_flight: 2,
            batch: 1,
            duration: Duration::from_secs(1),
            commands: None,
            size: 64,
            rate: None,
        };
        assert!(check(&good).is_ok());
        for bad in [
            LoadConfig {
                nodes: vec![],
                ..good.clone()
            },
            LoadConfig {
                clients: 0,
                ..good.clone()
            },
            LoadConfig {
                in_flight: 65,
                ..good.clone()
            },
            LoadConfig {
                batch: 0,
                ..good.clone()
            },
            LoadConfig {
                batch: MAX_SUBMIT_COMMANDS + 1,
                in_flight: 4096,
                ..good.clone()
            },
            LoadConfig {
                size: 19,
                ..good.clone()
            },
            LoadConfig {
                size: MAX_COMMAND_BYTES + 1,
                ..good.clone()
            },
            LoadConfig {
                rate: Some(0),
                ..good.clone()
            },
        ] {
            assert!(check(&bad).is_err(), "{bad:?}");
        }
    }

    /// A four-node cluster in this process (each node its own endpoint,
    /// store and driver, on 127.0.0.1), loaded for two seconds: every
    /// acknowledged command is applied on the node that acknowledged it,
    /// and nothing fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_cluster_takes_the_load() {
        use super::super::{NodeConfig, ValidatorNode};
        let dir = std::env::temp_dir().join(format!(
            "hologram-load-{}-{}",
            std::process::id(),
            run_nonce()
        ));
        let sockets: Vec<std::net::UdpSocket> = (0..4)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
        drop(sockets);
        let keys: Vec<_> = (0..4u8)
            .map(|i| hologram_receipt::KeyPair::from_seed([i + 1; 32]))
            .collect();
        let members: Vec<(NodeId, SocketAddr)> = keys
            .iter()
            .map(|k| k.node_id())
            .zip(addrs.iter().copied())
            .collect();
        let mut drivers = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let peers = members
                .iter()
                .copied()
                .filter(|(id, _)| *id != k.node_id())
                .collect();
            let config = NodeConfig::new(k.clone(), addrs[i], peers, dir.join(format!("node{i}")));
            let node = ValidatorNode::start(config).await.unwrap();
            drivers.push(node.driver());
            tokio::spawn(node.run());
        }
        let config = LoadConfig {
            nodes: members.clone(),
            clients: 4,
            in_flight: 4,
            batch: 2,
            duration: Duration::from_secs(2),
            commands: None,
            size: 64,
            rate: None,
        };
        let mut seconds = Vec::new();
        let report = run_load(&config, |p| seconds.push(p)).await.unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert!(report.commands > 0, "{report:?}");
        assert!(report.elapsed >= config.duration, "{report:?}");
        let [p50, p90, p99, max] = report.latency;
        assert!(
            p50 <= p90 && p90 <= p99 && p99 <= max && max > Duration::ZERO,
            "{report:?}"
        );
        // A progress line a second, adding up to what was reported by then.
        assert!(!seconds.is_empty() && seconds.len() <= 3, "{seconds:?}");
        for (i, p) in seconds.iter().enumerate() {
            assert_eq!(p.second, i as u64 + 1);
            let sum: u64 = seconds[..=i].iter().map(|p| p.acknowledged).sum();
            assert_eq!(p.total, sum);
            assert!(p.total <= report.commands);
        }
        // The acknowledged commands, spread round robin, are all in the
        // common log: node 0 applies them all (soon, if it lags).
        let reader = Client::anonymous(&members).unwrap();
        let waited = Instant::now();
        loop {
            let status = reader.status(members[0].0).await.unwrap();
            if status.applied >= report.commands {
                break;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(20),
                "{status:?} < {report:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A budget stops the load early.
        let budget = LoadConfig {
            commands: Some(5),
            duration: Duration::from_secs(30),
            ..config
        };
        let report = run_load(&budget, |_| {}).await.unwrap();
        assert_eq!((report.commands, report.errors.len()), (5, 0), "{report:?}");
        assert!(report.elapsed < Duration::from_secs(30));
        reader.close();
        for d in drivers {
            d.stop();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_histogram_keeps_microseconds() {
        let mut h = histogram();
        h.saturating_record(1_500);
        assert_eq!(h.len(), 1);
        assert!((1_499..=1_501).contains(&h.value_at_quantile(0.5)));
    }
}
