//! Four `hologram-node` processes on 127.0.0.1, over QUIC: commits through
//! consensus, one node killed with SIGKILL, commits with the other three, the
//! node restarted from its data directory, and every replica checked to hold
//! the same log with every acknowledged command exactly once. Commands are
//! signed with a client key file made by `--gen-key` (one goes through the
//! command line's `--client-key`); forged commands submitted by a client,
//! and commands signed by another key than the client's, are refused; a host
//! whose key is not in the validator set cannot get consensus frames taken
//! (a `Commands` frame carrying a validly signed command it slipped in is
//! never applied, and its consensus requests are refused). Over QUIC a host
//! cannot claim a validator's id: its handshake proves its own key.
//!
//! Clients retry: every submission that fails on the way is resent — the
//! same signed command, the same (client, sequence) — to the next node; a
//! command is sent to the killed node right after the kill and retried at
//! another; acknowledged commands are resent to other nodes, one command is
//! sent to two nodes at once, and each gets its first acknowledgement
//! again while the logs hold every command once.
//!
//! The third test wipes a node's data directory while the others snapshot
//! and compact their logs: it comes back by state sync (see
//! `a_wiped_node_syncs_from_a_snapshot_while_commands_flow`).
//!
//! The fourth test changes the validators with the operator's commands: a
//! fifth node joins by state sync, an original is removed and killed (see
//! `a_fifth_node_joins_by_state_sync_and_an_original_is_removed`).
//!
//! The second test observes a cluster as an operator would: every node
//! serves `/metrics` and `/health` (scraped over real HTTP with `ureq`, and
//! parsed), every documented metric is listed, heights rise on every node, a
//! node stopped with SIGSTOP does not answer its health check and its peers'
//! metrics report it stalled, a killed node is reported unreachable while
//! the others keep committing, `--status --json` reports the peers, and
//! `--log-format json` logs one JSON object a line.
//!
//! The children are the `hologram-node` binary Cargo builds for this test.
//! Unix only: the crash is SIGKILL.
#![cfg(unix)]

#[path = "support/localhost.rs"]
mod localhost;
#[path = "support/node_process.rs"]
mod node_process;

use futures::future::join_all;
use hologram::consensus::{BatchProof, Command, CommandId, ConsensusMessage};
use hologram::lattice::transport::{
    async_trait, Handler, HandlerError, Protocol, Transport, TransportError,
};
use hologram::lattice::wire::Wire;
use hologram::lattice::NodeId;
use hologram::net::{AddressBook, QuicConfig, QuicTransport};
use hologram::node::{
    generate_key_file, read_key_file, Ack, Client, KvOp, KvResult, NodeError, NotApplied, Status,
    SYNC_INTERVAL,
};
use hologram::receipt::{ChainHead, KeyPair, Receipt, ReceiptChain, Signature};
use localhost::{free_tcp_addrs, free_udp_addrs, fresh_dir};
use node_process::{kill_node, node_args, start_node, stop_nodes, NODE_BIN};
use std::collections::HashMap;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command as Process};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the replicas may take to agree once the last command is acked.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);
/// Validators in the cluster.
const NODES: usize = 4;
/// The node killed and restarted.
const VICTIM: usize = 3;

/// One node of the cluster: its files, address and current process.
struct NodeProc {
    id: NodeId,
    addr: SocketAddr,
    /// Where it serves `/metrics` and `/health`.
    metrics: SocketAddr,
    key: PathBuf,
    data: PathBuf,
    child: Option<Child>,
    /// The stdout file of each start, in order.
    outputs: Vec<PathBuf>,
}

/// Four nodes in a temporary directory. Dropping it kills every process
/// still running and removes the directory (printing the nodes' output
/// first if the test is failing).
struct Cluster {
    dir: PathBuf,
    peers_file: PathBuf,
    /// The client's key file (made by `--gen-key`, like a node's).
    client_key: PathBuf,
    nodes: Vec<NodeProc>,
}

/// The fields of a node's `ready` line.
#[derive(Debug)]
struct Ready {
    heights: u64,
    applied: u64,
    head: String,
}

impl Cluster {
    fn new() -> Cluster {
        Self::with_spares(0)
    }

    /// The cluster's [`NODES`] validators, and `spares` nodes more with
    /// keys and addresses, not in the peers file (nodes to join).
    fn with_spares(spares: usize) -> Cluster {
        let dir = fresh_dir("hologram-cluster");
        let addrs = free_udp_addrs(NODES + spares);
        let metrics = free_tcp_addrs(NODES + spares);
        let mut nodes = Vec::new();
        let mut peers = String::from("# the cluster of tests/cluster.rs\n");
        for (i, (addr, metrics)) in addrs.into_iter().zip(metrics).enumerate() {
            let key = dir.join(format!("node{i}.key"));
            let id = generate_key_file(&key).unwrap().node_id();
            if i < NODES {
                peers.push_str(&format!("{id}@{addr}\n"));
            }
            nodes.push(NodeProc {
                id,
                addr,
                metrics,
                key,
                data: dir.join(format!("node{i}")),
                child: None,
                outputs: Vec::new(),
            });
        }
        let peers_file = dir.join("peers.txt");
        std::fs::write(&peers_file, peers).unwrap();
        let client_key = dir.join("client.key");
        let made = Process::new(NODE_BIN)
            .arg("--gen-key")
            .arg(&client_key)
            .output()
            .unwrap();
        assert!(made.status.success(), "--gen-key: {made:?}");
        Cluster {
            dir,
            peers_file,
            client_key,
            nodes,
        }
    }

