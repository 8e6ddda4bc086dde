//! The node: a durable driver of a consensus [`Replica`] over TCP.
//!
//! One task owns the replica, the [`DurableLog`] and the [`CommandLog`]. It
//! takes one input at a time (a message from a peer, a client request, an
//! expired timer, the periodic catch-up tick), plus whatever else is queued,
//! and then performs the replica's outputs in this order:
//!
//! 1. the decisions delivered and the voting record (if it changed) are
//!    written to the store in one atomic batch, and the write waits until
//!    they are durable: nothing signed leaves before it would survive a crash;
//! 2. the decisions are applied to the state machine and the clients waiting
//!    for their commands are answered;
//! 3. messages are queued to the peers, timers set.
//!
//! Each peer has its own outgoing queue and task, so a slow or dead peer
//! delays nobody: its queue fills and further messages to it are dropped
//! (the replica resends what matters). Every [`SYNC_INTERVAL`] the node asks
//! one peer (in turn) for decisions from its next height on, so a node that
//! restarted behind an idle cluster still catches up; the replica accepts a
//! decision only if its commit certificate verifies.

use super::control::{
    ControlRequest, ControlResponse, Status, CONTROL, LOG_PAGE_BYTES, LOG_PAGE_COMMANDS,
    SUBMIT_PATIENCE,
};
use super::error::{io, store, ClusterError};
use super::state::{Applied, CommandLog};
use super::storage::DurableLog;
use super::tcp::TcpTransport;
use hologram::cam::RedbStore;
use hologram::consensus::message::MAX_MESSAGE_BYTES;
use hologram::consensus::{
    Command, CommandId, ConsensusMessage, Decision, Outgoing, Outputs, Replica, ReplicaConfig,
    Timer, ValidatorSet,
};
use hologram::lattice::transport::{async_trait, Handler, HandlerError, Protocol, Transport};
use hologram::lattice::NodeId;
use hologram::receipt::KeyPair;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How often a node asks a peer for decisions it may have missed.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(500);
/// Inputs queued for the node's task; consensus messages beyond are dropped.
const INBOX: usize = 1 << 16;
/// Messages queued for one peer; more are dropped.
const PEER_QUEUE: usize = 4096;
/// After a send to a peer fails, messages to it are dropped for this long
/// (so a dead peer costs one failed dial per pause, not one per message).
const PEER_PAUSE: Duration = Duration::from_millis(200);
/// The most inputs taken in one step before the outputs are performed.
const STEP_INPUTS: usize = 512;
/// Commands waiting to be ordered on one node; more are refused.
pub const MEMPOOL_CAPACITY: usize = 16_384;
/// Decisions sent per catch-up request.
const SYNC_BATCH: usize = 32;
/// The file of the node's store in its data directory.
pub const STORE_FILE: &str = "node.redb";

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's key pair (its id is its public key).
    pub keys: KeyPair,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The other validators and where they listen.
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// The data directory (created if missing).
    pub data: PathBuf,
    /// Heights decided concurrently.
    pub pipeline: usize,
    /// Decisions the replica keeps in memory to serve catch-up; older ones
    /// are read from the store.
    pub retain: usize,
}

impl NodeConfig {
    /// The validator set: this node and its peers, ordered by id so that
    /// every node given the same members agrees on the order (and so on
    /// the leaders).
    pub fn validators(&self) -> Result<ValidatorSet, ClusterError> {
        let mut ids: Vec<NodeId> = self.peers.iter().map(|(id, _)| *id).collect();
        ids.push(self.keys.node_id());
        ids.sort_unstable();
        Ok(ValidatorSet::new(ids)?)
    }
}

/// A short fingerprint of a validator set (BLAKE3-derive of the ids in
/// order), printed at start so operators can check that every node runs the
/// same set.
pub fn fingerprint(validators: &ValidatorSet) -> String {
    let mut hasher = blake3::Hasher::new_derive_key("hologram cluster-validators v1");
    for id in validators.validators() {
        hasher.update(id.as_bytes());
    }
    hasher.finalize().to_hex()[..16].to_string()
}

