//! What a node knows of its own progress and of its peers': a status probe
//! of every peer each [`PROBE_INTERVAL`], the node's health (ready, lagging,
//! stalled) and the per-peer gauges.
//!
//! A peer is *up* if it answered the last probe within [`PROBE_TIMEOUT`];
//! it is *stalled* if the height it reports (or last reported) has not
//! advanced for [`STALL_AFTER`] while this node's went past it. The node
//! itself is *stalled* if its own height has not advanced for
//! [`STALL_AFTER`] while a peer reports a higher one or clients wait for
//! commands, and *lagging* if a peer reports a height more than
//! [`LAG_HEIGHTS`] ahead.

use super::control::{ControlRequest, ControlResponse, CONTROL};
use crate::net::{peer_label, QuicTransport};
use hologram_lattice::transport::Transport;
use hologram_lattice::NodeId;
use metrics::Gauge;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How often a node probes each peer's status.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a probe waits for its answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// How long a height may stand still before the node (or a peer) is
/// reported stalled.
pub const STALL_AFTER: Duration = Duration::from_secs(4);
/// How many heights behind a peer a node may be and still be ready.
pub const LAG_HEIGHTS: u64 = 16;

/// A node's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Deciding heights, not far behind its peers.
    Ready,
    /// A peer reports a height more than [`LAG_HEIGHTS`] ahead (catching up).
    Lagging,
    /// No height decided for [`STALL_AFTER`] although peers went on or
    /// clients wait.
    Stalled,
}

impl Health {
    /// `ready`, `lagging` or `stalled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ready => "ready",
            Health::Lagging => "lagging",
            Health::Stalled => "stalled",
        }
    }

    fn gauge(self) -> f64 {
        match self {
            Health::Ready => 0.0,
            Health::Lagging => 1.0,
            Health::Stalled => 2.0,
        }
    }
}

/// What a node knows of one peer (in [`Status::peers`](super::Status)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer.
    pub id: NodeId,
    /// Whether it answered the last probe in time.
    pub up: bool,
    /// Whether its height stood still while this node's went past it.
    pub stalled: bool,
    /// The next height it last reported (none yet: never answered).
    pub height: Option<u64>,
    /// Milliseconds since it last answered (none: never).
    pub last_answer_ms: Option<u64>,
}

/// A node's report (the client protocol's [`ControlRequest::Report`]):
/// its status, health, mempool, data directory and peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Heights, applied commands, the chain head.
    pub status: super::Status,
    /// Ready, lagging or stalled.
    pub health: Health,
    /// Commands waiting in the mempool.
    pub mempool: u64,
    /// Clients' commands this node waits to see applied.
    pub waiting: u64,
    /// Bytes in the data directory (measured every probe).
    pub data_bytes: u64,
    /// What the node knows of each peer (at most
    /// [`MAX_VALIDATORS`](hologram_consensus::MAX_VALIDATORS)).
    pub peers: Vec<PeerStatus>,
}

/// One peer's entry: its gauges and what was seen.
struct Peer {
    id: NodeId,
    up: Gauge,
    height: Gauge,
    stalled: Gauge,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    up: bool,
    stalled: bool,
    height: Option<u64>,
    answered: Option<Instant>,
    /// When its reported height last changed.
    moved: Option<Instant>,
}

/// Shared by the node task (its own height, clients waiting), the prober
/// and the endpoint (health).
pub(crate) struct Watch {
    peers: Vec<Peer>,
    height: AtomicU64,
    waiting: AtomicUsize,
    /// The mempool's size, published by the replica.
    pub(crate) mempool: Arc<AtomicUsize>,
    own: Mutex<Own>,
    health: Gauge,
    data: PathBuf,
    data_bytes: AtomicU64,
    data_gauge: Gauge,
}

struct Own {
    height: u64,
    moved: Instant,
    health: Health,
}

