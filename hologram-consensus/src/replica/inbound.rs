//! What a replica does with each kind of message, resending, and catch-up.

use super::gate::Admission;
use super::rules;
use super::{LogRead, Outgoing, Outputs, Replica, MAX_ROUNDS_AHEAD};

/// How many rounds before its current one a replica resends its votes of.
const RESEND_ROUNDS: u32 = 4;
use crate::detector::Offence;
use crate::message::{ConsensusMessage, Decision, Proposal};
use crate::telemetry::{offence_label, refused};
use crate::vote::{Vote, VoteKind};
use crate::ConsensusError;
use hologram_lattice::NodeId;

impl Replica {
    pub(super) fn on_proposal(&mut self, now: u64, from: NodeId, p: Proposal, out: &mut Outputs) {
        let (h, round) = (p.header.height, p.header.round);
        let _span = tracing::debug_span!("proposal", height = h, round).entered();
        if !self.in_window(h) || self.decided.contains_key(&h) {
            self.settled_proposal(from, &p, out);
            self.out_of_window(now, from, h, out);
            return;
        }
        let Some(set) = self.set_at(h).cloned() else {
            return;
        };
        if let Err(e) = rules::check_leader(&p.header, &set) {
            refused("proposal", "not_the_leader", from);
            return self.blame(from, invalid(e), out);
        }
        if self.heights.get(&h).is_some_and(|st| {
            st.proposals
                .get(&round)
                .is_some_and(|q| q.header == p.header)
        }) {
            return; // a repeat
        }
        if let Err(m) = self.detector.check_proposal(from, &p.header) {
            refused("proposal", offence_label(&m.offence), from);
            out.misbehaviour.push(m);
            return;
        }
        if let Err(e) = rules::check_proposal(&p, &set) {
            refused("proposal", "invalid", from);
            return self.blame(p.header.proposer, invalid(e), out);
        }
        if let Err(e) = self.verify_proposed(&p) {
            refused("proposal", "unverified_commands", from);
            return self.blame(p.header.proposer, invalid(e), out);
        }
        self.ensure_active(now, h, out);
        if let Some(cert) = &p.proof_of_lock {
            for v in cert.votes() {
                // Verified with the certificate: only the equivocation and
                // budget checks remain.
                match self.detector.check_verified_vote(&v) {
                    Err(m) => out.misbehaviour.push(m),
                    Ok(report) => {
                        out.misbehaviour.extend(report);
                        if let Some(st) = self.heights.get_mut(&h) {
                            st.votes_mut(VoteKind::Prevote, v.slot.round).add(v);
                        }
                    }
                }
            }
        }
        let leader = p.header.proposer;
        self.store_proposal(h, p);
        self.relay_proposal(h, round, None, out);
        self.note_round(now, h, leader, round, out);
        self.progress(now, h, out);
    }

    pub(super) fn on_vote(&mut self, now: u64, from: NodeId, vote: Vote, out: &mut Outputs) {
        let h = vote.slot.height;
        let _span = tracing::debug_span!("vote", height = h, round = vote.slot.round).entered();
        if !self.in_window(h) || self.decided.contains_key(&h) {
            self.settled_vote(from, &vote, out);
            self.out_of_window(now, from, h, out);
            return;
        }
        // Refused before any signature is verified: see `gate`.
        if !self.membership.is_member(&from) {
            refused("vote", "sender_not_a_validator", from);
            return self.gate.refuse();
        }
        // A validator of another height's set (one removed, or one whose
        // set is not in force yet) does not vote here.
        if !self.set_at(h).is_some_and(|s| s.contains(&vote.voter)) {
            refused("vote", "not_a_validator", from);
            self.gate.refuse();
            return self.blame(from, Offence::NotAValidator, out);
        }
        let round = self.heights.get(&h).map_or(0, |st| st.round);
        let far = vote.slot.round > round.saturating_add(MAX_ROUNDS_AHEAD);
        let counted = match self.heights.get(&h) {
            Some(st) if !far => st
                .votes(vote.slot.kind, vote.slot.round)
                .and_then(|set| set.get(&vote.voter)),
            _ => None,
        };
        let conflicting = counted.is_some();
        let interval = self.config.timeouts.resend_ms;
        if self.gate.admit(now, interval, from, &vote, counted, far) == Admission::Drop {
            refused("vote", "gate", from);
            return;
        }
        if let Err(e) = vote.verify_signature() {
            refused("vote", "invalid_signature", from);
            self.gate.failed(now, interval, from, &vote);
            return self.blame(from, Offence::InvalidSignature(e.to_string()), out);
        }
        match self.detector.check_verified_vote(&vote) {
            Err(m) => {
                refused("vote", offence_label(&m.offence), from);
                if conflicting && matches!(m.offence, Offence::Equivocation(_)) {
                    self.gate.proven(&vote);
                }
                out.misbehaviour.push(m);
                return;
            }
            Ok(Some(m)) => out.misbehaviour.push(m),
            Ok(None) => {}
        }
        self.ensure_active(now, h, out);
        let Some(st) = self.heights.get_mut(&h) else {
            return;
        };
        if vote.slot.round <= st.round.saturating_add(MAX_ROUNDS_AHEAD)
            && st.votes_mut(vote.slot.kind, vote.slot.round).add(vote)
        {
            self.relay_proposal(h, vote.slot.round, Some(vote.voter), out);
        }
        self.note_round(now, h, vote.voter, vote.slot.round, out);
        self.progress(now, h, out);
    }

