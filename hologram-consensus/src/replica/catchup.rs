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
//! State is kept for validators only (others are never answered), one entry
//! each, so it is bounded by the validator set.
//!
//! [`ReplicaConfig::sync_bytes_per_interval`]: super::ReplicaConfig::sync_bytes_per_interval

use super::{Outgoing, Outputs};
use crate::message::{ConsensusMessage, Decision};
use hologram_lattice::NodeId;
use std::collections::HashMap;

/// An upper bound of a decision's encoded size (postcard): the commands with
/// their length prefixes, the certificate's `(id, signature)` entries with
/// theirs, and a fixed allowance for the slot, receipt and framing.
pub(crate) fn decision_wire_bound(d: &Decision) -> usize {
    d.batch
        .payload_bytes()
        .saturating_add(d.batch.len().saturating_mul(4))
        .saturating_add(d.certificate.signatures.len().saturating_mul(100))
        .saturating_add(256)
}

/// What one peer was sent in the current interval.
#[derive(Default)]
struct PeerServed {
    /// When the interval started.
    since: u64,
    /// Bytes answered in it (by [`decision_wire_bound`]).
    bytes: usize,
    /// Heights answered (or not known) in it: a contiguous range `[first, end)`.
    served: (u64, u64),
}

/// Catch-up answers per peer; see the [module docs](self).
#[derive(Default)]
pub(crate) struct CatchUpServer {
    peers: HashMap<NodeId, PeerServed>,
    /// Bytes answered in total (by the bound), for the tests and metrics.
    answered_bytes: u64,
}

impl CatchUpServer {
    /// Answers `peer`'s request for the heights `first .. end`: sends the
    /// known decisions among them (`known` lists them in height order) that
    /// it was not sent in this interval, within its byte budget. Returns how
    /// many were sent.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn serve<'a>(
        &mut self,
        now: u64,
        interval_ms: u64,
        budget: usize,
        peer: NodeId,
        (first, end): (u64, u64),
        known: impl Iterator<Item = &'a Decision>,
        out: &mut Outputs,
    ) -> usize {
        let state = self.peers.entry(peer).or_default();
        if now >= state.since.saturating_add(interval_ms) || now < state.since {
            *state = PeerServed {
                since: now,
                ..PeerServed::default()
            };
        }
        let (done_first, done_end) = state.served;
        let mut covered_end = end;
        let mut sent = 0;
        for d in known {
            let h = d.height();
            if h < first || h >= end || (h >= done_first && h < done_end) {
                continue;
            }
            let size = decision_wire_bound(d);
            if state.bytes.saturating_add(size) > budget && state.bytes > 0 {
                covered_end = h;
                break;
            }
            state.bytes = state.bytes.saturating_add(size);
            self.answered_bytes = self.answered_bytes.saturating_add(size as u64);
            out.messages.push(Outgoing::To(
                peer,
                ConsensusMessage::Decision(Box::new(d.clone())),
            ));
            sent += 1;
        }
        // Every known height of `first .. covered_end` was sent now or
        // before: remember one contiguous range (the union when they touch,
        // else the newer one).
        if first < covered_end {
            state.served =
                if done_first < done_end && first <= done_end && covered_end >= done_first {
                    (first.min(done_first), covered_end.max(done_end))
                } else {
                    (first, covered_end)
                };
        }
        sent
    }

    /// Bytes of decisions answered so far (by the encoded-size bound).
    pub(crate) fn answered_bytes(&self) -> u64 {
        self.answered_bytes
    }
}