    /// Starts node `i` (again) and waits for its ready line.
    fn start(&mut self, i: usize) -> Ready {
        self.start_with(i, &[])
    }

    /// Starts node `i` (again) with `extra` arguments.
    fn start_with(&mut self, i: usize, extra: &[&str]) -> Ready {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {i} is running");
        let out = self
            .dir
            .join(format!("node{i}-run{}.out", node.outputs.len()));
        let mut args = node_args(node.addr, &node.key, &node.data, &self.peers_file);
        args.extend(["--metrics".into(), node.metrics.to_string()]);
        // Node 0 runs on one thread (a current-thread runtime, as the
        // cluster bench runs every node), the others on the default.
        if i == 0 {
            args.extend(["--threads".into(), "1".into()]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        node.outputs.push(out.clone());
        // The nodes' logs (stderr, printed if the test fails): CLUSTER_LOG
        // sets their filter, e.g. CLUSTER_LOG=hologram::net=debug.
        let (child, line) = start_node(i, &args, &out, "CLUSTER_LOG", "info");
        node.child = Some(child);
        parse_ready(&line)
    }

    /// Kills node `i` with SIGKILL.
    fn kill(&mut self, i: usize) {
        kill_node(i, self.nodes[i].child.take().expect("node is running"));
    }

    fn members(&self) -> Vec<(NodeId, SocketAddr)> {
        self.nodes.iter().map(|n| (n.id, n.addr)).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let files: Vec<(usize, PathBuf)> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, node)| {
                node.outputs
                    .iter()
                    .flat_map(move |out| [(i, out.clone()), (i, out.with_extension("err"))])
            })
            .collect();
        stop_nodes(self.nodes.iter_mut().map(|n| &mut n.child), files, 30);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn parse_ready(line: &str) -> Ready {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            .to_string()
    };
    Ready {
        heights: field("heights").parse().unwrap(),
        applied: field("applied").parse().unwrap(),
        head: field("head"),
    }
}

/// Submits fresh commands named after `phase` in `waves` waves, each wave
/// one command to every node of `targets` at once (so each wave takes at
/// least one height); returns each command with the node's acknowledgement.
async fn submit_waves(
    client: &Client,
    targets: &[NodeId],
    phase: &str,
    waves: usize,
) -> Vec<(Command, Ack)> {
    let mut acked = Vec::new();
    for wave in 0..waves {
        let commands: Vec<(NodeId, Command)> = targets
            .iter()
            .map(|target| {
                let text = format!("{phase} wave {wave} via {}", &target.to_string()[..8]);
                (*target, client.command(text.into_bytes()).unwrap())
            })
            .collect();
        // A submission that fails on the way is retried, the same command,
        // at the next node.
        let acks = join_all(
            commands
                .iter()
                .map(|(node, command)| client.submit_retrying(*node, command)),
        )
        .await;
        for ((node, command), ack) in commands.into_iter().zip(acks) {
            let ack = ack.unwrap_or_else(|e| panic!("{phase}: {node} did not apply: {e}"));
            acked.push((command, ack));
        }
    }
    acked
}

/// Forgeries of a real command of `keys` (payload changed, key swapped,
/// signature garbage) and a command validly signed by another key: each
/// submitted by the client to every node must be refused. Then a host with
/// a key outside the validator set sends every node `Commands` frames
/// carrying the forgeries and a validly signed command of the client's that
/// was never submitted (which a validator would take into its mempool), and
/// asks a consensus request, which must be refused. Returns the commands
/// that no log may hold.
async fn inject_forgeries(cluster: &Cluster, client: &Client, keys: &KeyPair) -> Vec<Command> {
    let real = Command::sign(keys, 0, 0, b"never submitted".to_vec()).unwrap();
    let mut payload = real.bytes().to_vec();
    payload.extend_from_slice(b" and pay mallory");
    let mallory = KeyPair::from_seed([0x6d; 32]);
    let mut forged = vec![
        Command::from_parts(
            real.client(),
            0,
            0,
            real.signature(),
            BatchProof::single(),
            payload,
        )
        .unwrap(),
        Command::from_parts(
            mallory.node_id(),
            0,
            0,
            real.signature(),
            BatchProof::single(),
            real.bytes().to_vec(),
        )
        .unwrap(),
        Command::from_parts(
            real.client(),
            0,
            0,
            Signature::from_bytes([0x5a; 64]),
            BatchProof::single(),
            real.bytes().to_vec(),
        )
        .unwrap(),
        // Valid, but not signed by the key this client's connection proves.
        Command::sign(
            &mallory,
            0,
            0,
            b"mallory's own, via another client".to_vec(),
        )
        .unwrap(),
    ];
    for node in &cluster.nodes {
        for f in &forged {
            let refused = client.submit(node.id, f.clone()).await;
            assert!(refused.is_err(), "{} took forged {f:?}", node.id);
        }
    }
    struct Mute;
    #[async_trait]
    impl Handler for Mute {
        async fn request(
            &self,
            _: NodeId,
            _: Protocol,
            _: Vec<u8>,
        ) -> Result<Vec<u8>, HandlerError> {
            Err(HandlerError::Refused("mute".into()))
        }
        async fn message(&self, _: NodeId, _: Protocol, _: Vec<u8>) {}
    }
    // A host with a key of its own, outside the validator set.
    let book = AddressBook::new();
    let impostor = QuicTransport::bind(
        &mallory,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Arc::new(Mute),
        book.clone(),
        QuicConfig::default(),
    )
    .unwrap();
    forged.push(real);
    let frame = ConsensusMessage::Commands(forged.clone())
        .to_wire()
        .unwrap();
    for node in &cluster.nodes {
        book.insert(node.id, node.addr);
        for f in &forged {
            let alone = ConsensusMessage::Commands(vec![f.clone()])
                .to_wire()
                .unwrap();
            let _ = impostor
                .send(node.id, hologram::consensus::CONSENSUS_PROTOCOL, alone)
                .await;
        }
        let _ = impostor
            .send(
                node.id,
                hologram::consensus::CONSENSUS_PROTOCOL,
                frame.clone(),
            )
            .await;
        let asked = impostor
            .request(
                node.id,
                hologram::consensus::CONSENSUS_PROTOCOL,
                frame.clone(),
                Duration::from_secs(5),
            )
            .await;
        match asked {
            Err(TransportError::Refused(why)) => {
                assert!(why.contains("not a validator"), "{why}")
            }
            other => panic!(
                "{}: a non-validator's consensus request got {other:?}",
                node.id
            ),
        }
    }
    impostor.close();
    forged
}

/// Waits until every node in `nodes` reports the same applied count and head,
/// at least `applied`; returns that status.
async fn converge(client: &Client, nodes: &[NodeId], applied: u64) -> Status {
    let start = Instant::now();
    loop {
        let statuses: Vec<Result<Status, NodeError>> =
            join_all(nodes.iter().map(|n| client.status(*n))).await;
        let ok: Vec<Status> = statuses.into_iter().filter_map(Result::ok).collect();
        if ok.len() == nodes.len()
            && ok[0].applied >= applied
            && ok
                .iter()
                .all(|s| (s.applied, s.head) == (ok[0].applied, ok[0].head))
        {
            return ok[0];
        }
        assert!(
            start.elapsed() < CONVERGE_TIMEOUT,
            "replicas did not converge: {ok:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The head of the chain over the transition receipts of `log`.
fn head_of(log: &[(Command, Receipt)]) -> ChainHead {
    ReceiptChain::from_receipts(log.iter().map(|(_, r)| r)).head()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_survive_a_sigkill_and_lose_nothing() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::new();
    for i in 0..NODES {
        let ready = cluster.start(i);
        assert_eq!((ready.heights, ready.applied), (0, 0), "a fresh node");
    }
    let ids: Vec<NodeId> = cluster.nodes.iter().map(|n| n.id).collect();
    let keys = read_key_file(&cluster.client_key).unwrap();
    let client = Client::new(&keys, &cluster.members()).unwrap();
    let mut acked: Vec<(Command, Ack)> = Vec::new();

    // All four up.
    acked.extend(submit_waves(&client, &ids, "first", 6).await);
    // Forgeries are refused, from a client and inside the consensus protocol.
    let forged = inject_forgeries(&cluster, &client, &keys).await;
    // One command through the command line, signed with the key file.
    let text = "via the command line".to_string();
    let args = vec![
        "--node".to_string(),
        format!("{}@{}", ids[1], cluster.nodes[1].addr),
        "--client-key".into(),
        cluster.client_key.display().to_string(),
        "--submit".into(),
        text.clone(),
    ];
    let submitted = tokio::task::spawn_blocking(move || Process::new(NODE_BIN).args(args).output())
        .await
        .unwrap()
        .unwrap();
    assert!(submitted.status.success(), "--submit: {submitted:?}");
    // The command line was a client of the same key, numbering from a later
    // clock reading: one session per key at a time, so this process's
    // client is made anew (it numbers from later still).
    client.close();
    let client = Client::new(&keys, &cluster.members()).unwrap();
    let before = converge(&client, &ids, acked.len() as u64 + 1).await;

    // SIGKILL one while commands flow; the other three are a quorum (f = 1)
    // and keep committing, also at the heights the victim was to lead.
    let alive: Vec<NodeId> = (0..NODES)
        .filter(|&i| i != VICTIM)
        .map(|i| ids[i])
        .collect();
    let (during, ()) = tokio::join!(submit_waves(&client, &alive, "during", 8), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cluster.kill(VICTIM);
    });
    acked.extend(during);
    // A command sent to the dead node: the client retries the same command
    // at the next node, where it is applied.
    let across = client.command(b"sent to the dead node".to_vec()).unwrap();
    let ack = client
        .submit_retrying(ids[VICTIM], &across)
        .await
        .expect("retried at a live node");
    acked.push((across, ack));

    // Restarted from its data directory: it has what it committed.
    let ready = cluster.start(VICTIM);
    assert!(
        ready.applied >= before.applied && ready.heights >= before.heights,
        "the restarted node lost committed entries: {ready:?}, before the kill {before:?}"
    );
    // It catches up while the cluster is idle (nothing new to decide)...
    converge(&client, &ids, acked.len() as u64 + 1).await;
    // ...and commits with the others again.
    acked.extend(submit_waves(&client, &ids, "after", 4).await);
    // A retry of an acknowledged command — the same signed command, at
    // another node (the killed and restarted one included) — gets the first
    // acknowledgement again, until the client's next command says it holds
    // that answer: a retry after that is stale, and not applied.
    for i in 0..NODES {
        let command = client.command(format!("retried {i}").into_bytes()).unwrap();
        let ack = client.submit_retrying(ids[i], &command).await.unwrap();
        let other = ids[(i + 1) % NODES];
        let again = client.submit(other, command.clone()).await.unwrap();
        assert_eq!(again, ack, "a retry of {command:?} at {other}");
        acked.push((command, ack));
    }
    let (old, _) = &acked[0];
    match client.submit(ids[1], old.clone()).await {
        Err(NodeError::NotApplied(NotApplied::Stale { .. })) => {}
        other => panic!("a retry of the answered {old:?} got {other:?}"),
    }
    // One new command sent to two nodes at once: one application, the same
    // acknowledgement from both.
    let twice = client
        .command(b"sent to two nodes at once".to_vec())
        .unwrap();
    let (a, b) = tokio::join!(
        client.submit(ids[0], twice.clone()),
        client.submit(ids[2], twice.clone())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "both nodes answer {twice:?} with its one application");
    acked.push((twice, a));
    let last = converge(&client, &ids, acked.len() as u64 + 1).await;

    // Every replica holds the same log, and every acknowledged command sits
    // in it exactly once, where it was acknowledged.
    let logs = join_all(ids.iter().map(|n| client.log(*n))).await;
    let logs: Vec<Vec<(Command, Receipt)>> = logs.into_iter().map(Result::unwrap).collect();
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(log, &logs[0], "node {i}'s log differs from node 0's");
    }
    let log = &logs[0];
    assert_eq!(log.len() as u64, last.applied);
    assert_eq!(
        head_of(log),
        last.head,
        "the reported head is not the log's"
    );
    let mut seen: HashSet<CommandId> = HashSet::new();
    for (command, _) in log {
        assert!(seen.insert(command.id()), "{command:?} applied twice");
    }
    let mut submitted: HashSet<CommandId> = acked.iter().map(|(c, _)| c.id()).collect();
    let via_cli: Vec<&Command> = log
        .iter()
        .map(|(c, _)| c)
        .filter(|c| c.bytes() == text.as_bytes())
        .collect();
    assert_eq!(via_cli.len(), 1, "the command line's command, once");
    submitted.insert(via_cli[0].id());
    assert_eq!(
        seen, submitted,
        "the log holds exactly the acknowledged commands (and the one of the command line)"
    );
    for (command, _) in log {
        command.verify().unwrap();
        assert_eq!(command.client(), keys.node_id(), "{command:?}");
    }
    for f in &forged {
        assert!(
            !log.iter().any(|(c, _)| c.signature() == f.signature()
                && c.bytes() == f.bytes()
                && c.client() == f.client()),
            "forged {f:?} was applied"
        );
    }
    for (command, at) in &acked {
        let at_position = log.get(at.position as usize).map(|(c, _)| c);
        assert_eq!(at_position, Some(command), "ack {at:?}");
    }
    // What the victim had before the kill and after the restart are
    // prefixes of the common log.
    assert_eq!(head_of(&log[..before.applied as usize]), before.head);
    let recovered = usize::try_from(ready.applied).unwrap();
    assert_eq!(head_of(&log[..recovered]).to_string(), ready.head);
    println!(
        "{} commands acknowledged and applied once on all {NODES} nodes ({} heights); \
         node {VICTIM} had {} applied before SIGKILL and recovered {} from its store",
        acked.len(),
        last.heights,
        before.applied,
        ready.applied
    );
}

/// Serializes the two tests: each runs four processes on a small machine.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the peers' metrics may take to report a change (the probe
/// interval, the stall interval and a margin for a loaded machine).
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(30);

/// One scrape: each series (`name` or `name{labels}`, as printed) and its
/// value.
type Scrape = HashMap<String, f64>;

/// An HTTP client with a short timeout, that returns 5xx answers.
fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// GET `path` at `addr`: the status code and body.
fn get(agent: &ureq::Agent, addr: SocketAddr, path: &str) -> Result<(u16, String), ureq::Error> {
    let mut answer = agent.get(format!("http://{addr}{path}")).call()?;
    let status = answer.status().as_u16();
    Ok((status, answer.body_mut().read_to_string()?))
}

/// Scrapes `/metrics` at `addr` and parses the text format.
fn scrape(agent: &ureq::Agent, addr: SocketAddr) -> Scrape {
    let (status, body) = get(agent, addr, "/metrics").expect("a scrape");
    assert_eq!(status, 200, "{body}");
    let mut series = Scrape::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line:?}"));
        series.insert(name.to_string(), value);
    }
    series
}

