//! `hologram-node`: one validator of a BFT cluster over QUIC, or a client
//! of one (built with `--features net`). The node is
//! [`hologram::node`]; this is its command line, parsed by hand, and its
//! four modes: make a key, run a node, talk to a node, load a cluster.
//!
//! Four nodes on one machine (each in its own terminal):
//!
//! ```text
//! cargo build --release --features net --bin hologram-node
//! for i in 1 2 3 4; do target/release/hologram-node --gen-key node$i.key; done
//! # write peers.txt: one line <id>@127.0.0.1:700<i> per node, ids as printed above
//! target/release/hologram-node --listen 127.0.0.1:7001 --key node1.key --data node1 --peers peers.txt
//! # ... and the same for nodes 2, 3 and 4
//! target/release/hologram-node --gen-key client.key
//! target/release/hologram-node --node <id1>@127.0.0.1:7001 --client-key client.key --submit "set x = 1"
//! target/release/hologram-node --node <id2>@127.0.0.1:7002 --status
//! target/release/hologram-node --bench --node <id1>@127.0.0.1:7001 --node <id2>@127.0.0.1:7002 \
//!     --clients 64 --in-flight 8 --duration 30s --size 64
//! ```
//!
//! Logs go to stderr (`RUST_LOG` filters them, default `info`); the lines a
//! script reads (`ready ...`, a client's answers) go to stdout.

use hologram::consensus::SetOp;
use hologram::lattice::NodeId;
use hologram::node::{
    change_validators, generate_key_file, merge_peers, parse_node_id, parse_peer, read_key_file,
    read_peers_file, resolve, run_load, Client, LoadConfig, LoadProgress, LoadReport, NodeConfig,
    NodeError, ValidatorNode, DEFAULT_KEEP_COMMANDS, DEFAULT_PIPELINE, DEFAULT_SNAPSHOT_EVERY,
    LOAD_LIMITS, LOAD_PAYLOAD, MAX_SUBMIT_COMMANDS,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How long a change waits to be in force.
const CHANGE_PATIENCE: Duration = Duration::from_secs(60);

/// The usage text.
const USAGE: &str = "\
hologram-node: one validator of a BFT cluster over QUIC, or a client of one.

Make a key, for a node or a client (prints the id the others name it by):
  hologram-node --gen-key <file>

Run a node:
  hologram-node --listen <addr> --key <file> --data <dir>
                (--peer <id>@<addr>)... [--peers <file>] [--pipeline <n>]
                [--snapshot-every <heights>] [--keep-commands <n>]
                [--metrics <addr>] [--log-format text|json]
                [--genesis <file>] [--operator <id>]... [--threads <n>]
  The validators of a new cluster are the nodes of its peers: each node
  itself and its peers. A peers file holds one <id>@<addr> a line (# starts
  a comment); a node skips its own line, so every node can share one file.
  --genesis: the cluster's original validators, as a peers file (their
  addresses are dialed too): a node that joins a running cluster, or any
  node once the validators changed, names them there; the decided changes
  say who the validators are since, and the node's peers follow them.
  --operator: a key (its id, from --gen-key) allowed to ask this node to
  approve validator changes (--add, --remove, --replace below). --pipeline: heights decided
  concurrently (default 4). --snapshot-every: snapshot the state machine
  every so many heights (default 1024; every validator must use the same):
  once a snapshot is certified the durable log below it is deleted, and a
  node that is empty or behind fetches the newest certified snapshot from
  its peers. --keep-commands: the newest applied commands kept on disk for
  --log (default 100000). --metrics: serve GET /metrics (Prometheus text
  format) and GET /health (ready, lagging or stalled) over HTTP there, e.g.
  127.0.0.1:9464. Logs go to stderr, filtered by RUST_LOG (default info),
  as text lines or (--log-format json) one JSON object a line. --threads:
  the node's runtime threads (default: one per CPU; 1 runs it on one thread,
  which saves thread wake-ups when several nodes share a machine's cores;
  durable writes run on a thread of their own either way).

Talk to a node:
  hologram-node --node <id>@<addr> --client-key <file> --submit <text> [--submit <text>]...
  hologram-node --node <id>@<addr> --status [--json]
  hologram-node --node <id>@<addr> --log
  --log prints the applied commands the node keeps (the newest ones), each
  with its position. The client connects with its key (made by --gen-key; --status and --log
  use a throwaway one without --client-key) and signs every command with
  it: the node takes only commands signed by the key the client proved,
  and the replicas verify them, so no one else can submit or alter one in
  its name. --status --json prints the node's report as JSON: heights,
  chain head, health, mempool, data directory size, and each peer's state.

