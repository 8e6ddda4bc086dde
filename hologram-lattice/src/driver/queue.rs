//! A driver's inbox of peer messages: bounded, and fair between peers.
//!
//! Each peer has its own queue; the driver takes one message from each peer
//! in turn, so a peer that floods waits behind its own messages, not in front
//! of the others'. Limits, and the policy when they are reached:
//!
//! - a peer's queue holds at most [`PEER_MESSAGES`] messages and
//!   [`PEER_BYTES`] bytes (as received): a message past either is **dropped**
//!   (the newest: a lost message, which the sender's resending repairs);
//! - the whole inbox holds at most [`TOTAL_MESSAGES`] messages and
//!   [`TOTAL_BYTES`] bytes: past either, new messages from any peer are
//!   dropped until the driver catches up.
//!
//! Drops are counted ([`Handle::inbox_stats`](super::Handle::inbox_stats)).

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

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u8) -> NodeId {
        NodeId::from_bytes([i; 32])
    }

    #[test]
    fn a_flooding_peer_is_capped_and_others_are_served_in_turn() {
        let mut q = PeerQueues::default();
        let (flooder, honest) = (id(1), id(2));
        for h in 0..10_000u64 {
            q.push(flooder, h, 3);
        }
        assert_eq!(q.stats().queued, PEER_MESSAGES);
        assert_eq!(q.stats().dropped, 10_000 - PEER_MESSAGES as u64);
        for h in 0..3 {
            assert!(q.push(honest, h, 3));
        }
        // The honest peer's three messages come out within the first six.
        let first: Vec<NodeId> = (0..6).filter_map(|_| q.pop()).map(|(f, _)| f).collect();
        assert_eq!(first.iter().filter(|f| **f == honest).count(), 3);
        while q.pop().is_some() {}
        assert!(q.is_empty());
        assert_eq!(q.stats().queued_bytes, 0);
        assert_eq!(q.stats().peak, PEER_MESSAGES + 3);
    }

    #[test]
    fn bytes_are_capped_per_peer_and_in_total() {
        let mut q = PeerQueues::default();
        let big = PEER_BYTES / 4;
        for _ in 0..5 {
            q.push(id(1), 0u64, big);
        }
        assert_eq!(q.stats().queued, 4);
        for i in 2..20 {
            for _ in 0..4 {
                q.push(id(i), 0, big);
            }
        }
        assert!(q.stats().queued_bytes <= TOTAL_BYTES);
        assert_eq!(q.stats().queued_bytes, TOTAL_BYTES);
        assert!(!q.push(id(99), 0, 1));
        // Draining makes room again.
        q.pop();
        assert!(q.push(id(99), 0, 1));
    }
}
