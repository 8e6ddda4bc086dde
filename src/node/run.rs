//! [`ValidatorNode`]: a consensus replica over QUIC, made durable in a
//! `RedbStore`, and the replicated state machine its decisions feed.

use super::applied::AppliedLog;
use super::config::{fingerprint, NodeConfig};
use super::control::{CONTROL, MAX_CONTROL_BYTES};
use super::error::{io, store, NodeError};
use super::http;
use super::machine::SharedMachine;
use super::offload::Offloaded;
use super::outbound::Queued;
use super::roster::Roster;
use super::service::{ControlHandler, ValidatorsOnly};
use super::task::NodeTask;
use super::telemetry::install_prometheus;
use super::watch::Watch;
use crate::net::{AddressBook, QuicTransport};
use hologram_cam::{RedbStore, Store};
use hologram_consensus::MAX_MESSAGE_BYTES;
use hologram_consensus::{
    inbox, DriverHandle, DurableLog, ReplicaConfig, ReplicaDriver, SnapshotConfig,
};
use hologram_lattice::transport::{ProtocolMux, Timer};
use hologram_lattice::NodeId;
use hologram_receipt::ChainHead;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{info, warn, Instrument};

/// How often a node asks a peer for decisions it may have missed.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(500);
/// Client requests queued for the node task.
const REQUESTS: usize = 1024;
/// Commands waiting to be ordered on one node; more are refused.
pub const MEMPOOL_CAPACITY: usize = 16_384;
/// The file of the node's store in its data directory.
pub const STORE_FILE: &str = "node.redb";
/// The page cache of the node's store: modest, since what a node reads back
/// is mostly the newest blocks (the operating system caches file pages too).
const STORE_CACHE_BYTES: usize = 16 << 20;

/// What a node recovered and where it listens, once started.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// The node's id.
    pub id: NodeId,
    /// The address its QUIC endpoint is bound to.
    pub listen: SocketAddr,
    /// Validators in the set.
    pub validators: usize,
    /// The set's [`fingerprint`](super::fingerprint).
    pub set: String,
    /// Heights decided and applied (recovered from the store).
    pub heights: u64,
    /// Commands applied (recovered from the store).
    pub applied: u64,
    /// The head of the chain over the applied commands' receipts.
    pub head: ChainHead,
    /// The height of the snapshot the node restored from its store (0:
    /// none; the log was never compacted).
    pub snapshot: u64,
    /// Where `/metrics` and `/health` are served, if they are.
    pub metrics: Option<SocketAddr>,
}

/// A running validator node: started by [`ValidatorNode::start`], served by
/// [`ValidatorNode::run`].
///
/// It is assembled from the parts of `hologram-consensus`:
///
/// - at start, [`DurableLog::open`] reads the base (the certified snapshot
///   the log was compacted to, verified part by part), the blocks after it
///   (decisions with their commit certificates, each verified) and the
///   voting record from the store, and
///   [`Recovered::replica`](hologram_consensus::Recovered::replica)
///   restores the replica at the next height with its locks and signed
///   votes;
/// - the [`ReplicaDriver`] runs the replica with that log
///   ([`ReplicaDriver::with_log`]): what a step decided and signed is durable
///   before any of its messages is sent (write-ahead), so a node killed at any
///   moment neither loses a decision nor signs a conflicting vote after a
///   restart. It sends through per-peer queues, so a dead peer never stalls
///   it;
/// - the driver also runs the replicated state machine
///   ([`ReplicaDriver::with_machine`]; restored from the snapshot, the
///   blocks after it applied again): it applies each decided height,
///   snapshots the machine every [`NodeConfig::snapshot_every`] heights and
///   tells the replica the checkpoint (a leader proposes it, the others
///   check it against their own), compacts the durable log to each
///   certified snapshot, offers that snapshot to peers asking for heights
///   below it, and fetches, verifies (part by part, against a certificate
///   of the validator set) and restores the newest certified snapshot when
///   this node is behind a peer's compacted log (an empty data directory,
///   or any number of heights behind);
/// - the node task answers clients from what the machine applied (once
///   durable), keeps the newest applied commands for log pages, and every
///   [`SYNC_INTERVAL`] asks one peer, in turn, for decisions from its next
///   height on, so that a node restarted behind an idle cluster catches up
///   too (the replica accepts a decision only with a commit certificate
///   that verifies: no peer is trusted).
pub struct ValidatorNode {
    info: NodeInfo,
    task: NodeTask,
    incoming: mpsc::Receiver<super::service::Request>,
    decisions: futures::channel::mpsc::UnboundedReceiver<hologram_consensus::Decision>,
    driver: tokio::task::JoinHandle<(
        hologram_consensus::Replica,
        Result<(), hologram_consensus::ConsensusError>,
    )>,
    handle: DriverHandle,
    transport: QuicTransport,
    watch: Arc<Watch>,
    endpoint: Option<(TcpListener, PrometheusHandle)>,
}

