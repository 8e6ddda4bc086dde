//! A driver's inbox of peer messages: bounded, and fair between peers
//! (limits and policy: the [driver module](super)).

use crate::NodeId;
use std::collections::{HashMap, VecDeque};

/// The most messages queued from one peer.
pub const PEER_MESSAGES: usize = 1024;
/// The most bytes (encoded, as received) queued from one peer.
pub const PEER_BYTES: usize = 16 << 20;
/// The most messages queued from all peers.
pub const TOTAL_MESSAGES: usize = 8192;
/// The most bytes queued from all peers.
pub const TOTAL_BYTES: usize = 64 << 20;

/// How full the inbox is and what it dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxStats {
    /// Messages queued now.
    pub queued: usize,
    /// Bytes queued now (encoded size as received).
    pub queued_bytes: usize,
    /// The most messages ever queued at once.
    pub peak: usize,
    /// The most bytes ever queued at once.
    pub peak_bytes: usize,
    /// Messages dropped because a queue was full.
    pub dropped: u64,
}

/// One peer's queue.
struct PeerQueue<M> {
    messages: VecDeque<(M, usize)>,
    bytes: usize,
}

/// Per-peer queues served round-robin; see the [module docs](self).
pub(crate) struct PeerQueues<M> {
    peers: HashMap<NodeId, PeerQueue<M>>,
    /// Peers with queued messages, in serving order (each once).
    turn: VecDeque<NodeId>,
    stats: InboxStats,
}

impl<M> Default for PeerQueues<M> {
    fn default() -> Self {
        PeerQueues {
            peers: HashMap::new(),
            turn: VecDeque::new(),
            stats: InboxStats::default(),
        }
    }
}

impl<M> PeerQueues<M> {
    /// Queues `message` (of `size` bytes as received) from `from`; false if
    /// it was dropped because a limit was reached.
    pub(crate) fn push(&mut self, from: NodeId, message: M, size: usize) -> bool {
        let total_full = self.stats.queued >= TOTAL_MESSAGES
            || self.stats.queued_bytes.saturating_add(size) > TOTAL_BYTES;
        let queue = self.peers.entry(from).or_insert_with(|| PeerQueue {
            messages: VecDeque::new(),
            bytes: 0,
        });
        if total_full
            || queue.messages.len() >= PEER_MESSAGES
            || queue.bytes.saturating_add(size) > PEER_BYTES
        {
            if queue.messages.is_empty() {
                self.peers.remove(&from);
            }
            self.stats.dropped += 1;
            return false;
        }
        if queue.messages.is_empty() {
            self.turn.push_back(from);
        }
        queue.messages.push_back((message, size));
        queue.bytes += size;
        self.stats.queued += 1;
        self.stats.queued_bytes += size;
        self.stats.peak = self.stats.peak.max(self.stats.queued);
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.stats.queued_bytes);
        true
    }

    /// The next message: the oldest of the peer whose turn it is.
    pub(crate) fn pop(&mut self) -> Option<(NodeId, M)> {
        let from = self.turn.pop_front()?;
        let queue = self.peers.get_mut(&from)?;
        let (message, size) = queue.messages.pop_front()?;
        queue.bytes -= size;
        self.stats.queued -= 1;
        self.stats.queued_bytes -= size;
        if queue.messages.is_empty() {
            self.peers.remove(&from);
        } else {
            self.turn.push_back(from);
        }
        Some((from, message))
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.turn.is_empty()
    }

    /// The counts.
    pub(crate) fn stats(&self) -> InboxStats {
        self.stats
    }
}