    /// Joins a later round once `f + 1` validators were seen in it.
    fn note_round(&mut self, now: u64, h: u64, voter: NodeId, round: u32, out: &mut Outputs) {
        let Some(skip) = self.set_at(h).map(|s| s.max_faulty() + 1) else {
            return;
        };
        let target = self
            .heights
            .get_mut(&h)
            .and_then(|st| st.note_round(voter, round, skip));
        if let Some(r) = target {
            ::metrics::counter!("hologram_consensus_round_changes_total", "cause" => "skip")
                .increment(1);
            self.start_round(now, h, r, out);
        }
    }

    pub(super) fn on_decision(&mut self, now: u64, from: NodeId, d: Decision, out: &mut Outputs) {
        let h = d.height();
        let ahead = (self.config.sync_batch + self.config.max_pipeline_depth) as u64 * 2;
        if h < self.next || self.decided.contains_key(&h) || h >= self.next.saturating_add(ahead) {
            return;
        }
        match self.membership.verify(&d) {
            Ok(()) => {}
            // A height whose set this replica cannot know until the heights
            // before it are delivered: asked for again then.
            Err(ConsensusError::UnknownValidatorSet { .. })
                if h >= self.membership.next_height() + self.membership.delay() =>
            {
                return
            }
            Err(e) => return self.blame(from, invalid(e), out),
        }
        self.highest_seen = self.highest_seen.max(Some(h));
        ::metrics::counter!("hologram_consensus_catchup_heights_total").increment(1);
        self.decide(now, h, d, out);
        if self.behind() && !self.decided.contains_key(&self.next) {
            self.last_sync = None;
            self.request_sync(now, from, self.next, out);
        }
    }

    /// Sends `peer` the decisions it lacks among `range`, at most once per
    /// height and interval and within its byte budget. Only validators are
    /// answered.
    pub(super) fn serve_catch_up(
        &mut self,
        now: u64,
        peer: NodeId,
        range: (u64, u64),
        out: &mut Outputs,
    ) {
        if !self.membership.is_member(&peer) {
            return;
        }
        let (interval, budget) = (
            self.config.timeouts.resend_ms,
            self.config.sync_bytes_per_interval,
        );
        // Delivered heights no longer in memory are read from the durable
        // log first (the rest of the range is asked for again).
        let in_memory = self.history.first().unwrap_or(self.next).min(self.next);
        // Compacted heights: the snapshot is offered instead.
        if range.0 < in_memory && self.offer_snapshot(now, peer, range.0, out) {
            return;
        }
        if range.0 < in_memory {
            let stored = (range.0, range.1.min(in_memory));
            if let Some(read) = (self.catch_up).read(now, interval, budget, peer, stored) {
                out.log_reads.push(read);
            }
            return;
        }
        let known = (self.history.range(range.0..range.1))
            .chain(self.decided.range(range.0..range.1).map(|(_, d)| d));
        for d in (self.catch_up).select(now, interval, budget, peer, range, known) {
            let decision = ConsensusMessage::Decision(Box::new(d.clone()));
            out.messages.push(Outgoing::To(peer, decision));
        }
    }