/// The value of `name` (with `label="value"` among its labels, if given).
fn metric(scrape: &Scrape, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    scrape.iter().find_map(|(series, &v)| {
        let (n, labels) = series.split_once('{').unwrap_or((series, ""));
        let labelled = label.is_none_or(|(k, l)| labels.contains(&format!("{k}=\"{l}\"")));
        (n == name && labelled).then_some(v)
    })
}

/// A peer's label in the node's metrics.
fn peer_label(id: &NodeId) -> String {
    id.to_string().chars().take(16).collect()
}

/// Polls until every node of `watchers` reports `name{peer=of} == want`.
async fn peers_report(cluster: &Cluster, watchers: &[usize], name: &str, of: NodeId, want: f64) {
    let (agent, label) = (http(), peer_label(&of));
    let start = Instant::now();
    loop {
        let seen: Vec<Option<f64>> = watchers
            .iter()
            .map(|&i| {
                metric(
                    &scrape(&agent, cluster.nodes[i].metrics),
                    name,
                    Some(("peer", &label)),
                )
            })
            .collect();
        if seen.iter().all(|v| *v == Some(want)) {
            return;
        }
        assert!(
            start.elapsed() < OBSERVE_TIMEOUT,
            "{name}{{peer={label}}}: {seen:?}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Each node's `hologram_consensus_height`, from one scrape each.
fn heights(cluster: &Cluster, nodes: &[usize]) -> Vec<f64> {
    let agent = http();
    nodes
        .iter()
        .map(|&i| {
            metric(
                &scrape(&agent, cluster.nodes[i].metrics),
                "hologram_consensus_height",
                None,
            )
            .unwrap()
        })
        .collect()
}

/// Sends SIGSTOP or SIGCONT to node `i`.
fn signal(cluster: &Cluster, i: usize, signal: &str) {
    let pid = cluster.nodes[i].child.as_ref().expect("running").id();
    let status = Process::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
    // A stop takes effect on every thread shortly after: wait for it (the
    // state in /proc/<pid>/stat, after the command name, is `T`).
    let start = Instant::now();
    if signal != "-STOP" {
        return;
    }
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "node {i} did not stop"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_is_observable_over_http() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::new();
    // Node 0 logs JSON lines.
    cluster.start_with(0, &["--log-format", "json"]);
    for i in 1..NODES {
        cluster.start(i);
    }
    let ids: Vec<NodeId> = cluster.nodes.iter().map(|n| n.id).collect();
    let keys = read_key_file(&cluster.client_key).unwrap();
    let client = Client::new(&keys, &cluster.members()).unwrap();
    let all: Vec<usize> = (0..NODES).collect();
    let agent = http();

    // Every documented metric is listed by every node.
    let before = heights(&cluster, &all);
    submit_waves(&client, &ids, "observed", 4).await;
    for node in &cluster.nodes {
        let scraped = scrape(&agent, node.metrics);
        for m in hologram::node::all_metrics() {
            let listed = scraped.keys().any(|series| {
                series.strip_prefix(m.name).is_some_and(|rest| {
                    rest.is_empty()
                        || rest.starts_with('{')
                        || rest.starts_with("_sum")
                        || rest.starts_with("_count")
                })
            });
            assert!(
                listed,
                "{} is not in the scrape of {}",
                m.name, node.metrics
            );
        }
        // And the node's work shows in them.
        for busy in [
            "hologram_transport_bytes_sent_total",
            "hologram_consensus_decisions_total",
        ] {
            let total: f64 = scraped
                .iter()
                .filter(|(s, _)| s.starts_with(busy))
                .map(|(_, v)| v)
                .sum();
            assert!(total > 0.0, "{busy} is 0 on {}", node.metrics);
        }
        // Transport metrics by peer: consensus bytes to each other validator
        // under its label; what clients (keys outside the address book) send
        // under `other`.
        let sum = |name: &str, protocol: &str, peer: &str| -> f64 {
            let (protocol, peer) = (
                format!("protocol=\"{protocol}\""),
                format!("peer=\"{peer}\""),
            );
            scraped
                .iter()
                .filter(|(s, _)| {
                    s.strip_prefix(name).is_some_and(|r| r.starts_with('{'))
                        && s.contains(&protocol)
                        && s.contains(&peer)
                })
                .map(|(_, v)| v)
                .sum()
        };
        for other in ids.iter().filter(|&&o| o != node.id) {
            let label = peer_label(other);
            let sent = sum("hologram_transport_bytes_sent_total", "consensus", &label);
            assert!(
                sent > 0.0,
                "no consensus bytes to {label} on {}",
                node.metrics
            );
        }
        let from_clients = sum(
            "hologram_transport_bytes_received_total",
            "control",
            "other",
        );
        assert!(from_clients > 0.0, "no client bytes on {}", node.metrics);
        assert_eq!(
            get(&agent, node.metrics, "/health").unwrap(),
            (200, "ready\n".to_string())
        );
    }
    // Heights rise on every node.
    let after = heights(&cluster, &all);
    for i in 0..NODES {
        assert!(
            after[i] > before[i],
            "node {i}: height {} then {}",
            before[i],
            after[i]
        );
    }

    // SIGSTOP: the node's health check gets no answer, and its peers'
    // metrics report it stalled once the others went past it.
    let (stopped, others) = (VICTIM, [0, 1, 2]);
    let other_ids: Vec<NodeId> = others.iter().map(|&i| ids[i]).collect();
    // Stalled is said only of a peer that answered a probe before (one
    // never heard from is down): wait until every other node has heard it,
    // or a fast start stops it first and the check below waits in vain.
    peers_report(
        &cluster,
        &others,
        "hologram_node_peer_up",
        ids[stopped],
        1.0,
    )
    .await;
    signal(&cluster, stopped, "-STOP");
    assert!(
        get(&agent, cluster.nodes[stopped].metrics, "/health").is_err(),
        "a stopped node answered"
    );
    let (_, ()) = tokio::join!(
        submit_waves(&client, &other_ids, "while stopped", 6),
        async {
            peers_report(
                &cluster,
                &others,
                "hologram_node_peer_stalled",
                ids[stopped],
                1.0,
            )
            .await
        }
    );
    // SIGCONT: it catches up and is reported up and progressing again.
    signal(&cluster, stopped, "-CONT");
    submit_waves(&client, &ids, "continued", 2).await;
    peers_report(
        &cluster,
        &others,
        "hologram_node_peer_stalled",
        ids[stopped],
        0.0,
    )
    .await;
    peers_report(
        &cluster,
        &others,
        "hologram_node_peer_up",
        ids[stopped],
        1.0,
    )
    .await;

    // SIGKILL: the others report it unreachable and keep committing.
    cluster.kill(VICTIM);
    let before = heights(&cluster, &others);
    let (_, ()) = tokio::join!(
        submit_waves(&client, &other_ids, "after the kill", 6),
        async { peers_report(&cluster, &others, "hologram_node_peer_up", ids[VICTIM], 0.0).await }
    );
    let after = heights(&cluster, &others);
    for (k, i) in others.iter().enumerate() {
        assert!(
            after[k] > before[k],
            "node {i} stopped committing: {} then {}",
            before[k],
            after[k]
        );
    }

    // The report (--status --json) names the dead peer as down.
    let args = vec![
        "--node".to_string(),
        format!("{}@{}", ids[0], cluster.nodes[0].addr),
        "--status".into(),
        "--json".into(),
    ];
    let out = tokio::task::spawn_blocking(move || Process::new(NODE_BIN).args(args).output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "--status --json: {out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["health"], "ready", "{report}");
    assert!(
        report["status"]["heights"].as_u64().unwrap() >= after[0] as u64,
        "{report}"
    );
    assert!(report["data_bytes"].as_u64().unwrap() > 0, "{report}");
    let peers = report["peers"].as_array().unwrap();
    assert_eq!(peers.len(), NODES - 1, "{report}");
    for peer in peers {
        let dead = peer["id"] == serde_json::to_value(ids[VICTIM]).unwrap();
        assert_eq!(peer["up"], !dead, "{report}");
    }

    // Node 0's logs are JSON, one object a line.
    let err = cluster.nodes[0].outputs[0].with_extension("err");
    let logs = std::fs::read_to_string(err).unwrap();
    assert!(logs.lines().count() > 0);
    for line in logs.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(
            event["level"].is_string() && event["fields"].is_object(),
            "{line}"
        );
    }
}

/// The whole logs of `nodes`: the same on each, of `last`'s length and
/// head, holding exactly the `acked` commands, each once, where it was
/// acknowledged. Returns it.
async fn whole_log(
    client: &Client,
    nodes: &[NodeId],
    acked: &[(Command, Ack)],
    last: &Status,
) -> Vec<(Command, Receipt)> {
    let logs = join_all(nodes.iter().map(|n| client.log(*n))).await;
    let logs: Vec<Vec<(Command, Receipt)>> = logs.into_iter().map(Result::unwrap).collect();
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(log, &logs[0], "{}'s log differs", nodes[i]);
    }
    let log = &logs[0];
    assert_eq!(log.len() as u64, last.applied);
    assert_eq!(head_of(log), last.head);
    let mut seen: HashSet<CommandId> = HashSet::new();
    for (command, _) in log {
        assert!(seen.insert(command.id()), "{command:?} applied twice");
    }
    let submitted: HashSet<CommandId> = acked.iter().map(|(c, _)| c.id()).collect();
    assert_eq!(
        seen, submitted,
        "the log holds exactly the acknowledged commands"
    );
    for (command, at) in acked {
        assert_eq!(log.get(at.position as usize).map(|(c, _)| c), Some(command));
    }
    logs[0].clone()
}

/// The snapshot interval of the state-sync test, in heights.
const SNAPSHOT_EVERY: &str = "8";

/// Polls `node`'s status until `done` holds (within `CONVERGE_TIMEOUT`);
/// returns it.
async fn status_until(client: &Client, node: NodeId, done: impl Fn(&Status) -> bool) -> Status {
    let start = Instant::now();
    loop {
        if let Ok(status) = client.status(node).await {
            if done(&status) {
                return status;
            }
            assert!(
                start.elapsed() < CONVERGE_TIMEOUT,
                "{node}: still {status:?}"
            );
        }
        assert!(start.elapsed() < CONVERGE_TIMEOUT, "{node} does not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// State sync (#16): four nodes snapshot every 8 heights and compact their
/// logs; one is killed, its data directory wiped, and restarted with the
/// same key while commands keep flowing to the others. Their logs no
/// longer hold height 0, so it can only catch up by fetching the newest
/// certified snapshot, restoring it and replaying the heights after it:
/// its status and metrics say it restored one, and its log of applied
/// commands starts past position 0. Then it serves again (commands
/// submitted to it are applied), and every node has the same chain head at
/// the same count, with every acknowledged command applied exactly once,
/// where it was acknowledged, in the full logs of the three that were not
/// wiped, of which the wiped node's log is the tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_syncs_from_a_snapshot_while_commands_flow() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::new();
    let snapshots = ["--snapshot-every", SNAPSHOT_EVERY];
    for i in 0..NODES {
        cluster.start_with(i, &snapshots);
    }
    let ids: Vec<NodeId> = cluster.nodes.iter().map(|n| n.id).collect();
    let others: Vec<NodeId> = (0..NODES)
        .filter(|&i| i != VICTIM)
        .map(|i| ids[i])
        .collect();
    let keys = read_key_file(&cluster.client_key).unwrap();
    let client = Client::new(&keys, &cluster.members()).unwrap();

    // A key-value write, then enough heights for a few snapshots to be
    // certified and the logs compacted.
    let write = KvOp::Write {
        key: b"synced".to_vec(),
        value: b"before the wipe".to_vec(),
    };
    let (command, written) = (client.submit_payload(ids[0], write.encode().unwrap()))
        .await
        .unwrap();
    assert_eq!(written.kv, Some(KvResult::Written));
    let mut acked = vec![(command, written.clone())];
    acked.extend(submit_waves(&client, &ids, "before", 12).await);
    for id in &ids {
        status_until(&client, *id, |s| s.snapshot > 0).await;
    }
    cluster.kill(VICTIM);
    std::fs::remove_dir_all(&cluster.nodes[VICTIM].data).unwrap();
    acked.extend(submit_waves(&client, &others, "while wiped", 12).await);
    let behind = converge(&client, &others, acked.len() as u64).await;

    // Empty, same key: it restores a snapshot while the others go on.
    let ready = cluster.start_with(VICTIM, &snapshots);
    assert_eq!((ready.heights, ready.applied), (0, 0), "{ready:?}");
    let (during, synced) = tokio::join!(
        submit_waves(&client, &others, "during sync", 12),
        status_until(&client, ids[VICTIM], |s| s.restored > 0
            && s.heights >= behind.heights)
    );
    acked.extend(during);
    assert!(synced.snapshot > 0, "{synced:?}");
    // It serves again: commands submitted to it (and the others) apply,
    // and its key-value map came with the snapshot: a read it answers
    // (from its own machine) sees the write it never replayed.
    let read = KvOp::Read {
        key: b"synced".to_vec(),
    };
    let command = client.command(read.encode().unwrap()).unwrap();
    let answer = client.submit(ids[VICTIM], command.clone()).await.unwrap();
    assert_eq!(
        answer.kv,
        Some(KvResult::Value(Some(b"before the wipe".to_vec())))
    );
    acked.push((command, answer));
    acked.extend(submit_waves(&client, &ids, "after", 4).await);
    let last = converge(&client, &ids, acked.len() as u64).await;

    let agent = http();
    let scraped = scrape(&agent, cluster.nodes[VICTIM].metrics);
    let restored = metric(&scraped, "hologram_node_snapshots_restored_total", None);
    assert!(restored >= Some(1.0), "restored {restored:?}");
    for node in &cluster.nodes {
        let taken = metric(
            &scrape(&agent, node.metrics),
            "hologram_node_snapshots_taken_total",
            None,
        );
        assert!(taken > Some(0.0), "{}: snapshots taken {taken:?}", node.id);
    }

    // The three that were not wiped hold the whole log, the same one, with
    // every acknowledged command once, where it was acknowledged.
    let log = &whole_log(&client, &others, &acked, &last).await;
    // The wiped node did not replay from height 0: its log starts at the
    // snapshot it restored, and is the tail of the others'.
    let tail = client.log_tail(ids[VICTIM]).await.unwrap();
    assert!(tail.first > 0, "the wiped node's log starts at 0");
    assert!(
        written.position < tail.first,
        "the key-value write was replayed, not restored"
    );
    assert_eq!(tail.commands, log[tail.first as usize..]);
    assert!(matches!(
        client.log(ids[VICTIM]).await,
        Err(NodeError::LogTrimmed { first }) if first == tail.first
    ));
    println!(
        "{} commands acknowledged, applied once on all {NODES} nodes ({} heights); the wiped \
         node restored a snapshot at height {} and holds positions {}.. of its log",
        acked.len(),
        last.heights,
        synced.snapshot,
        tail.first
    );
}

/// Runs `hologram-node` as an operator would, asking `nodes` for a change
/// (`change`: `--add <id>`, `--remove <id>`, ...) with the key
/// `operator.key` (each node runs with `--operator <its id>`); returns its stdout, and
/// fails the test if the command fails.
async fn operator(cluster: &Cluster, nodes: &[usize], change: [String; 2]) -> String {
    let mut args: Vec<String> = Vec::new();
    for &i in nodes {
        let n = &cluster.nodes[i];
        args.extend(["--node".into(), format!("{}@{}", n.id, n.addr)]);
    }
    let key = cluster.dir.join("operator.key");
    args.extend(["--client-key".into(), key.display().to_string()]);
    args.extend(change);
    let out = tokio::task::spawn_blocking(move || {
        Process::new(NODE_BIN)
            .args(&args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "the operator's command failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Submits waves of commands (as [`submit_waves`]) until `done` is set,
/// at least one wave.
async fn traffic(
    client: &Client,
    targets: &[NodeId],
    phase: &str,
    done: &std::sync::atomic::AtomicBool,
) -> Vec<(Command, Ack)> {
    let mut acked = Vec::new();
    let mut round = 0;
    loop {
        acked.extend(submit_waves(client, targets, &format!("{phase} {round}"), 2).await);
        round += 1;
        if done.load(std::sync::atomic::Ordering::SeqCst) {
            return acked;
        }
    }
}

/// Reconfiguration (#16), as an operator does it: a 5th node, with a new
/// key, is started with the cluster's peers file as `--genesis` while
/// commands flow; the operator's `--add` (with the key `operator.key`)
/// gathers a quorum of approvals from the four validators (each runs with
/// `--operator <its id>`, and so do the new nodes) and has the change
/// decided. The new node, taken in by every validator once the change is
/// decided, syncs (the others compacted their logs: it restores a
/// snapshot) and votes once the change is in force. A 6th joins the same
/// way, approved by the five. Then `--remove` takes an original validator
/// out; still running, it falls behind (its frames refused at the members'
/// gate), then it is killed: the five left decide on, and with one more
/// original stopped, the quorum needs both new nodes, each seeing the
/// other's votes (they learned each other's addresses from the
/// originals). Every acknowledged command is applied exactly once, where it
/// was acknowledged, on every current member, and every current member
/// follows the same set: the five.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_node_joins_by_state_sync_and_an_original_is_removed() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::with_spares(2);
    let (joiner, second) = (NODES, NODES + 1);
    let keys = read_key_file(&cluster.client_key).unwrap();
    // The operator's key: another than the client's (a key connects to a
    // node once at a time).
    let operator_key = generate_key_file(&cluster.dir.join("operator.key")).unwrap();
    let operator_id = operator_key.node_id().to_string();
    let flags = [
        "--snapshot-every",
        SNAPSHOT_EVERY,
        "--operator",
        &operator_id,
    ];
    for i in 0..NODES {
        cluster.start_with(i, &flags);
    }
    let ids: Vec<NodeId> = cluster.nodes.iter().map(|n| n.id).collect();
    let originals = ids[..NODES].to_vec();
    let client = Client::new(&keys, &cluster.members()).unwrap();
    let mut acked = submit_waves(&client, &originals, "before", 12).await;
    for id in &originals {
        status_until(&client, *id, |s| s.snapshot > 0).await;
    }

    // The new node: a new key, the original validators as its genesis.
    let genesis = cluster.peers_file.display().to_string();
    let ready = cluster.start_with(joiner, &[&flags[..], &["--genesis", &genesis]].concat());
    assert_eq!((ready.heights, ready.applied), (0, 0), "{ready:?}");
    let done = std::sync::atomic::AtomicBool::new(false);
    let add = ["--add".to_string(), ids[joiner].to_string()];
    let (during, added) = tokio::join!(
        traffic(&client, &originals, "during the addition", &done),
        async {
            let out = operator(&cluster, &[0, 1, 2, 3], add).await;
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            out
        }
    );
    acked.extend(during);
    assert!(added.contains("validators=5"), "{added}");
    let synced = status_until(&client, ids[joiner], |s| s.restored > 0).await;
    assert!(synced.snapshot > 0, "{synced:?}");
    // It serves: commands submitted to it (and the others) apply.
    let five = ids[..=joiner].to_vec();
    acked.extend(submit_waves(&client, &five, "five", 4).await);
    converge(&client, &five, acked.len() as u64).await;

    // A sixth, approved by the five: the two new nodes were given only the
    // originals' addresses, and learn each other's from them.
    let ready = cluster.start_with(second, &[&flags[..], &["--genesis", &genesis]].concat());
    assert_eq!((ready.heights, ready.applied), (0, 0), "{ready:?}");
    done.store(false, std::sync::atomic::Ordering::SeqCst);
    let add = ["--add".to_string(), ids[second].to_string()];
    let (during, added) = tokio::join!(
        traffic(&client, &five, "during the second addition", &done),
        async {
            let out = operator(&cluster, &[0, 1, 2, 3, 4], add).await;
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            out
        }
    );
    acked.extend(during);
    assert!(added.contains("validators=6"), "{added}");
    status_until(&client, ids[second], |s| s.restored > 0).await;
    acked.extend(submit_waves(&client, &ids, "six", 4).await);
    converge(&client, &ids, acked.len() as u64).await;

    // An original validator is removed (a quorum of the six approves),
    // then killed once its removal is in force.
    let removed = VICTIM;
    let members: Vec<NodeId> = (0..=second)
        .filter(|&i| i != removed)
        .map(|i| ids[i])
        .collect();
    done.store(false, std::sync::atomic::Ordering::SeqCst);
    let remove = ["--remove".to_string(), ids[removed].to_string()];
    let (during, out) = tokio::join!(
        traffic(&client, &members, "during the removal", &done),
        async {
            let out = operator(&cluster, &[0, 1, 2, 3, 4, 5], remove).await;
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            out
        }
    );
    acked.extend(during);
    assert!(out.contains("validators=5"), "{out}");
    // The five left decide without it; still running, it is no peer of
    // theirs: sent nothing, and its requests for decisions refused, it
    // falls behind.
    acked.extend(submit_waves(&client, &members, "five members", 6).await);
    let last = converge(&client, &members, acked.len() as u64).await;
    tokio::time::sleep(SYNC_INTERVAL * 4).await;
    let left = client.status(ids[removed]).await.unwrap();
    assert!(
        left.heights < last.heights,
        "the removed node still follows: {left:?}, the members at {last:?}"
    );
    // Its frames stopped at the members' gate (their logs say so), not
    // only in their replicas.
    let gated = (0..=second).filter(|&i| i != removed).any(|i| {
        let err = cluster.nodes[i]
            .outputs
            .last()
            .unwrap()
            .with_extension("err");
        let logs = std::fs::read_to_string(err).unwrap_or_default();
        logs.lines()
            .any(|l| l.contains("not a validator") && l.contains(&ids[removed].to_string()))
    });
    assert!(gated, "no member refused the removed node's frames");
    // Killed, it is not missed (the removed node is not counted).
    cluster.kill(removed);
    acked.extend(submit_waves(&client, &members, "after the kill", 4).await);
    // The new nodes vote: with another original stopped, the other four
    // (the two new ones among them) are the quorum of five, which each new
    // node sees only with the other's votes.
    signal(&cluster, 2, "-STOP");
    let four = [ids[0], ids[1], ids[joiner], ids[second]];
    acked.extend(submit_waves(&client, &four, "with node 2 stopped", 4).await);
    signal(&cluster, 2, "-CONT");
    let last = converge(&client, &members, acked.len() as u64).await;

    let mut want: Vec<NodeId> = members.clone();
    want.sort();
    for id in &members {
        let m = client.members(*id).await.unwrap();
        let mut current = m.current.clone();
        current.sort();
        assert_eq!(current, want, "{id} follows {m:?}");
        assert_eq!(m.newest, m.current, "{id}: a change left pending");
    }

    // The two originals never stopped hold the whole log, the same one,
    // with every acknowledged command once, where it was acknowledged; the
    // new node's log, and the stopped one's (it may have restored a snapshot
    // once continued), is its tail.
    let log = &whole_log(&client, &[ids[0], ids[1]], &acked, &last).await;
    let tail = client.log_tail(ids[joiner]).await.unwrap();
    assert!(tail.first > 0, "the new node's log starts at 0");
    assert_eq!(tail.commands, log[tail.first as usize..]);
    for node in [ids[2], ids[second]] {
        let tail = client.log_tail(node).await.unwrap();
        assert_eq!(tail.commands, log[tail.first as usize..], "{node}");
    }
    println!(
        "{} commands acknowledged, applied once on the five members ({} heights); the first \
         new node restored a snapshot at height {} and holds positions {}..",
        acked.len(),
        last.heights,
        synced.snapshot,
        tail.first
    );
}