Change the validators of a running cluster (an operator):
  hologram-node (--node <id>@<addr>)... --client-key <file> --add <id>
  hologram-node (--node <id>@<addr>)... --client-key <file> --remove <id>
  hologram-node (--node <id>@<addr>)... --client-key <file> --replace <old-id>,<new-id>
  hologram-node --node <id>@<addr> --members
  Asks each --node (started with --operator <the client key's id>) to
  approve the change, and once a quorum of the current validators did,
  hands it to them all: it is decided, and in force 16 heights later. Prints
  the new set once it is in force (waits up to 60s). A node to add is started first
  with --genesis; it syncs once its addition is decided, and votes once it
  is in force. --members prints the validators a node follows.

Load a cluster (a load generator):
  hologram-node --bench (--node <id>@<addr>)... [--clients <n>] [--in-flight <n>]
                [--batch <n>] [--duration <time>] [--size <bytes>] [--rate <n>]
                [--commands <n>]
  Simulated clients (default 64), each with a key generated in memory and
  one connection per node, submit distinct commands of --size bytes
  (default 64) spread over the nodes, at most --in-flight (default 8)
  outstanding per client, those due sent together in requests of at most
  --batch commands (default: --in-flight) signed with one signature (1:
  each command alone, in a request of its own), for
  --duration (default 30s; 500ms, 30s, 2m or plain seconds), or until
  --commands are submitted. A command counts once the node acknowledges it
  (it answers once the command is committed and applied). --rate offers n
  commands/s in all (open loop; latency counts from when each was due).
  Prints a progress line a second to stderr, then a summary to stdout.
";

/// A command line the program does not take (the usage follows).
#[derive(Debug)]
enum CliError {
    Usage(String),
    Node(NodeError),
}

impl From<NodeError> for CliError {
    fn from(e: NodeError) -> Self {
        CliError::Node(e)
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(why) => write!(f, "bad command line: {why}"),
            CliError::Node(e) => write!(f, "{e}"),
        }
    }
}