    /// Answers a peer's catch-up with decisions read from the durable log
    /// for `read` (one of [`Outputs::log_reads`]; `decisions` in height order,
    /// verified, as [`DurableLog::read`](crate::DurableLog::read) returns
    /// them), within the peer's budget, as heights in memory are. Call it
    /// for every read asked for, with what was read (nothing if the read
    /// failed): until then no other read is asked for that peer in the
    /// interval.
    pub fn serve_stored(
        &mut self,
        now: u64,
        read: LogRead,
        decisions: &[Decision],
        out: &mut Outputs,
    ) {
        self.catch_up.stored(read.peer);
        if !self.membership.is_member(&read.peer) {
            return;
        }
        let (interval, budget) = (
            self.config.timeouts.resend_ms,
            self.config.sync_bytes_per_interval,
        );
        let next = self.next;
        let known = (decisions.iter()).filter(|d| d.height() < next);
        let range = (read.first, read.end);
        for d in (self.catch_up).select(now, interval, budget, read.peer, range, known) {
            let decision = ConsensusMessage::Decision(Box::new(d.clone()));
            out.messages.push(Outgoing::To(read.peer, decision));
        }
    }

    /// A message of height `h` outside the window: push the decision to a
    /// lagging sender, or ask a sender that is ahead for decisions.
    fn out_of_window(&mut self, now: u64, from: NodeId, h: u64, out: &mut Outputs) {
        if !self.membership.is_member(&from) {
            return;
        }
        if h < self.next || self.decided.contains_key(&h) {
            // A late vote of a height just decided is normal: its sender
            // decides from the votes it gets (see `catchup`'s grace).
            if (self.catch_up).push_due(h, now, self.config.timeouts.resend_ms) {
                self.serve_catch_up(now, from, (h, h.saturating_add(1)), out);
            }
        } else if h >= self.window_end() {
            self.highest_seen = self.highest_seen.max(Some(h));
            self.request_sync(now, from, self.next, out);
        }
    }

    /// Asks `peer` for decisions from `first` on, at most once per resend interval.
    pub(super) fn request_sync(&mut self, now: u64, peer: NodeId, first: u64, out: &mut Outputs) {
        let resend = self.config.timeouts.resend_ms;
        if self
            .last_sync
            .is_some_and(|at| now < at.saturating_add(resend))
        {
            return;
        }
        self.last_sync = Some(now);
        ::metrics::counter!("hologram_consensus_sync_requests_total").increment(1);
        if self.catching_up_from.is_none() {
            self.catching_up_from = Some(self.next);
            tracing::info!(me = %self.me, from = self.next, seen = self.highest_seen,
                           %peer, "catch-up started");
        }
        out.messages.push(Outgoing::To(
            peer,
            ConsensusMessage::SyncRequest { from: first },
        ));
    }

    /// Sends again what may have been lost: own proposal and votes of each
    /// height's current round, pending gossiped commands, and a catch-up
    /// request when a peer was seen ahead.
    pub(super) fn resend(&mut self, now: u64, out: &mut Outputs) {
        for (h, st) in &self.heights {
            let Some(rec) = self.record.heights.get(h) else {
                continue;
            };
            // The rounds a peer may still be in: up to RESEND_ROUNDS back.
            let first = st.round.saturating_sub(RESEND_ROUNDS);
            for (_, p) in st.proposals.range(first..) {
                if p.header.proposer == self.me {
                    out.messages
                        .push(Outgoing::Broadcast(ConsensusMessage::Proposal(Box::new(
                            p.clone(),
                        ))));
                }
            }
            for (_, v) in rec.votes.range((first, VoteKind::Prevote)..) {
                out.messages
                    .push(Outgoing::Broadcast(ConsensusMessage::Vote(*v)));
            }
        }
        let pending = self.mempool.gossip_pending(self.config.max_batch);
        if !pending.is_empty() {
            out.messages
                .push(Outgoing::Broadcast(ConsensusMessage::Commands(pending)));
        }
        self.resend_snapshot_request(now, out);
        if self.behind() {
            let validators = self.membership.current().validators();
            let pick = (now / self.config.timeouts.resend_ms.max(1)) as usize % validators.len();
            let peer = validators[pick];
            if peer != self.me {
                self.request_sync(now, peer, self.next, out);
            }
        }
        self.activate(now, out);
    }

    pub(super) fn blame(&mut self, node: NodeId, offence: Offence, out: &mut Outputs) {
        let m = self.detector.report(node, offence);
        out.misbehaviour.push(m);
    }
}

fn invalid(e: ConsensusError) -> Offence {
    Offence::InvalidReceipt(e.to_string())
}