impl ValidatorNode {
    /// Recovers the node from its data directory, binds its QUIC endpoint
    /// and starts its consensus driver. Must be called within a tokio
    /// runtime; the node serves once [`run`](Self::run) is awaited.
    pub async fn start(config: NodeConfig) -> Result<ValidatorNode, NodeError> {
        Self::start_on(config, |data| {
            // Its names (the consensus log's blocks and voting record, the
            // applied answers) are made durable by a synced append to the
            // journal beside the file, not by a synced redb commit.
            let redb = RedbStore::create_with_cache(data.join(STORE_FILE), STORE_CACHE_BYTES)
                .and_then(RedbStore::with_names_journal)
                .map_err(store("opening the store in the data directory"))?;
            Ok(Arc::new(redb))
        })
        .await
    }

    /// [`start`](Self::start) on the store `open` gives for the data
    /// directory (the node's `RedbStore`; another store in tests).
    pub(crate) async fn start_on(
        config: NodeConfig,
        open: impl FnOnce(&Path) -> Result<Arc<dyn Store>, NodeError>,
    ) -> Result<ValidatorNode, NodeError> {
        let me = config.keys.node_id();
        let validators = config.validators()?;
        // The recorder first: every handle registered from here on records.
        let endpoint = match config.metrics {
            Some(addr) => {
                let metrics = install_prometheus()?;
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(io(format!("binding the metrics endpoint {addr}")))?;
                Some((listener, metrics))
            }
            None => None,
        };
        std::fs::create_dir_all(&config.data).map_err(io(format!(
            "creating the data directory {}",
            config.data.display()
        )))?;
        let redb = open(&config.data)?;
        // Its commits sync the file: off the runtime's workers.
        let store: Arc<dyn Store> = Arc::new(Offloaded(redb));
        let replica_config = ReplicaConfig {
            max_pipeline_depth: config.pipeline.max(1),
            mempool_capacity: MEMPOOL_CAPACITY,
            ..ReplicaConfig::new(validators.clone())
        };
        // The certified snapshot and the blocks after it: at most about
        // `snapshot_every` heights once the log is compacted.
        let (log, recovered) = DurableLog::open(store.clone(), validators.clone()).await?;
        for (address, why) in &recovered.rejected {
            warn!(%address, %why, "stored object not used");
        }
        let replica = recovered.replica(config.keys.clone(), replica_config)?;
        let mempool = replica.mempool_size();
        let applied_log = AppliedLog::open(store, config.keep_commands).await?;
        let machine = SharedMachine::new(validators.clone());
        let (events, machine_events) = mpsc::unbounded_channel();
        let snapshots = SnapshotConfig::every(config.snapshot_every.max(1));
        let book = AddressBook::new();
        for &(peer, addr) in &config.peers {
            book.insert(peer, addr);
        }
        // Who the peers are follows the validator sets (the machine's, once
        // rebuilt below); the genesis set's until then.
        let roster = Arc::new(Roster::new(
            me,
            validators.validators().to_vec(),
            book.clone(),
        ));
        let genesis_peers = roster.peers();

        let (consensus, consensus_inbox) = inbox();
        let (requests, incoming) = mpsc::channel(REQUESTS);
        let mux = ProtocolMux::new();
        mux.mount_as(
            hologram_consensus::CONSENSUS_PROTOCOL,
            Arc::new(ValidatorsOnly {
                validators: roster.clone(),
                inner: Arc::new(consensus),
            }),
        )
        .mount_as(
            CONTROL,
            Arc::new(ControlHandler {
                requests,
                keys: config.keys.clone(),
                operators: Arc::new(config.operators.clone()),
            }),
        );
        let mut quic = config.quic.clone();
        quic.max_frame = quic.max_frame.max(MAX_MESSAGE_BYTES).max(MAX_CONTROL_BYTES);
        let transport =
            QuicTransport::bind(&config.keys, config.listen, Arc::new(mux), book, quic)?;
        let queued = Queued::new(Arc::new(transport.clone()), &genesis_peers);
        let (driver, handle, decisions) = ReplicaDriver::new(
            replica,
            Arc::new(queued.clone()),
            Timer::new(),
            consensus_inbox,
        );
        // The machine is rebuilt here: the snapshot restored, the blocks
        // after it applied (the task takes what that did before serving).
        let factory = machine.factory(validators.clone(), events);
        let driver = (driver.with_log(log)).with_machine(factory, snapshots, &recovered)?;
        drop(recovered);
        if let Some(peers) = roster.follow(machine.lock().membership()) {
            queued.set_peers(&peers);
        }
        let watch = Watch::new(&roster.peers(), 0, mempool, &config.data);
        let mut task = NodeTask::new(
            machine.clone(),
            machine_events,
            applied_log,
            handle.clone(),
            queued,
            (roster, transport.clone()),
            watch.clone(),
        );
        task.recover().await?;
        let (heights, chain) = {
            let rsm = machine.lock();
            (rsm.next_height(), *rsm.receipt_chain())
        };
        metrics::gauge!("hologram_consensus_height").set(heights as f64);
        metrics::gauge!("hologram_node_applied_commands").set(chain.len() as f64);
        // Every event of this node's tasks carries its id.
        let span = tracing::info_span!("node", id = %me);
        let driver = tokio::spawn(driver.try_run().instrument(span));
        let info = NodeInfo {
            id: me,
            listen: transport.local_addr(),
            validators: validators.len(),
            set: fingerprint(&validators),
            heights,
            applied: chain.len(),
            head: chain.head(),
            snapshot: machine.snapshot_height(),
            metrics: match &endpoint {
                Some((listener, _)) => {
                    Some(listener.local_addr().map_err(io("the metrics endpoint"))?)
                }
                None => None,
            },
        };
        info!(node = %me, listen = %info.listen, set = %info.set, heights = info.heights,
              applied = info.applied, snapshot = info.snapshot,
              snapshot_every = snapshots.interval, metrics = ?info.metrics,
              "validator node started");
        Ok(ValidatorNode {
            info,
            task,
            incoming,
            decisions,
            driver,
            handle,
            transport,
            watch,
            endpoint,
        })
    }

