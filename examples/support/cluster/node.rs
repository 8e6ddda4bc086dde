//! The node: a consensus replica over TCP, made durable in a `RedbStore`,
//! and the replicated state machine its decisions feed.
//!
//! It is assembled from the parts of `hologram-consensus`:
//!
//! - at start, [`DurableLog::open`] reads the blocks (decisions with their
//!   commit certificates, each verified) and the voting record from the
//!   store; the [`ReplicatedStateMachine`] replays the blocks, and
//!   [`Recovered::replica`](hologram::consensus::Recovered::replica) restores
//!   the replica at the next height with its locks and signed votes;
//! - the [`ReplicaDriver`] runs the replica with that log
//!   ([`ReplicaDriver::with_log`]): what a step decided and signed is durable
//!   before any of its messages is sent (write-ahead), so a node killed at any
//!   moment neither loses a decision nor signs a conflicting vote after a
//!   restart. It sends through [`Queued`], so a dead peer never stalls it;
//! - the node task (here) owns the state machine: it applies each decision
//!   the driver delivers, answers clients ([`control`](super::control)), and
//!   every [`SYNC_INTERVAL`] asks one peer, in turn, for decisions from its
//!   next height on, so that a node restarted behind an idle cluster catches
//!   up too (the replica accepts a decision only with a commit certificate
//!   that verifies: no peer is trusted).