fn main() {
    match run(std::env::args().skip(1)) {
        Ok(()) => {}
        Err(e @ CliError::Usage(_)) => {
            eprintln!("{e}\n\n{USAGE}");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("hologram-node: {e}");
            std::process::exit(1);
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Invocation {
    /// Print the usage.
    Help,
    /// Make a key file.
    GenKey(PathBuf),
    /// Run a node.
    Run(RunOptions),
    /// Load a cluster.
    Bench(LoadConfig),
    /// Change the validators.
    Change {
        /// The nodes asked to approve.
        nodes: Vec<(NodeId, SocketAddr)>,
        /// The operator's key file.
        key: PathBuf,
        /// The change.
        op: SetOp,
    },
    /// Talk to a node.
    Client {
        /// The node.
        node: (NodeId, SocketAddr),
        /// The client's key file (needed to submit).
        key: Option<PathBuf>,
        /// What to ask.
        action: ClientAction,
    },
}

/// How to run a node, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunOptions {
    /// Where to listen.
    listen: SocketAddr,
    /// The key file.
    key: PathBuf,
    /// The data directory.
    data: PathBuf,
    /// Peers given with `--peer`.
    peers: Vec<(NodeId, SocketAddr)>,
    /// Peers files given with `--peers`.
    peers_files: Vec<PathBuf>,
    /// Heights decided concurrently.
    pipeline: usize,
    /// The snapshot interval, in heights.
    snapshot_every: u64,
    /// Applied commands kept for log pages.
    keep_commands: u64,
    /// The runtime's threads (`None`: one per CPU).
    threads: Option<usize>,
    /// Where to serve metrics and health.
    metrics: Option<SocketAddr>,
    /// Logs as JSON lines.
    json_logs: bool,
    /// The genesis validators' peers file.
    genesis: Option<PathBuf>,
    /// Keys that may ask for approvals.
    operators: Vec<NodeId>,
}

/// What a client asks a node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClientAction {
    /// Submit these commands, one after the other.
    Submit(Vec<String>),
    /// Print the node's status (with `true`: its whole report, as JSON).
    Status(bool),
    /// Print the node's log of applied commands.
    Log,
    /// Print the validator sets the node follows.
    Members,
}

/// Parses the arguments (without the program name).
fn parse(args: impl IntoIterator<Item = String>) -> Result<Invocation, CliError> {
    let mut args = args.into_iter();
    let mut listen = None;
    let mut key = None;
    let mut data = None;
    let mut gen_key = None;
    let mut client_key = None;
    let mut pipeline = None;
    let mut snapshot_every = None;
    let mut keep_commands = None;
    let mut threads = None;
    let mut peers = Vec::new();
    let mut peers_files = Vec::new();
    let mut submits = Vec::new();
    let mut status = false;
    let mut log = false;
    let mut bench = false;
    let mut nodes = Vec::new();
    let mut clients = None;
    let mut in_flight = None;
    let mut batch = None;
    let mut duration = None;
    let mut size = None;
    let mut rate = None;
    let mut commands = None;
    let mut metrics = None;
    let mut log_format = None;
    let mut json = false;
    let mut genesis = None;
    let mut operators = Vec::new();
    let mut op: Option<SetOp> = None;
    let mut members = false;
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| CliError::Usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(Invocation::Help),
            "--listen" => {
                let addr = resolve(&value()?).map_err(CliError::Usage)?;
                set_once(&mut listen, &flag, addr)?;
            }
            "--key" => set_once(&mut key, &flag, PathBuf::from(value()?))?,
            "--data" => set_once(&mut data, &flag, PathBuf::from(value()?))?,
            "--gen-key" => set_once(&mut gen_key, &flag, PathBuf::from(value()?))?,
            "--client-key" => set_once(&mut client_key, &flag, PathBuf::from(value()?))?,
            "--node" => nodes.push(parse_peer(&value()?)?),
            "--bench" => bench = true,
            "--clients" => set_once(
                &mut clients,
                &flag,
                number(&flag, &value()?, 1..=LOAD_LIMITS.0)?,
            )?,
            "--in-flight" => set_once(
                &mut in_flight,
                &flag,
                number(&flag, &value()?, 1..=LOAD_LIMITS.1)?,
            )?,
            "--batch" => set_once(
                &mut batch,
                &flag,
                number(&flag, &value()?, 1..=MAX_SUBMIT_COMMANDS)?,
            )?,
            "--duration" => set_once(&mut duration, &flag, parse_duration(&flag, &value()?)?)?,
            "--size" => set_once(&mut size, &flag, number(&flag, &value()?, LOAD_PAYLOAD)?)?,
            "--rate" => set_once(
                &mut rate,
                &flag,
                number(&flag, &value()?, 1..=100_000_000)? as u64,
            )?,
            "--commands" => set_once(
                &mut commands,
                &flag,
                number(&flag, &value()?, 1..=usize::MAX)? as u64,
            )?,
            "--peer" => peers.push(parse_peer(&value()?)?),
            "--peers" => peers_files.push(PathBuf::from(value()?)),
            "--pipeline" => {
                let depth = number(&flag, &value()?, 1..=256)?;
                set_once(&mut pipeline, &flag, depth)?;
            }
            "--threads" => set_once(&mut threads, &flag, number(&flag, &value()?, 1..=1024)?)?,
            "--snapshot-every" => set_once(
                &mut snapshot_every,
                &flag,
                number(&flag, &value()?, 1..=1 << 40)? as u64,
            )?,
            "--keep-commands" => set_once(
                &mut keep_commands,
                &flag,
                number(&flag, &value()?, 1..=1 << 40)? as u64,
            )?,
            "--submit" => submits.push(value()?),
            "--status" => status = true,
            "--json" => json = true,
            "--metrics" => {
                let addr = resolve(&value()?).map_err(CliError::Usage)?;
                set_once(&mut metrics, &flag, addr)?;
            }
            "--log-format" => {
                let format = value()?;
                if format != "text" && format != "json" {
                    return Err(CliError::Usage(format!(
                        "--log-format {format:?}: text or json expected"
                    )));
                }
                set_once(&mut log_format, &flag, format)?;
            }
            "--log" => log = true,
            "--members" => members = true,
            "--genesis" => set_once(&mut genesis, &flag, PathBuf::from(value()?))?,
            "--operator" => operators.push(parse_node_id(&value()?)?),
            "--add" => set_once(&mut op, "a change", SetOp::Add(parse_node_id(&value()?)?))?,
            "--remove" => set_once(
                &mut op,
                "a change",
                SetOp::Remove(parse_node_id(&value()?)?),
            )?,
            "--replace" => {
                let text = value()?;
                let (old, new) = text.split_once(',').ok_or_else(|| {
                    CliError::Usage(format!("--replace {text:?}: <old-id>,<new-id> expected"))
                })?;
                let (old, new) = (parse_node_id(old)?, parse_node_id(new)?);
                set_once(&mut op, "a change", SetOp::Replace { old, new })?;
            }
            other => return Err(CliError::Usage(format!("unknown argument {other:?}"))),
        }
    }

    let load_flags = clients.is_some()
        || in_flight.is_some()
        || batch.is_some()
        || duration.is_some()
        || size.is_some()
        || rate.is_some()
        || commands.is_some();
    if json && !status {
        return Err(CliError::Usage("--json goes with --status".into()));
    }
    let node_flags = metrics.is_some()
        || genesis.is_some()
        || !operators.is_empty()
        || log_format.is_some()
        || snapshot_every.is_some()
        || keep_commands.is_some()
        || threads.is_some();
    if node_flags && (listen.is_none() || bench || gen_key.is_some() || !nodes.is_empty()) {
        return Err(CliError::Usage(
            "--metrics, --log-format, --snapshot-every, --keep-commands, --genesis, \
             --operator and --threads are for running a node (--listen)"
                .into(),
        ));
    }
    if bench {
        let others = listen.is_some() || key.is_some() || data.is_some() || gen_key.is_some();
        if others || client_key.is_some() || pipeline.is_some() || status || log || members {
            return Err(CliError::Usage(
                "--bench takes --node, --clients, --in-flight, --batch, --duration, --size, \
                 --rate and --commands only (each simulated client makes its own key)"
                    .into(),
            ));
        }
        if nodes.is_empty()
            || !submits.is_empty()
            || !peers.is_empty()
            || !peers_files.is_empty()
            || op.is_some()
        {
            return Err(CliError::Usage(
                "--bench needs --node, and no --submit, --peer or change".into(),
            ));
        }
        let in_flight = in_flight.unwrap_or(8);
        return Ok(Invocation::Bench(LoadConfig {
            nodes,
            clients: clients.unwrap_or(64),
            in_flight,
            batch: batch.unwrap_or(in_flight.min(MAX_SUBMIT_COMMANDS)),
            duration: duration.unwrap_or(Duration::from_secs(30)),
            commands,
            size: size.unwrap_or(64),
            rate,
        }));
    }
    if load_flags {
        return Err(CliError::Usage(
            "--clients, --in-flight, --batch, --duration, --size, --rate and --commands \
             need --bench"
                .into(),
        ));
    }
    if let Some(op) = op {
        let others = listen.is_some() || key.is_some() || data.is_some() || gen_key.is_some();
        if others || !submits.is_empty() || status || log || members || nodes.is_empty() {
            return Err(CliError::Usage(
                "--add, --remove and --replace take --node (one or more) and --client-key only"
                    .into(),
            ));
        }
        let key = client_key.ok_or_else(|| {
            CliError::Usage("a change needs --client-key: the operator's key".into())
        })?;
        return Ok(Invocation::Change { nodes, key, op });
    }
    if nodes.len() > 1 {
        return Err(CliError::Usage(
            "--node given twice (only --bench and changes take several)".into(),
        ));
    }
    let node = nodes.pop();
    if let Some(path) = gen_key {
        let others = listen.is_some()
            || key.is_some()
            || data.is_some()
            || node.is_some()
            || client_key.is_some();
        if others || !peers.is_empty() || !peers_files.is_empty() {
            return Err(CliError::Usage("--gen-key takes no other flag".into()));
        }
        return Ok(Invocation::GenKey(path));
    }
    if let Some(node) = node {
        let asked = usize::from(!submits.is_empty())
            + usize::from(status)
            + usize::from(log)
            + usize::from(members);
        if asked != 1 {
            return Err(CliError::Usage(
                "--node needs exactly one of --submit, --status, --log, --members or a change"
                    .into(),
            ));
        }
        let action = if members {
            ClientAction::Members
        } else if status {
            ClientAction::Status(json)
        } else if log {
            ClientAction::Log
        } else if client_key.is_none() {
            return Err(CliError::Usage(
                "--submit needs --client-key: commands are signed by their client".into(),
            ));
        } else {
            ClientAction::Submit(submits)
        };
        return Ok(Invocation::Client {
            node,
            key: client_key,
            action,
        });
    }
    if !submits.is_empty() || status || log || members || client_key.is_some() {
        return Err(CliError::Usage(
            "--submit, --status, --log, --members and --client-key need --node".into(),
        ));
    }
    match (listen, key, data) {
        (None, None, None) if peers.is_empty() && peers_files.is_empty() => Ok(Invocation::Help),
        (Some(listen), Some(key), Some(data)) => Ok(Invocation::Run(RunOptions {
            listen,
            key,
            data,
            peers,
            peers_files,
            pipeline: pipeline.unwrap_or(DEFAULT_PIPELINE),
            snapshot_every: snapshot_every.unwrap_or(DEFAULT_SNAPSHOT_EVERY),
            keep_commands: keep_commands.unwrap_or(DEFAULT_KEEP_COMMANDS),
            threads,
            metrics,
            json_logs: log_format.as_deref() == Some("json"),
            genesis,
            operators,
        })),
        _ => Err(CliError::Usage(
            "a node needs --listen, --key and --data".into(),
        )),
    }
}