/// What the node's task is handed.
enum Input {
    Message(NodeId, ConsensusMessage),
    Submit(Command, oneshot::Sender<Result<Applied, String>>),
    Status(oneshot::Sender<Status>),
    Log(u64, oneshot::Sender<Vec<Command>>),
}

/// The inbound side: consensus messages and client requests, queued for the
/// node's task.
struct Inbound {
    inputs: mpsc::Sender<Input>,
}

#[async_trait]
impl Handler for Inbound {
    async fn request(
        &self,
        _: NodeId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        if protocol != CONTROL {
            return Err(HandlerError::Refused(format!(
                "a cluster node answers requests of protocol {} only",
                CONTROL.0
            )));
        }
        let request =
            ControlRequest::decode(&payload).map_err(|e| HandlerError::Refused(e.to_string()))?;
        let response = match request {
            ControlRequest::Submit(command) => {
                let (reply, answer) = oneshot::channel();
                self.ask(Input::Submit(command, reply)).await?;
                match tokio::time::timeout(SUBMIT_PATIENCE, answer).await {
                    Ok(Ok(Ok(at))) => ControlResponse::Applied(at),
                    Ok(Ok(Err(why))) => return Err(HandlerError::Refused(why)),
                    Ok(Err(_)) => return Err(stopped()),
                    Err(_) => {
                        return Err(HandlerError::Failed(format!(
                            "not applied within {SUBMIT_PATIENCE:?}; it stays pending, \
                             and submitting the same bytes again applies it at most once"
                        )))
                    }
                }
            }
            ControlRequest::Status => {
                let (reply, answer) = oneshot::channel();
                self.ask(Input::Status(reply)).await?;
                ControlResponse::Status(answer.await.map_err(|_| stopped())?)
            }
            ControlRequest::Log { from } => {
                let (reply, answer) = oneshot::channel();
                self.ask(Input::Log(from, reply)).await?;
                ControlResponse::Log(answer.await.map_err(|_| stopped())?)
            }
        };
        response
            .encode()
            .map_err(|e| HandlerError::Failed(e.to_string()))
    }

    async fn message(&self, from: NodeId, protocol: Protocol, payload: Vec<u8>) {
        if protocol != Protocol::CONSENSUS {
            return;
        }
        if let Ok(message) = ConsensusMessage::decode(&payload) {
            // A full queue drops the message, as a lossy network would.
            let _ = self.inputs.try_send(Input::Message(from, message));
        }
    }
}

impl Inbound {
    async fn ask(&self, input: Input) -> Result<(), HandlerError> {
        self.inputs.send(input).await.map_err(|_| stopped())
    }
}

fn stopped() -> HandlerError {
    HandlerError::Failed("the node is stopping".into())
}

/// One outgoing queue and task per peer.
struct Outbound {
    queues: HashMap<NodeId, mpsc::Sender<Vec<u8>>>,
}

impl Outbound {
    fn new(transport: &TcpTransport, peers: &[NodeId]) -> Self {
        let mut queues = HashMap::new();
        for &peer in peers {
            let (queue, mut pending) = mpsc::channel::<Vec<u8>>(PEER_QUEUE);
            let transport = transport.clone();
            tokio::spawn(async move {
                let mut paused_until: Option<Instant> = None;
                while let Some(bytes) = pending.recv().await {
                    if paused_until.is_some_and(|until| Instant::now() < until) {
                        continue;
                    }
                    paused_until = transport
                        .send(peer, Protocol::CONSENSUS, bytes)
                        .await
                        .err()
                        .map(|_| Instant::now() + PEER_PAUSE);
                }
            });
            queues.insert(peer, queue);
        }
        Self { queues }
    }

    fn send(&self, to: NodeId, bytes: Vec<u8>) {
        if let Some(queue) = self.queues.get(&to) {
            let _ = queue.try_send(bytes);
        }
    }
}