    /// What the node recovered and where it listens.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// The handle of the node's consensus driver:
    /// [`stop`](DriverHandle::stop) makes [`run`](Self::run) return.
    pub fn driver(&self) -> DriverHandle {
        self.handle.clone()
    }

    /// Serves until the driver stops: its store failed (a node that cannot
    /// make its state durable must not go on voting) or it was asked to
    /// ([`driver`](Self::driver)). Closes the transport on the way out.
    pub async fn run(self) -> Result<(), NodeError> {
        let span = tracing::info_span!("node", id = %self.info.id);
        let probe = tokio::spawn(
            (self.watch.clone().probe(self.transport.clone())).instrument(span.clone()),
        );
        let endpoint = self.endpoint.map(|(listener, metrics)| {
            let watch = self.watch.clone();
            tokio::spawn(http::serve(listener, http::Endpoint { metrics, watch }))
        });
        let served = (self.task.serve(self.incoming, self.decisions))
            .instrument(span)
            .await;
        probe.abort();
        if let Some(endpoint) = endpoint {
            endpoint.abort();
        }
        self.handle.stop();
        let joined = self.driver.await;
        self.transport.close();
        let (_, stored) =
            joined.map_err(|e| io("running the consensus driver")(std::io::Error::other(e)))?;
        stored?;
        served
    }
}