/// Parses a number of `range` given to `flag`.
fn number(
    flag: &str,
    text: &str,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, CliError> {
    text.parse::<usize>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{flag} {text:?}: a number from {} to {} expected",
                range.start(),
                range.end()
            ))
        })
}

/// Parses a duration given to `flag`: `500ms`, `30s`, `2m`, or plain seconds.
fn parse_duration(flag: &str, text: &str) -> Result<Duration, CliError> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n = digits
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0 && n <= 1_000_000);
    match (n, unit) {
        (Some(n), "ms") => Ok(Duration::from_millis(n)),
        (Some(n), "s") => Ok(Duration::from_secs(n)),
        (Some(n), "m") => Ok(Duration::from_secs(n * 60)),
        _ => Err(CliError::Usage(format!(
            "{flag} {text:?}: a duration like 500ms, 30s or 2m expected"
        ))),
    }
}

fn set_once<T>(slot: &mut Option<T>, flag: &str, value: T) -> Result<(), CliError> {
    if slot.replace(value).is_some() {
        return Err(CliError::Usage(format!("{flag} given twice")));
    }
    Ok(())
}

/// Runs what the arguments ask for; the text to print on success is
/// printed as it comes.
fn run(args: impl IntoIterator<Item = String>) -> Result<(), CliError> {
    match parse(args)? {
        Invocation::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Invocation::GenKey(path) => {
            let keys = generate_key_file(&path)?;
            println!("{}", keys.node_id());
            Ok(())
        }
        Invocation::Run(options) => {
            let keys = read_key_file(&options.key)?;
            let mut given = options.peers.clone();
            for file in &options.peers_files {
                given.extend(read_peers_file(file)?);
            }
            let genesis = options
                .genesis
                .as_deref()
                .map(read_peers_file)
                .transpose()?;
            if let Some(genesis) = &genesis {
                given.extend(genesis.iter().copied());
            }
            let peers = merge_peers(keys.node_id(), given)?;
            let mut config = NodeConfig::new(keys, options.listen, peers, options.data);
            config.genesis = genesis.map(|g| g.into_iter().map(|(id, _)| id).collect());
            config.operators = options.operators.clone();
            config.pipeline = options.pipeline;
            config.snapshot_every = options.snapshot_every;
            config.keep_commands = options.keep_commands;
            config.metrics = options.metrics;
            logging_as(options.json_logs);
            node_runtime(options.threads)?.block_on(async {
                let node = ValidatorNode::start(config).await?;
                let info = node.info();
                let metrics = info.metrics.map(|a| format!(" metrics={a}"));
                println!(
                    "ready node={} listen={} validators={} set={} heights={} applied={} head={} \
                     snapshot={}{}",
                    info.id,
                    info.listen,
                    info.validators,
                    info.set,
                    info.heights,
                    info.applied,
                    info.head,
                    info.snapshot,
                    metrics.unwrap_or_default(),
                );
                Ok(node.run().await?)
            })
        }
        Invocation::Bench(config) => {
            logging_at("warn");
            let report = runtime()?.block_on(run_load(&config, |p: LoadProgress| {
                eprintln!(
                    "{:>4}s {:>8} acknowledged {:>10} total",
                    p.second, p.acknowledged, p.total
                )
            }))?;
            print!("{}", summary(&config, &report));
            Ok(())
        }
        Invocation::Change { nodes, key, op } => {
            let keys = read_key_file(&key)?;
            logging_at("warn");
            runtime()?.block_on(async {
                let client = Client::new(&keys, &nodes)?;
                let ids: Vec<NodeId> = nodes.iter().map(|(id, _)| *id).collect();
                let done = change_validators(&client, &ids, op, CHANGE_PATIENCE).await?;
                println!(
                    "changed version={} in-force-at={} validators={}",
                    done.version,
                    done.in_force_at,
                    done.validators.len()
                );
                for id in &done.validators {
                    println!("validator {id}");
                }
                Ok(())
            })
        }
        Invocation::Client { node, key, action } => {
            let keys = key.map(|path| read_key_file(&path)).transpose()?;
            runtime()?.block_on(client(node, keys, action))
        }
    }
}