/// Runs a node until its transport fails or its store does (a node that
/// cannot make its state durable must not go on voting).
pub async fn run(config: NodeConfig) -> Result<(), ClusterError> {
    let me = config.keys.node_id();
    let validators = config.validators()?;
    std::fs::create_dir_all(&config.data).map_err(io(format!(
        "creating the data directory {}",
        config.data.display()
    )))?;
    let store = RedbStore::create(config.data.join(STORE_FILE))
        .map_err(store("opening the store in the data directory"))?;
    let store = Arc::new(store);
    let (log, recovered) = DurableLog::open(store, &validators).await?;
    let mut state = CommandLog::new();
    for decision in &recovered.decisions {
        state.apply(decision);
    }
    let replica_config = ReplicaConfig {
        max_pipeline_depth: config.pipeline,
        mempool_capacity: MEMPOOL_CAPACITY,
        retain_decisions: config.retain,
        sync_batch: config.retain.min(SYNC_BATCH),
        ..ReplicaConfig::new(validators.clone())
    };
    let keep = replica_config.retain_decisions;
    let delivered = recovered.decisions.len();
    let recent = recovered.decisions[delivered.saturating_sub(keep)..].to_vec();
    let replica = Replica::restore(
        config.keys.clone(),
        replica_config,
        delivered as u64,
        recent,
        recovered.record,
    )?;

    let (inputs, inbox) = mpsc::channel(INBOX);
    let transport = TcpTransport::bind(
        me,
        config.listen,
        Arc::new(Inbound { inputs }),
        MAX_MESSAGE_BYTES,
    )
    .await
    .map_err(io(format!("listening on {}", config.listen)))?;
    for &(peer, addr) in &config.peers {
        transport.add_peer(peer, addr);
    }
    let peers: Vec<NodeId> = validators
        .validators()
        .iter()
        .copied()
        .filter(|id| *id != me)
        .collect();
    println!(
        "ready node={me} listen={} validators={} set={} heights={} applied={} head={}",
        transport.local_addr(),
        validators.len(),
        fingerprint(&validators),
        state.heights(),
        state.len(),
        state.head(),
    );
    let driver = Driver {
        outbound: Outbound::new(&transport, &peers),
        replica,
        log,
        state,
        started: Instant::now(),
        timers: BTreeMap::new(),
        timer_seq: 0,
        waiters: HashMap::new(),
        old_syncs: Vec::new(),
        peers,
        sync_turn: 0,
    };
    let result = driver.run(inbox).await;
    drop(transport);
    result
}

/// The node's task: see the [module docs](self).
struct Driver {
    replica: Replica,
    log: DurableLog<RedbStore>,
    state: CommandLog,
    outbound: Outbound,
    started: Instant,
    /// Timers by (due in ms since start, sequence).
    timers: BTreeMap<(u64, u64), Timer>,
    timer_seq: u64,
    waiters: HashMap<CommandId, Vec<oneshot::Sender<Result<Applied, String>>>>,
    /// Catch-up requests (peer, first height) to serve from the store.
    old_syncs: Vec<(NodeId, u64)>,
    peers: Vec<NodeId>,
    sync_turn: usize,
}

