//! Serving catch-up: what one peer may make a replica send per interval.
//!
//! A peer asks for decisions ([`ConsensusMessage::SyncRequest`]) or makes a
//! replica push one (a message of a height it has decided). Answers cost far
//! more than the question (a request of a few bytes names up to `sync_batch`
//! full decisions), so each peer gets, per resend interval:
//!
//! - **each height at most once**: identical and overlapping requests within
//!   the interval are answered only for the heights not sent yet (a sliding
//!   request `next .. next + sync_batch` of an honest catching-up peer gets
//!   just the new heights);
//! - **a byte budget** ([`ReplicaConfig::sync_bytes_per_interval`]): once a
//!   peer's answers in the interval reach it, the rest of its requests are
//!   dropped until the next interval (it asks again: catch-up repeats its
//!   request every resend interval). One decision larger than the whole
//!   budget is still sent when it is the first of the interval, so catch-up
//!   always progresses.
//!
//! A push waits until the sender has had time to decide by itself: a
//! validator's late vote of a height just decided here is the normal case
//! (its precommit often arrives after the quorum's), and it decides from the
//! votes it receives. A late message of a height decided here less than
//! half a resend interval ago ([`PUSH_GRACE_DIVISOR`]) pushes nothing; a peer that really
//! missed the votes sends its own again on its resend timer, after the grace,
//! and is pushed the decision then (and at once for a height decided longer
//! ago, or no longer remembered).
//!
//! Heights a replica no longer keeps in memory are read from its durable
//! log ([`LogRead`]), under the same rules: a read is asked for only while
//! the peer's budget lasts, for the heights not sent yet, at most one per
//! peer at a time and at most the budget's remaining bytes; what was read is
//! then answered like the heights in memory.
//!
//! A replica keeps state for validators only (others are never answered),
//! one entry each. A [`ValidatorHandler`](crate::ValidatorHandler) serving
//! [`ReceiptConsensus::catch_up`](crate::ReceiptConsensus::catch_up) (the
//! decision in a validator's status) applies the same rules to each node
//! that asks, with at most [`MAX_PEERS`] answered per interval.
//!
//! [`ReplicaConfig::sync_bytes_per_interval`]: super::ReplicaConfig::sync_bytes_per_interval

use super::LogRead;
use crate::message::{Decision, COMMAND_OVERHEAD};
use hologram_lattice::NodeId;
use std::collections::{BTreeMap, HashMap};

/// An upper bound of a decision's encoded size (postcard): the commands with
/// their client keys, signatures and length prefixes, the certificate's
/// `(id, signature)` entries with theirs, and a fixed allowance for the
/// slot, receipt and framing.
pub(crate) fn decision_wire_bound(d: &Decision) -> usize {
    d.batch
        .payload_bytes()
        .saturating_add(d.batch.len().saturating_mul(COMMAND_OVERHEAD))
        .saturating_add(d.certificate.signatures.len().saturating_mul(100))
        .saturating_add(256)
}

/// The most peers answered in one interval. A replica answers validators
/// only; a [`ValidatorHandler`](crate::ValidatorHandler) answers any node
/// that asks, so this bounds its state.
pub(crate) const MAX_PEERS: usize = 4096;

/// How long after deciding a height a late message of it pushes its
/// decision: the resend interval divided by this (a peer that missed the
/// votes resends its own once per interval), half of it.
pub(crate) const PUSH_GRACE_DIVISOR: u64 = 2;

/// How many recently decided heights remember when they were decided.
const DECIDED_AT: usize = 64;

/// What one peer was sent in the current interval.
#[derive(Default)]
struct PeerServed {
    /// When the interval started.
    since: u64,
    /// Bytes answered in it (by [`decision_wire_bound`]).
    bytes: usize,
    /// Heights answered in it: a contiguous range `[first, end)`.
    served: (u64, u64),
    /// Whether a read from the durable log (or of a snapshot part) for it
    /// is pending.
    reading: bool,
    /// Whether it was offered the snapshot in this interval.
    offered: bool,
}

/// Catch-up answers per peer; see the [module docs](self).
#[derive(Default)]
pub(crate) struct CatchUpServer {
    peers: HashMap<NodeId, PeerServed>,
    /// When the newest [`DECIDED_AT`] heights were decided here.
    decided_at: BTreeMap<u64, u64>,
}

impl CatchUpServer {
    /// Height `h` was decided here at `now`.
    pub(crate) fn decided(&mut self, h: u64, now: u64) {
        self.decided_at.insert(h, now);
        while self.decided_at.len() > DECIDED_AT {
            self.decided_at.pop_first();
        }
    }