/// The load generator's summary of `report`, a line per figure.
fn summary(config: &LoadConfig, report: &LoadReport) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let [p50, p90, p99, max] = report.latency;
    let seconds = report.elapsed.as_secs_f64();
    let mut text = format!(
        "clients {} in-flight {} batch {} size {} nodes {} rate {}\n\
         commands {}\nseconds {seconds:.2}\ncommands/s {:.0}\n\
         latency_ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}\n",
        config.clients,
        config.in_flight,
        config.batch,
        config.size,
        config.nodes.len(),
        config
            .rate
            .map_or("unlimited".to_string(), |r| r.to_string()),
        report.commands,
        report.rate(),
        ms(p50),
        ms(p90),
        ms(p99),
        ms(max),
    );
    let errors: Vec<String> = report
        .errors
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    text.push_str(&format!(
        "errors {}\n",
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join(" ")
        }
    ));
    match report.cpu {
        Some(cpu) => text.push_str(&format!(
            "cpu_seconds {:.2} (bench process, {:.0}% of one core)\n",
            cpu.as_secs_f64(),
            100.0 * cpu.as_secs_f64() / seconds.max(1e-9)
        )),
        None => text.push_str("cpu_seconds unknown\n"),
    }
    text
}

/// A node's logs to stderr, filtered by `RUST_LOG` (default `info`): text
/// lines, or with `json` one JSON object a line.
fn logging_as(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match json {
        true => logs.json().try_init(),
        false => logs.try_init(),
    };
}