impl Driver {
    /// Milliseconds since the node started: the replica's clock.
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<Input>) -> Result<(), ClusterError> {
        let mut out = Outputs::default();
        self.replica.start(self.now(), &mut out);
        self.perform(&mut out).await?;
        let mut sync = tokio::time::interval(SYNC_INTERVAL);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_timer = self.timers.keys().next().map(|(due, _)| *due);
            let wake = match next_timer {
                Some(due) => self.started + Duration::from_millis(due),
                None => Instant::now() + Duration::from_secs(3600),
            };
            tokio::select! {
                input = inbox.recv() => match input {
                    Some(input) => self.handle(input, &mut out),
                    None => return Ok(()),
                },
                () = tokio::time::sleep_until(wake.into()) => {}
                _ = sync.tick() => self.ask_for_decisions(),
            }
            for _ in 1..STEP_INPUTS {
                match inbox.try_recv() {
                    Ok(input) => self.handle(input, &mut out),
                    Err(_) => break,
                }
            }
            self.fire_timers(&mut out);
            self.perform(&mut out).await?;
        }
    }

    fn handle(&mut self, input: Input, out: &mut Outputs) {
        let now = self.now();
        match input {
            Input::Message(peer, ConsensusMessage::SyncRequest { from })
                if self.forgotten(peer, from) =>
            {
                self.old_syncs.push((peer, from));
            }
            Input::Message(from, message) => self.replica.handle_message(now, from, message, out),
            Input::Submit(command, reply) => {
                let id = command.id();
                if let Some(at) = self.state.get(&id) {
                    let _ = reply.send(Ok(at));
                    return;
                }
                match self.replica.submit(now, vec![command], true, out) {
                    Ok(_) => self.waiters.entry(id).or_default().push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            Input::Status(reply) => {
                let _ = reply.send(Status {
                    node: self.replica.id(),
                    heights: self.state.heights(),
                    applied: self.state.len(),
                    head: self.state.head(),
                    pending: self.replica.mempool_len() as u64,
                    skipped: self.state.skipped(),
                });
            }
            Input::Log(from, reply) => {
                let _ = reply.send(self.state.page(from, LOG_PAGE_COMMANDS, LOG_PAGE_BYTES));
            }
        }
    }

    /// Whether a catch-up request of validator `peer` from height `first`
    /// asks for decisions the replica no longer keeps in memory.
    fn forgotten(&self, peer: NodeId, first: u64) -> bool {
        first < self.replica.next_height()
            && self.replica.decision(first).is_none()
            && self.replica.validators().contains(&peer)
    }

    /// Serves the catch-up requests for forgotten heights from the store.
    async fn serve_old_syncs(&mut self) -> Result<(), ClusterError> {
        let batch = self.replica.config().sync_batch as u64;
        for (peer, first) in std::mem::take(&mut self.old_syncs) {
            let end = first.saturating_add(batch).min(self.replica.next_height());
            for height in first..end {
                if let Some(d) = self.log.decision(height).await? {
                    self.send(peer, &ConsensusMessage::Decision(Box::new(d)));
                }
            }
        }
        Ok(())
    }

    fn send(&self, to: NodeId, message: &ConsensusMessage) {
        if let Ok(bytes) = message.encode() {
            self.outbound.send(to, bytes);
        }
    }

    fn fire_timers(&mut self, out: &mut Outputs) {
        let now = self.now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            self.replica.handle_timer(now, timer, out);
        }
    }

    /// Asks the next peer in turn for decisions from this node's next
    /// height on, and forgets clients that stopped waiting.
    fn ask_for_decisions(&mut self) {
        self.waiters.retain(|_, replies| {
            replies.retain(|reply| !reply.is_closed());
            !replies.is_empty()
        });
        let Some(&peer) = self.peers.get(self.sync_turn % self.peers.len().max(1)) else {
            return;
        };
        self.sync_turn = self.sync_turn.wrapping_add(1);
        let request = ConsensusMessage::SyncRequest {
            from: self.replica.next_height(),
        };
        self.send(peer, &request);
    }

    /// Persists, applies, answers, sends and sets timers: see the
    /// [module docs](self).
    async fn perform(&mut self, out: &mut Outputs) -> Result<(), ClusterError> {
        let decisions: Vec<Decision> = out.decisions.drain(..).collect();
        self.log
            .persist(&decisions, self.replica.voting_record())
            .await?;
        for decision in &decisions {
            self.apply(decision);
        }
        self.serve_old_syncs().await?;
        for m in out.misbehaviour.drain(..) {
            eprintln!("misbehaviour of {}: {:?}", m.node, m.offence);
        }
        for message in out.messages.drain(..) {
            let (targets, message) = match message {
                Outgoing::Broadcast(m) => (self.peers.clone(), m),
                Outgoing::To(to, m) => (vec![to], m),
            };
            let Ok(bytes) = message.encode() else {
                continue;
            };
            for to in targets {
                self.outbound.send(to, bytes.clone());
            }
        }
        let now = self.now();
        for (after, timer) in out.timers.drain(..) {
            self.timer_seq += 1;
            self.timers
                .insert((now.saturating_add(after), self.timer_seq), timer);
        }
        Ok(())
    }

    fn apply(&mut self, decision: &Decision) {
        let fresh = self.state.apply(decision);
        for (id, at) in &fresh {
            for reply in self.waiters.remove(id).unwrap_or_default() {
                let _ = reply.send(Ok(*at));
            }
        }
        println!(
            "height {}: {} commands, {} new; applied {}, head {}",
            decision.height(),
            decision.batch.len(),
            fresh.len(),
            self.state.len(),
            &self.state.head().to_string()[..16],
        );
    }
}