    /// Whether a late message of the decided height `h` should push its
    /// decision now: the height was decided at least the grace (of the
    /// resend interval `interval_ms`) ago, or so long ago it is no longer
    /// remembered. See the [module docs](self).
    pub(crate) fn push_due(&self, h: u64, now: u64, interval_ms: u64) -> bool {
        let grace = interval_ms / PUSH_GRACE_DIVISOR;
        self.decided_at
            .get(&h)
            .is_none_or(|&at| now >= at.saturating_add(grace))
    }

    /// `peer`'s state for the interval running at `now` (a fresh one if its
    /// interval is over). None once [`MAX_PEERS`] other peers were answered
    /// in the interval.
    fn peer(&mut self, now: u64, interval_ms: u64, peer: NodeId) -> Option<&mut PeerServed> {
        let expired = |s: &PeerServed| now >= s.since.saturating_add(interval_ms) || now < s.since;
        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&peer) {
            // An entry of an interval that is over has no effect: drop them.
            self.peers.retain(|_, s| !expired(s));
            if self.peers.len() >= MAX_PEERS {
                return None;
            }
        }
        let state = self.peers.entry(peer).or_default();
        if expired(state) {
            *state = PeerServed {
                since: now,
                ..PeerServed::default()
            };
        }
        Some(state)
    }

    /// Whether `peer`'s request for the heights `first .. end`, which are
    /// no longer in memory, is worth a read from the durable log: some of
    /// them were not sent in this interval, its budget is not spent and no
    /// read for it is pending. Then the read (of the heights not sent yet),
    /// marked pending until [`select`](Self::select) answers it
    /// ([`stored`](Self::stored)) or the interval ends.
    pub(crate) fn read(
        &mut self,
        now: u64,
        interval_ms: u64,
        budget: usize,
        peer: NodeId,
        (first, end): (u64, u64),
    ) -> Option<LogRead> {
        let state = self.peer(now, interval_ms, peer)?;
        let (done_first, done_end) = state.served;
        let first = if first >= done_first && first < done_end {
            done_end
        } else {
            first
        };
        if state.reading || first >= end || (state.bytes >= budget && state.bytes > 0) {
            return None;
        }
        state.reading = true;
        Some(LogRead {
            peer,
            first,
            end,
            max_bytes: budget.saturating_sub(state.bytes).max(1),
        })
    }

    /// The read for `peer` was done: another may be asked for.
    pub(crate) fn stored(&mut self, peer: NodeId) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.reading = false;
        }
    }

    /// Whether `peer` may be sent a snapshot offer of `size` bytes now: one
    /// per interval, within its byte budget (charged).
    pub(crate) fn offer(
        &mut self,
        now: u64,
        interval_ms: u64,
        budget: usize,
        peer: NodeId,
        size: usize,
    ) -> bool {
        let Some(state) = self.peer(now, interval_ms, peer) else {
            return false;
        };
        if state.offered || (state.bytes > 0 && state.bytes.saturating_add(size) > budget) {
            return false;
        }
        state.offered = true;
        state.bytes = state.bytes.saturating_add(size);
        true
    }

    /// Whether a snapshot part asked for by `peer` is worth a read: its
    /// budget is not spent and no read for it is pending. Then the read is
    /// marked pending until [`part_read`](Self::part_read).
    pub(crate) fn part(&mut self, now: u64, interval_ms: u64, budget: usize, peer: NodeId) -> bool {
        let Some(state) = self.peer(now, interval_ms, peer) else {
            return false;
        };
        if state.reading || (state.bytes >= budget && state.bytes > 0) {
            return false;
        }
        state.reading = true;
        true
    }

    /// The part read for `peer` was `size` bytes (charged to its budget;
    /// the first answer of an interval goes whatever its size): whether to
    /// send it.
    pub(crate) fn part_read(&mut self, peer: NodeId, budget: usize, size: usize) -> bool {
        let Some(state) = self.peers.get_mut(&peer) else {
            return false;
        };
        state.reading = false;
        if state.bytes > 0 && state.bytes.saturating_add(size) > budget {
            return false;
        }
        state.bytes = state.bytes.saturating_add(size);
        true
    }

    /// The decisions to answer `peer`'s request for the heights
    /// `first .. end` with: the known ones among them (`known` lists them in
    /// height order) that it was not sent in this interval, within its byte
    /// budget. None once [`MAX_PEERS`] other peers were answered in the
    /// interval.
    pub(crate) fn select<'a>(
        &mut self,
        now: u64,
        interval_ms: u64,
        budget: usize,
        peer: NodeId,
        (first, end): (u64, u64),
        known: impl Iterator<Item = &'a Decision>,
    ) -> Vec<&'a Decision> {
        let Some(state) = self.peer(now, interval_ms, peer) else {
            return Vec::new();
        };
        let (done_first, done_end) = state.served;
        // The end of the known heights `first ..` without a gap, each sent
        // now or before: only those count as served (a height decided later
        // in the interval is still answered).
        let mut covered_end = first;
        let mut chosen = Vec::new();
        for d in known {
            let h = d.height();
            if h < first || h >= end {
                continue;
            }
            let contiguous = h == covered_end;
            if h >= done_first && h < done_end {
                if contiguous {
                    covered_end = h.saturating_add(1);
                }
                continue;
            }
            let size = decision_wire_bound(d);
            if state.bytes.saturating_add(size) > budget && state.bytes > 0 {
                break;
            }
            state.bytes = state.bytes.saturating_add(size);
            chosen.push(d);
            if contiguous {
                covered_end = h.saturating_add(1);
            }
        }
        // Remember one contiguous range: the union when they touch, else
        // the newer one.
        if first < covered_end {
            state.served =
                if done_first < done_end && first <= done_end && covered_end >= done_first {
                    (first.min(done_first), covered_end.max(done_end))
                } else {
                    (first, covered_end)
                };
        }
        chosen
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::batch::Batch;
    use crate::certificate::Certificate;
    use crate::command::Command;
    use crate::message::ConsensusMessage;
    use crate::replica::{Outgoing, Outputs};
    use crate::vote::{Slot, VoteKind};
    use hologram_receipt::KeyPair;

    impl CatchUpServer {
        /// Answers `peer`'s request for the heights `first .. end`: sends the
        /// decisions [`select`](Self::select) picks. Returns how many were sent.
        #[allow(clippy::too_many_arguments)]
        fn serve<'a>(
            &mut self,
            now: u64,
            interval_ms: u64,
            budget: usize,
            peer: NodeId,
            range: (u64, u64),
            known: impl Iterator<Item = &'a Decision>,
            out: &mut Outputs,
        ) -> usize {
            let chosen = self.select(now, interval_ms, budget, peer, range, known);
            for d in &chosen {
                out.messages.push(Outgoing::To(
                    peer,
                    ConsensusMessage::Decision(Box::new((*d).clone())),
                ));
            }
            chosen.len()
        }
    }

    /// A decision of `height` holding one command of `bytes` bytes (its
    /// certificate has no signatures: only sizes and heights matter here).
    pub(in crate::replica) fn decision(height: u64, bytes: usize) -> Decision {
        let batch = Batch::new(vec![Command::sign(
            &KeyPair::from_seed([0xc1; 32]),
            height,
            height,
            vec![height as u8; bytes],
        )
        .expect("small")])
        .expect("small");
        Decision {
            certificate: Certificate {
                slot: Slot {
                    height,
                    round: 0,
                    kind: VoteKind::Precommit,
                },
                value: batch.receipt(),
                signatures: Vec::new(),
            },
            batch,
        }
    }

    fn heights(out: &Outputs) -> Vec<u64> {
        out.messages
            .iter()
            .filter_map(|m| match m {
                Outgoing::To(_, ConsensusMessage::Decision(d)) => Some(d.height()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn overlapping_requests_get_only_new_heights_until_the_interval_ends() {
        let log: Vec<Decision> = (0..100).map(|h| decision(h, 10)).collect();
        let peer = KeyPair::from_seed([1; 32]).node_id();
        let mut server = CatchUpServer::default();
        let mut serve = |now: u64, first: u64, end: u64| {
            let mut out = Outputs::default();
            let known = log
                .iter()
                .filter(|d| d.height() >= first && d.height() < end);
            server.serve(now, 100, 1 << 20, peer, (first, end), known, &mut out);
            heights(&out)
        };
        assert_eq!(serve(0, 10, 20), (10..20).collect::<Vec<_>>());
        assert!(serve(1, 10, 20).is_empty(), "identical");
        assert_eq!(
            serve(2, 15, 25),
            (20..25).collect::<Vec<_>>(),
            "overlapping"
        );
        assert_eq!(
            serve(3, 5, 12),
            (5..10).collect::<Vec<_>>(),
            "overlapping below"
        );
        assert!(serve(4, 5, 25).is_empty(), "covered by the union");
        assert_eq!(serve(5, 50, 52), vec![50, 51], "disjoint");
        assert_eq!(serve(100, 10, 12), vec![10, 11], "a new interval");
    }

    #[test]
    fn heights_not_known_yet_are_answered_once_they_are() {
        let log: Vec<Decision> = (0..20).map(|h| decision(h, 10)).collect();
        let peer = KeyPair::from_seed([1; 32]).node_id();
        let mut server = CatchUpServer::default();
        let mut serve = |now: u64, known_end: usize, first: u64| {
            let mut out = Outputs::default();
            let known = log[..known_end].iter().filter(|d| d.height() >= first);
            server.serve(
                now,
                100,
                1 << 20,
                peer,
                (first, first + 32),
                known,
                &mut out,
            );
            heights(&out)
        };
        assert_eq!(serve(0, 12, 10), vec![10, 11]);
        // Heights 12 and 13 were decided since: asked again, they are sent.
        assert_eq!(serve(1, 14, 10), vec![12, 13]);
        // A gap (height 14 unknown, 15 known) is not counted as served.
        let mut out = Outputs::default();
        let known = [&log[10], &log[15]];
        server.serve(2, 100, 1 << 20, peer, (10, 42), known.into_iter(), &mut out);
        assert_eq!(heights(&out), vec![15]);
        let mut out = Outputs::default();
        let known = log[14..16].iter();
        server.serve(3, 100, 1 << 20, peer, (14, 46), known, &mut out);
        assert_eq!(heights(&out), vec![14, 15]);
    }

    #[test]
    fn the_byte_budget_stops_answers_but_one_large_decision_still_goes() {
        let peer = KeyPair::from_seed([1; 32]).node_id();
        let mut server = CatchUpServer::default();
        let small: Vec<Decision> = (0..10).map(|h| decision(h, 100)).collect();
        let size = decision_wire_bound(&small[0]);
        let mut out = Outputs::default();
        let sent = server.serve(0, 100, 3 * size, peer, (0, 10), small.iter(), &mut out);
        assert_eq!(sent, 3);
        // The rest of the range is asked for again later in the interval:
        // the budget is spent.
        let mut out = Outputs::default();
        assert_eq!(
            server.serve(5, 100, 3 * size, peer, (3, 10), small[3..].iter(), &mut out),
            0
        );
        // A decision larger than the budget goes when it is the first.
        let big = [decision(0, 4096)];
        let mut out = Outputs::default();
        assert_eq!(
            server.serve(100, 100, size, peer, (0, 1), big.iter(), &mut out),
            1
        );
        let mut out = Outputs::default();
        let next = [decision(1, 10)];
        assert_eq!(
            server.serve(101, 100, size, peer, (1, 2), next.iter(), &mut out),
            0
        );
    }

    #[test]
    fn snapshot_offers_and_parts_share_the_peer_budget() {
        let peer = KeyPair::from_seed([1; 32]).node_id();
        let mut server = CatchUpServer::default();
        assert!(server.offer(0, 100, 1000, peer, 300));
        assert!(
            !server.offer(1, 100, 1000, peer, 300),
            "one offer per interval"
        );
        assert!(server.part(2, 100, 1000, peer));
        assert!(!server.part(3, 100, 1000, peer), "one read at a time");
        assert!(server.part_read(peer, 1000, 600));
        assert!(server.part(4, 100, 1000, peer));
        assert!(!server.part_read(peer, 1000, 600), "over the budget");
        assert!(server.part(5, 100, 1000, peer));
        assert!(
            server.part_read(peer, 1000, 100),
            "the refused read was not charged"
        );
        assert!(!server.part(6, 100, 1000, peer), "the budget is spent");
        assert!(server.part(100, 100, 1000, peer), "a new interval");
    }

    #[test]
    fn log_reads_are_one_at_a_time_within_the_budget_and_skip_sent_heights() {
        let peer = KeyPair::from_seed([1; 32]).node_id();
        let mut server = CatchUpServer::default();
        let log: Vec<Decision> = (0..10).map(|h| decision(h, 100)).collect();
        let size = decision_wire_bound(&log[0]);
        let budget = 3 * size;
        let read = server.read(0, 100, budget, peer, (0, 5)).expect("a read");
        assert_eq!((read.first, read.end, read.max_bytes), (0, 5, budget));
        // Pending: no second read for the same peer until it is served.
        assert_eq!(server.read(1, 100, budget, peer, (0, 5)), None);
        server.stored(peer);
        let chosen = server.select(2, 100, budget, peer, (0, 5), log[..5].iter());
        assert_eq!(chosen.len(), 3, "the budget");
        // The heights sent are skipped; the budget is spent for the interval.
        assert_eq!(server.read(3, 100, budget, peer, (0, 5)), None);
        // A new interval: a read from the first height not sent in it.
        let read = server.read(100, 100, budget, peer, (0, 5)).expect("a read");
        assert_eq!(read.first, 0, "a new interval forgets what was sent");
        server.stored(peer);
        server.select(101, 100, budget, peer, (0, 2), log[..2].iter());
        let read = server.read(102, 100, budget, peer, (0, 5)).expect("a read");
        assert_eq!((read.first, read.max_bytes), (2, budget - 2 * size));
    }
}