/// Logs to stderr, filtered by `RUST_LOG` (default: `default`).
fn logging_at(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    build_runtime(tokio::runtime::Builder::new_multi_thread())
}

/// A node's runtime: `threads` worker threads (`None`: one per CPU); one
/// runs everything on the calling thread (a current-thread runtime, with
/// no wake-ups between workers), durable writes on a blocking thread.
fn node_runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime, CliError> {
    build_runtime(match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    })
}

fn build_runtime(
    mut builder: tokio::runtime::Builder,
) -> Result<tokio::runtime::Runtime, CliError> {
    builder.enable_all().build().map_err(|source| {
        CliError::Node(NodeError::Io {
            doing: "starting the tokio runtime".into(),
            source,
        })
    })
}

async fn client(
    node: (NodeId, SocketAddr),
    keys: Option<hologram::receipt::KeyPair>,
    action: ClientAction,
) -> Result<(), CliError> {
    let client = match &keys {
        Some(keys) => Client::new(keys, &[node])?,
        // Reading needs no key of its own: a throwaway identity.
        None => Client::anonymous(&[node])?,
    };
    match action {
        ClientAction::Submit(texts) => {
            // All at once: one request, one signature.
            let payloads = texts.into_iter().map(String::into_bytes).collect();
            for (command, answer) in client.submit_payloads(node.0, payloads).await? {
                let at = answer?;
                let id = command.id();
                println!(
                    "applied {id} at height {} position {}",
                    at.height, at.position
                );
            }
        }
        ClientAction::Status(true) => {
            let report = client.report(node.0).await?;
            let json = serde_json::to_string_pretty(&report).map_err(|e| NodeError::Io {
                doing: "writing the report as JSON".into(),
                source: e.into(),
            })?;
            println!("{json}");
        }
        ClientAction::Status(false) => {
            let s = client.status(node.0).await?;
            println!(
                "node {}\nheights {}\napplied {}\nhead {}\nskipped {}\nsnapshot {}\nrestored {}",
                s.node, s.heights, s.applied, s.head, s.skipped, s.snapshot, s.restored
            );
        }
        ClientAction::Members => {
            let m = client.members(node.0).await?;
            println!(
                "node {}\nversion {}\nheights {}\nnewest-from {}",
                m.node, m.version, m.heights, m.newest_from
            );
            for id in &m.current {
                println!("in-force {id}");
            }
            for id in &m.newest {
                println!("newest {id}");
            }
        }
        ClientAction::Log => {
            let log = client.log_tail(node.0).await?;
            for (position, (command, _)) in (log.first..).zip(&log.commands) {
                println!(
                    "{position} {}",
                    String::from_utf8_lossy(command.bytes()).escape_debug()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_checked() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let id = "ab".repeat(32);
        assert!(matches!(parse(args("")), Ok(Invocation::Help)));
        assert!(matches!(
            parse(args("--gen-key k")),
            Ok(Invocation::GenKey(_))
        ));
        let run = parse(args(&format!(
            "--listen 127.0.0.1:7001 --key k --data d --peer {id}@127.0.0.1:7002 --pipeline 8"
        )));
        match run {
            Ok(Invocation::Run(options)) => {
                assert_eq!(options.peers.len(), 1);
                assert_eq!(options.pipeline, 8);
                assert_eq!(options.snapshot_every, DEFAULT_SNAPSHOT_EVERY);
                assert_eq!(options.keep_commands, DEFAULT_KEEP_COMMANDS);
                assert_eq!(options.threads, None);
            }
            other => panic!("{other:?}"),
        }
        match parse(args("--listen 127.0.0.1:7001 --key k --data d --threads 1")) {
            Ok(Invocation::Run(options)) => assert_eq!(options.threads, Some(1)),
            other => panic!("{other:?}"),
        }
        assert!(parse(args("--listen 127.0.0.1:7001 --key k --data d --threads 0")).is_err());
        assert!(parse(args(&format!(
            "--node {id}@127.0.0.1:7001 --status --threads 2"
        )))
        .is_err());
        match parse(args(
            "--listen 127.0.0.1:7001 --key k --data d --snapshot-every 16 --keep-commands 500",
        )) {
            Ok(Invocation::Run(options)) => {
                assert_eq!((options.snapshot_every, options.keep_commands), (16, 500));
            }
            other => panic!("{other:?}"),
        }
        match parse(args(
            "--listen 127.0.0.1:7001 --key k --data d --metrics 127.0.0.1:9464 --log-format json",
        )) {
            Ok(Invocation::Run(options)) => {
                assert_eq!(options.metrics, Some("127.0.0.1:9464".parse().unwrap()));
                assert!(options.json_logs);
            }
            other => panic!("{other:?}"),
        }
        let other = "cd".repeat(32);
        match parse(args(&format!(
            "--listen 127.0.0.1:7001 --key k --data d --genesis g.txt --operator {id}"
        ))) {
            Ok(Invocation::Run(options)) => {
                assert_eq!(options.genesis, Some(PathBuf::from("g.txt")));
                assert_eq!(options.operators.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        match parse(args(&format!(
            "--node {id}@127.0.0.1:1 --node {other}@127.0.0.1:2 --client-key op.key \
             --replace {id},{other}"
        ))) {
            Ok(Invocation::Change { nodes, op, .. }) => {
                assert_eq!(nodes.len(), 2);
                assert!(matches!(op, SetOp::Replace { .. }));
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            format!("--node {id}@127.0.0.1:1 --add {id}"),
            format!("--node {id}@127.0.0.1:1 --client-key k --add {id} --remove {id}"),
            format!("--node {id}@127.0.0.1:1 --client-key k --replace {id}"),
            format!("--client-key k --add {id}"),
            "--gen-key k --genesis g.txt".to_string(),
        ] {
            assert!(
                matches!(parse(args(&bad)), Err(CliError::Usage(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse(args(&format!("--node {id}@127.0.0.1:1 --members"))),
            Ok(Invocation::Client {
                action: ClientAction::Members,
                ..
            })
        ));
        assert!(matches!(
            parse(args(&format!("--node {id}@127.0.0.1:1 --status --json"))),
            Ok(Invocation::Client {
                action: ClientAction::Status(true),
                ..
            })
        ));
        match parse(args(&format!(
            "--node {id}@127.0.0.1:1 --client-key c --submit x --submit y"
        ))) {
            Ok(Invocation::Client {
                key: Some(key),
                action: ClientAction::Submit(texts),
                ..
            }) => assert_eq!((key, texts.len()), (PathBuf::from("c"), 2)),
            other => panic!("{other:?}"),
        }
        for bad in [
            "--listen 127.0.0.1:7001 --key k".to_string(),
            "--listen nowhere --key k --data d".into(),
            "--key k --key k2".into(),
            "--pipeline 0 --listen 127.0.0.1:1 --key k --data d".into(),
            "--status".into(),
            format!("--node {id}@127.0.0.1:1 --status --log"),
            "--frobnicate".into(),
            "--listen".into(),
            format!("--gen-key k --peer {id}@127.0.0.1:1"),
            "--gen-key k --client-key c".into(),
            // Submitting needs the client's key; the key needs a node.
            format!("--node {id}@127.0.0.1:1 --submit x"),
            "--client-key c --submit x".into(),
            format!("--node {id}@127.0.0.1:1 --client-key c --client-key d --submit x"),
            // The load generator's flags need --bench, and --bench a node.
            format!("--node {id}@127.0.0.1:1 --status --clients 4"),
            "--bench --clients 4".into(),
            format!("--bench --node {id}@127.0.0.1:1 --clients 0"),
            format!("--bench --node {id}@127.0.0.1:1 --in-flight 4097"),
            format!("--bench --node {id}@127.0.0.1:1 --batch 0"),
            format!("--node {id}@127.0.0.1:1 --status --batch 4"),
            format!("--bench --node {id}@127.0.0.1:1 --size 8"),
            format!("--bench --node {id}@127.0.0.1:1 --duration 3h"),
            format!("--bench --node {id}@127.0.0.1:1 --duration 0s"),
            format!("--bench --node {id}@127.0.0.1:1 --client-key c"),
            format!("--node {id}@127.0.0.1:1 --node {id}@127.0.0.1:2 --status"),
            // Observability flags: --json with --status, the others on a node.
            format!("--node {id}@127.0.0.1:1 --log --json"),
            format!("--node {id}@127.0.0.1:1 --status --metrics 127.0.0.1:9464"),
            "--listen 127.0.0.1:7001 --key k --data d --log-format yaml".into(),
            "--listen 127.0.0.1:7001 --key k --data d --metrics nowhere".into(),
            "--gen-key k --log-format json".into(),
            // Snapshots and the kept log are a node's.
            "--listen 127.0.0.1:7001 --key k --data d --snapshot-every 0".into(),
            "--listen 127.0.0.1:7001 --key k --data d --keep-commands 0".into(),
            format!("--node {id}@127.0.0.1:1 --status --snapshot-every 8"),
            format!("--bench --node {id}@127.0.0.1:1 --keep-commands 8"),
        ] {
            assert!(
                matches!(parse(args(&bad)), Err(CliError::Usage(_))),
                "{bad:?} was accepted"
            );
        }
        match parse(args(&format!(
            "--bench --node {id}@127.0.0.1:1 --node {id}@127.0.0.1:2 --clients 3 \
             --in-flight 2 --batch 1 --duration 1500ms --size 100 --rate 50 --commands 10"
        ))) {
            Ok(Invocation::Bench(c)) => {
                assert_eq!(
                    (c.nodes.len(), c.clients, c.in_flight, c.batch, c.size),
                    (2, 3, 2, 1, 100)
                );
                assert_eq!(c.duration, Duration::from_millis(1500));
                assert_eq!((c.rate, c.commands), (Some(50), Some(10)));
            }
            other => panic!("{other:?}"),
        }
        match parse(args(&format!(
            "--bench --node {id}@127.0.0.1:1 --duration 2m"
        ))) {
            Ok(Invocation::Bench(c)) => {
                assert_eq!((c.clients, c.in_flight, c.batch, c.size), (64, 8, 8, 64));
                assert_eq!(c.duration, Duration::from_secs(120));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(args("--node zz@127.0.0.1:1 --status")),
            Err(CliError::Node(NodeError::Peer { .. }))
        ));
    }
}