use super::control::{
    ControlRequest, ControlResponse, Status, CONTROL, LOG_PAGE_BYTES, LOG_PAGE_COMMANDS,
    SUBMIT_PATIENCE,
};
use super::error::{io, store, ClusterError};
use super::outbound::Queued;
use super::state::{Ack, CommandList};
use super::tcp::TcpTransport;
use futures::StreamExt;
use hologram::cam::{RedbStore, Store};
use hologram::consensus::message::MAX_MESSAGE_BYTES;
use hologram::consensus::{
    inbox, Command, CommandId, ConsensusMessage, Decision, DriverHandle, DurableLog, ReplicaConfig,
    ReplicaDriver, ReplicatedStateMachine, ValidatorSet,
};
use hologram::lattice::transport::{
    async_trait, Handler, HandlerError, Protocol, ProtocolMux, Timer, Transport,
};
use hologram::lattice::NodeId;
use hologram::receipt::{KeyPair, Receipt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How often a node asks a peer for decisions it may have missed.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(500);
/// Client requests queued for the node task.
const REQUESTS: usize = 1024;
/// Commands waiting to be ordered on one node; more are refused.
pub const MEMPOOL_CAPACITY: usize = 16_384;
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

/// A client request handed to the node task, with where its answer goes.
enum Request {
    Submit(Command, oneshot::Sender<Result<Ack, String>>),
    Status(oneshot::Sender<Status>),
    Log(u64, oneshot::Sender<Vec<(Command, Receipt)>>),
}

/// Serves [`CONTROL`] requests by handing them to the node task.
struct ControlHandler {
    requests: mpsc::Sender<Request>,
}

#[async_trait]
impl Handler for ControlHandler {
    async fn request(
        &self,
        _: NodeId,
        _: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        let request =
            ControlRequest::decode(&payload).map_err(|e| HandlerError::Refused(e.to_string()))?;
        let response = match request {
            ControlRequest::Submit(command) => {
                let (reply, answer) = oneshot::channel();
                self.ask(Request::Submit(command, reply)).await?;
                match tokio::time::timeout(SUBMIT_PATIENCE, answer).await {
                    Ok(Ok(Ok(ack))) => ControlResponse::Applied(ack),
                    Ok(Ok(Err(why))) => return Err(HandlerError::Refused(why)),
                    Ok(Err(_)) => return Err(stopped()),
                    Err(_) => {
                        return Err(HandlerError::Failed(format!(
                            "not applied within {SUBMIT_PATIENCE:?}; it stays pending, \
                             and submitting the same command again applies it at most once"
                        )))
                    }
                }
            }
            ControlRequest::Status => {
                let (reply, answer) = oneshot::channel();
                self.ask(Request::Status(reply)).await?;
                ControlResponse::Status(answer.await.map_err(|_| stopped())?)
            }
            ControlRequest::Log { from } => {
                let (reply, answer) = oneshot::channel();
                self.ask(Request::Log(from, reply)).await?;
                ControlResponse::Log(answer.await.map_err(|_| stopped())?)
            }
        };
        response
            .encode()
            .map_err(|e| HandlerError::Failed(e.to_string()))
    }

    async fn message(&self, _: NodeId, _: Protocol, _: Vec<u8>) {}
}

impl ControlHandler {
    async fn ask(&self, request: Request) -> Result<(), HandlerError> {
        self.requests.send(request).await.map_err(|_| stopped())
    }
}

fn stopped() -> HandlerError {
    HandlerError::Failed("the node is stopping".into())
}

/// Runs a node until its driver stops: its store failed (a node that cannot
/// make its state durable must not go on voting) or it was asked to.
pub async fn run(config: NodeConfig) -> Result<(), ClusterError> {
    let me = config.keys.node_id();
    let validators = config.validators()?;
    std::fs::create_dir_all(&config.data).map_err(io(format!(
        "creating the data directory {}",
        config.data.display()
    )))?;
    let store: Arc<dyn Store> = Arc::new(
        RedbStore::create(config.data.join(STORE_FILE))
            .map_err(store("opening the store in the data directory"))?,
    );
    let (log, recovered) = DurableLog::open(store, validators.clone()).await?;
    for (address, why) in &recovered.rejected {
        eprintln!("stored object {address} not used: {why}");
    }
    let mut rsm = ReplicatedStateMachine::new(CommandList::new(), validators.clone());
    let mut acks = HashMap::new();
    for applied in rsm.apply_all(&recovered.decisions)? {
        let ack = Ack {
            height: applied.entry.height,
            position: applied.output,
        };
        acks.insert(applied.entry.command, ack);
    }
    let replica = recovered.replica(
        config.keys.clone(),
        ReplicaConfig {
            max_pipeline_depth: config.pipeline,
            mempool_capacity: MEMPOOL_CAPACITY,
            ..ReplicaConfig::new(validators.clone())
        },
    )?;

    let (consensus, consensus_inbox) = inbox();
    let (requests, incoming) = mpsc::channel(REQUESTS);
    let mux = ProtocolMux::new();
    mux.mount(Arc::new(consensus))
        .mount_as(CONTROL, Arc::new(ControlHandler { requests }));
    let tcp = TcpTransport::bind(me, config.listen, Arc::new(mux), MAX_MESSAGE_BYTES)
        .await
        .map_err(io(format!("listening on {}", config.listen)))?;
    for &(peer, addr) in &config.peers {
        tcp.add_peer(peer, addr);
    }
    let peers: Vec<NodeId> = config.peers.iter().map(|(id, _)| *id).collect();
    let transport = Queued::new(Arc::new(tcp.clone()), &peers);
    let (driver, handle, decisions) = ReplicaDriver::new(
        replica,
        Arc::new(transport.clone()),
        Timer::new(),
        consensus_inbox,
    );
    let driver = tokio::spawn(driver.with_log(log).try_run());
    println!(
        "ready node={me} listen={} validators={} set={} heights={} applied={} head={}",
        tcp.local_addr(),
        validators.len(),
        fingerprint(&validators),
        rsm.next_height(),
        rsm.log().len(),
        rsm.receipt_chain().head(),
    );
    let node = Node {
        rsm,
        acks,
        skipped: 0,
        waiters: HashMap::new(),
        handle: handle.clone(),
        transport,
        peers,
        sync_turn: 0,
    };
    let served = node.serve(incoming, decisions).await;
    handle.stop();
    let (_, stored) = driver
        .await
        .map_err(|e| io("running the consensus driver")(std::io::Error::other(e)))?;
    stored?;
    served
}

/// The node task: see the [module docs](self).
struct Node {
    rsm: ReplicatedStateMachine<CommandList>,
    acks: HashMap<CommandId, Ack>,
    skipped: u64,
    waiters: HashMap<CommandId, Vec<oneshot::Sender<Result<Ack, String>>>>,
    handle: DriverHandle,
    transport: Queued,
    peers: Vec<NodeId>,
    sync_turn: usize,
}

impl Node {
    /// Serves until the driver stops delivering decisions.
    async fn serve(
        mut self,
        mut incoming: mpsc::Receiver<Request>,
        mut decisions: futures::channel::mpsc::UnboundedReceiver<Decision>,
    ) -> Result<(), ClusterError> {
        let mut sync = tokio::time::interval(SYNC_INTERVAL);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                decision = decisions.next() => match decision {
                    Some(decision) => self.apply(&decision)?,
                    None => return Ok(()),
                },
                Some(request) = incoming.recv() => self.answer(request).await,
                _ = sync.tick() => self.ask_for_decisions().await,
            }
        }
    }

    /// Applies a decision and answers the clients waiting for its commands.
    fn apply(&mut self, decision: &Decision) -> Result<(), ClusterError> {
        let applied = self.rsm.apply_decision(decision)?;
        self.skipped += (decision.batch.len() - applied.len()) as u64;
        for done in &applied {
            let ack = Ack {
                height: done.entry.height,
                position: done.output,
            };
            self.acks.insert(done.entry.command, ack);
            for reply in self.waiters.remove(&done.entry.command).unwrap_or_default() {
                let _ = reply.send(Ok(ack));
            }
        }
        println!(
            "height {}: {} commands, {} new; applied {}, head {}",
            decision.height(),
            decision.batch.len(),
            applied.len(),
            self.rsm.log().len(),
            &self.rsm.receipt_chain().head().to_string()[..16],
        );
        Ok(())
    }

    async fn answer(&mut self, request: Request) {
        match request {
            Request::Submit(command, reply) => {
                let id = command.id();
                if let Some(&ack) = self.acks.get(&id) {
                    let _ = reply.send(Ok(ack));
                    return;
                }
                // Answered once the driver made the command durable.
                match self.handle.submit(vec![command], true).await {
                    Ok(_) => self.waiters.entry(id).or_default().push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            Request::Status(reply) => {
                let chain = self.rsm.receipt_chain();
                let _ = reply.send(Status {
                    node: self.transport.local_id(),
                    heights: self.rsm.next_height(),
                    applied: chain.len(),
                    head: chain.head(),
                    skipped: self.skipped,
                });
            }
            Request::Log(from, reply) => {
                let state = self.rsm.state();
                let page = state
                    .page(from, LOG_PAGE_COMMANDS, LOG_PAGE_BYTES)
                    .filter_map(|p| {
                        let entry = self.rsm.log().get(usize::try_from(p).ok()?)?;
                        Some((state.get(p)?.clone(), entry.receipt))
                    })
                    .collect();
                let _ = reply.send(page);
            }
        }
    }

    /// Asks the next peer in turn for decisions from this node's next
    /// height on, and forgets clients that stopped waiting.
    async fn ask_for_decisions(&mut self) {
        self.waiters.retain(|_, replies| {
            replies.retain(|reply| !reply.is_closed());
            !replies.is_empty()
        });
        let Some(&peer) = self.peers.get(self.sync_turn % self.peers.len().max(1)) else {
            return;
        };
        self.sync_turn = self.sync_turn.wrapping_add(1);
        let request = ConsensusMessage::SyncRequest {
            from: self.rsm.next_height(),
        };
        if let Ok(bytes) = request.encode() {
            // Queued: a failure is a lost message, asked again next time.
            let _ = self.transport.send(peer, Protocol::CONSENSUS, bytes).await;
        }
    }
}