impl Watch {
    pub(crate) fn new(
        peers: &[NodeId],
        height: u64,
        mempool: Arc<AtomicUsize>,
        data: &Path,
    ) -> Arc<Watch> {
        let peers = peers
            .iter()
            .map(|&id| {
                // Registered once per peer: the label is made here only.
                let label = peer_label(&id);
                Peer {
                    id,
                    up: metrics::gauge!("hologram_node_peer_up", "peer" => label.clone()),
                    height: metrics::gauge!("hologram_node_peer_height", "peer" => label.clone()),
                    stalled: metrics::gauge!("hologram_node_peer_stalled", "peer" => label),
                    seen: Mutex::default(),
                }
            })
            .collect();
        Arc::new(Watch {
            peers,
            height: AtomicU64::new(height),
            waiting: AtomicUsize::new(0),
            mempool,
            own: Mutex::new(Own {
                height,
                moved: Instant::now(),
                health: Health::Ready,
            }),
            health: metrics::gauge!("hologram_node_health"),
            data: data.to_path_buf(),
            data_bytes: AtomicU64::new(0),
            data_gauge: metrics::gauge!("hologram_node_data_bytes"),
        })
    }

    /// The node task applied heights up to `height` (its next height), and
    /// `waiting` clients wait for commands.
    pub(crate) fn progress(&self, height: u64, waiting: usize) {
        self.height.store(height, Ordering::Relaxed);
        self.waiting.store(waiting, Ordering::Relaxed);
    }

    /// The node's health as last assessed.
    pub(crate) fn health(&self) -> Health {
        lock(&self.own).health
    }

    /// The node's report, around its `status`.
    pub(crate) fn report(&self, status: super::Status) -> NodeReport {
        NodeReport {
            status,
            health: self.health(),
            mempool: self.mempool.load(Ordering::Relaxed) as u64,
            waiting: self.waiting.load(Ordering::Relaxed) as u64,
            data_bytes: self.data_bytes.load(Ordering::Relaxed),
            peers: self.peers(),
        }
    }

    /// What the node knows of each peer.
    pub(crate) fn peers(&self) -> Vec<PeerStatus> {
        let now = Instant::now();
        (self.peers.iter())
            .map(|p| {
                let seen = lock(&p.seen);
                PeerStatus {
                    id: p.id,
                    up: seen.up,
                    stalled: seen.stalled,
                    height: seen.height,
                    last_answer_ms: seen.answered.map(|at| (now - at).as_millis() as u64),
                }
            })
            .collect()
    }

    /// Probes every peer each [`PROBE_INTERVAL`] and assesses health, until
    /// the task is aborted.
    pub(crate) async fn probe(self: Arc<Self>, transport: QuicTransport) {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let Ok(request) = ControlRequest::Status.encode() else {
            return;
        };
        loop {
            tick.tick().await;
            let probes = self.peers.iter().map(|peer| {
                let (transport, request) = (&transport, request.clone());
                async move {
                    let answer = transport
                        .request(peer.id, CONTROL, request, PROBE_TIMEOUT)
                        .await;
                    let height = match answer.map(|a| ControlResponse::decode(&a)) {
                        Ok(Ok(ControlResponse::Status(s))) if s.node == peer.id => Some(s.heights),
                        _ => None,
                    };
                    (peer, height)
                }
            });
            let answers = futures::future::join_all(probes).await;
            let now = Instant::now();
            for (peer, height) in answers {
                self.saw(peer, height, now);
            }
            self.assess(now);
            let data = self.data.clone();
            let bytes = tokio::task::spawn_blocking(move || dir_bytes(&data, 4))
                .await
                .unwrap_or(0);
            self.data_bytes.store(bytes, Ordering::Relaxed);
            self.data_gauge.set(bytes as f64);
        }
    }

    /// Records a probe's answer (`None`: none in time).
    fn saw(&self, peer: &Peer, height: Option<u64>, now: Instant) {
        let own = self.height.load(Ordering::Relaxed);
        let mut seen = lock(&peer.seen);
        let was_up = seen.up;
        seen.up = height.is_some();
        if let Some(h) = height {
            seen.answered = Some(now);
            if seen.height != Some(h) {
                seen.height = Some(h);
                seen.moved = Some(now);
            }
            peer.height.set(h as f64);
        }
        let still = seen.moved.is_none_or(|at| now - at >= STALL_AFTER);
        let passed = seen.height.is_none_or(|h| own > h);
        let stalled = still && passed && seen.answered.is_some();
        if stalled != seen.stalled {
            match stalled {
                true => warn!(peer = %peer.id, height = seen.height, own, "peer stalled"),
                false => info!(peer = %peer.id, height = seen.height, "peer progressing again"),
            }
        }
        seen.stalled = stalled;
        if was_up != seen.up {
            match seen.up {
                true => info!(peer = %peer.id, "peer reachable"),
                false => warn!(peer = %peer.id, "peer unreachable (no answer to a status probe)"),
            }
        }
        peer.up.set(if seen.up { 1.0 } else { 0.0 });
        peer.stalled.set(if stalled { 1.0 } else { 0.0 });
    }

    /// Assesses the node's own health.
    fn assess(&self, now: Instant) {
        let height = self.height.load(Ordering::Relaxed);
        let highest = (self.peers.iter())
            .filter_map(|p| lock(&p.seen).height)
            .max()
            .unwrap_or(0);
        let waiting =
            self.waiting.load(Ordering::Relaxed) > 0 || self.mempool.load(Ordering::Relaxed) > 0;
        let mut own = lock(&self.own);
        if height != own.height {
            own.height = height;
            own.moved = now;
        }
        let still = now - own.moved >= STALL_AFTER;
        let health = if still && (highest > height || waiting) {
            Health::Stalled
        } else if highest > height.saturating_add(LAG_HEIGHTS) {
            Health::Lagging
        } else {
            Health::Ready
        };
        if health != own.health {
            match health {
                Health::Ready => info!(height, "health: ready"),
                h => warn!(
                    height,
                    highest,
                    waiting,
                    health = h.as_str(),
                    "health changed"
                ),
            }
        }
        own.health = health;
        self.health.set(health.gauge());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The bytes of the files under `dir`, `depth` levels down at most.
fn dir_bytes(dir: &Path, depth: usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_file() => m.len(),
            Ok(m) if m.is_dir() && depth > 0 => dir_bytes(&e.path(), depth - 1),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(peers: &[NodeId]) -> Arc<Watch> {
        Watch::new(peers, 10, Arc::default(), Path::new("/nonexistent"))
    }

    #[test]
    fn a_peer_that_stops_answering_is_down_then_stalled_once_passed() {
        let peer = NodeId::from_bytes([1; 32]);
        let w = watch(&[peer]);
        let t0 = Instant::now();
        w.saw(&w.peers[0], Some(10), t0);
        assert!(w.peers()[0].up && !w.peers()[0].stalled);
        // No answer: down at once; stalled only after STALL_AFTER and once
        // this node went past its height.
        w.saw(&w.peers[0], None, t0 + Duration::from_secs(1));
        assert!(!w.peers()[0].up && !w.peers()[0].stalled);
        w.progress(12, 0);
        w.saw(&w.peers[0], None, t0 + STALL_AFTER);
        let p = &w.peers()[0];
        assert!(!p.up && p.stalled && p.height == Some(10));
        // It answers again, at a new height: up and not stalled.
        w.saw(&w.peers[0], Some(13), t0 + STALL_AFTER * 2);
        assert!(w.peers()[0].up && !w.peers()[0].stalled);
    }

    #[test]
    fn health_is_lagging_far_behind_and_stalled_when_still_while_peers_move() {
        let peer = NodeId::from_bytes([1; 32]);
        let w = watch(&[peer]);
        let t0 = Instant::now();
        w.assess(t0);
        assert_eq!(w.health(), Health::Ready);
        w.saw(&w.peers[0], Some(10 + LAG_HEIGHTS + 1), t0);
        w.assess(t0 + Duration::from_secs(1));
        assert_eq!(w.health(), Health::Lagging);
        w.assess(t0 + STALL_AFTER);
        assert_eq!(w.health(), Health::Stalled);
        w.progress(10 + LAG_HEIGHTS + 1, 0);
        w.assess(t0 + STALL_AFTER);
        assert_eq!(w.health(), Health::Ready);
        // Idle with nothing waiting: ready, however long.
        w.assess(t0 + STALL_AFTER * 5);
        assert_eq!(w.health(), Health::Ready);
        // Clients waiting and no progress: stalled.
        w.progress(10 + LAG_HEIGHTS + 1, 3);
        w.assess(t0 + STALL_AFTER * 5);
        assert_eq!(w.health(), Health::Stalled);
    }
}
