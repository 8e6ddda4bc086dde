//! The Tendermint rules of one height: proposing, voting through the
//! voting record, the "upon" rules, and deciding.

use super::rules::{self, Refusal};
use super::snapshots::Validity;
use super::{HeightRecord, Lock, Outgoing, Outputs, Replica, Step, Timer};
use crate::batch::Batch;
use crate::message::{ConsensusMessage, Decision, Proposal};
use crate::vote::{Slot, Vote, VoteKind};
use crate::ValidatorSet;
use hologram_receipt::{KeyPair, Receipt};
use std::collections::HashMap;

impl Replica {
    // ---- proposing and voting (through the voting record) ----

    pub(super) fn propose(&mut self, h: u64, round: u32, out: &mut Outputs) {
        if !self.signs_at(h) {
            return;
        }
        let Some(st) = self.heights.get(&h) else {
            return;
        };
        let recorded = self
            .record
            .heights
            .get(&h)
            .and_then(|r| r.proposals.get(&round))
            .copied();
        let proposal = match recorded {
            // Resumed after a restart: the header signed before, never another.
            Some(header) => {
                let Some(body) = self.body(h, &header.value) else {
                    return; // its batch is gone: let the round time out
                };
                let quorum = self.quorum_at(h);
                let proof_of_lock = match header.pol_round {
                    Some(vr) => match st.certificate(VoteKind::Prevote, vr, header.value, quorum) {
                        Some(c) => Some(c),
                        None => return,
                    },
                    None => None,
                };
                Proposal {
                    header,
                    batch: body.batch.clone(),
                    proof_of_lock,
                }
            }
            None => {
                let valid = st.valid.clone();
                let (mempool, max) = (&mut self.mempool, self.config.max_batch);
                // Only in round 0: a later round means some validators
                // could not support it (their machines lag), and the
                // height must not wait for them.
                let checkpoint = (round == 0).then(|| self.snapshots.to_propose()).flatten();
                // The batch names its set, and carries a change to propose
                // (one of the version the set is at: at most one applies).
                let set = self.membership.at(h).map(ValidatorSet::fingerprint);
                let version = self.membership.version();
                let change = (self.set_changes.iter())
                    .find(|c| c.version == version)
                    .cloned();
                // Bounded by max_batch <= MAX_BATCH_COMMANDS; byte bound checked.
                // A change travels without commands (see `Membership`).
                let max = if change.is_some() { 0 } else { max };
                let fresh = || {
                    let batch = Batch::new(if max == 0 {
                        Vec::new()
                    } else {
                        mempool.take_for(h, max)
                    })
                    .unwrap_or_default()
                    .with_checkpoint(checkpoint);
                    match set {
                        Ok(set) => batch.with_set(set, change),
                        Err(_) => batch,
                    }
                };
                let p = rules::proposal(&self.keys, h, round, valid, fresh);
                let rec = self.record.heights.entry(h).or_default();
                rec.proposals.insert(round, p.header);
                self.record.signed += 1;
                p
            }
        };
        out.messages
            .push(Outgoing::Broadcast(ConsensusMessage::Proposal(Box::new(
                proposal.clone(),
            ))));
        self.store_proposal(h, proposal);
    }

    /// Signs a vote of `kind` in `h`'s current round through the voting
    /// record (which returns what it signed there before, if anything).
    fn sign_vote(&mut self, h: u64, kind: VoteKind, value: Option<Receipt>) -> Option<Vote> {
        if !self.signs_at(h) {
            return None;
        }
        let round = self.heights.get(&h)?.round;
        let slot = Slot {
            height: h,
            round,
            kind,
        };
        self.sign_in_record(h, |rec, keys| rec.sign_vote(keys, slot, value))
    }

    /// Signs a vote through `h`'s voting record with `sign` (given the
    /// replica's keys): the vote, new or the one signed there before; a new
    /// one is counted in the record's [`signed`](super::VotingRecord::signed)
    /// (what the write-ahead check sees even when the height is delivered
    /// in the same step).
    fn sign_in_record(
        &mut self,
        h: u64,
        sign: impl FnOnce(&mut HeightRecord, &KeyPair) -> Result<Vote, Refusal>,
    ) -> Option<Vote> {
        let rec = self.record.heights.entry(h).or_default();
        let before = rec.votes.len();
        let signed = sign(rec, &self.keys);
        if rec.votes.len() > before {
            self.record.signed += 1;
        }
        match signed {
            Ok(vote) => Some(vote),
            Err(Refusal::Signed(vote)) => Some(*vote),
            Err(Refusal::OlderRound { .. }) => None,
        }
    }

    /// Signs and sends a vote, entering its step.
    pub(super) fn cast(
        &mut self,
        h: u64,
        kind: VoteKind,
        value: Option<Receipt>,
        out: &mut Outputs,
    ) {
        self.enter_step(h, kind, out);
        let vote = self.sign_vote(h, kind, value);
        self.send_vote(vote, out);
    }

    /// Precommits the value of the polka `valid` and locks on it.
    fn precommit_on(&mut self, h: u64, valid: Lock, out: &mut Outputs) {
        self.enter_step(h, VoteKind::Precommit, out);
        let vote = if self.signs_at(h) {
            self.sign_in_record(h, |rec, keys| {
                rec.precommit_on(keys, valid.batch, valid.proof)
            })
        } else {
            None
        };
        self.send_vote(vote, out);
    }

    /// Enters the step of a vote of `kind`. Entering a step sets that step's
    /// timeout (the paper sets it only once a quorum voted; setting it always
    /// costs no safety and lets a replica leave a round that peers it cannot
    /// hear from have left).
    fn enter_step(&mut self, h: u64, kind: VoteKind, out: &mut Outputs) {
        let timeouts = self.config.timeouts;
        if let Some(st) = self.heights.get_mut(&h) {
            let round = st.round;
            let (step, base, timer, timer_set) = match kind {
                VoteKind::Prevote => (
                    Step::Prevote,
                    timeouts.prevote_ms,
                    Timer::Prevote { height: h, round },
                    &mut st.prevote_timer_set,
                ),
                VoteKind::Precommit => (
                    Step::Precommit,
                    timeouts.precommit_ms,
                    Timer::Precommit { height: h, round },
                    &mut st.precommit_timer_set,
                ),
            };
            if !*timer_set {
                *timer_set = true;
                out.timers.push((timeouts.in_round(base, round), timer));
            }
            st.step = step;
        }
    }

    /// Sends a vote signed and counts it.
    fn send_vote(&mut self, vote: Option<Vote>, out: &mut Outputs) {
        if let Some(vote) = vote {
            out.messages
                .push(Outgoing::Broadcast(ConsensusMessage::Vote(vote)));
            if let Some(st) = self.heights.get_mut(&vote.slot.height) {
                st.votes_mut(vote.slot.kind, vote.slot.round).add(vote);
            }
        }
    }

    pub(super) fn prevote(&mut self, h: u64, value: Option<Receipt>, out: &mut Outputs) {
        self.cast(h, VoteKind::Prevote, value, out);
    }

    pub(super) fn precommit(&mut self, h: u64, value: Option<Receipt>, out: &mut Outputs) {
        self.cast(h, VoteKind::Precommit, value, out);
    }

    // ---- the upon rules ----

    pub(super) fn progress(&mut self, now: u64, h: u64, out: &mut Outputs) {
        let quorum = self.quorum_at(h);
        let timeouts = self.config.timeouts;
        loop {
            if self.try_decide(now, h, out) {
                return;
            }
            let Some(st) = self.heights.get_mut(&h) else {
                return;
            };
            let r = st.round;
            if st.step == Step::Propose {
                let proposed = st.proposals.get(&r);
                // The paper's valid(v): a checkpoint the node's machine has
                // not reached yet is waited for (the propose timeout
                // prevotes nil); see `snapshots`.
                let validity = proposed.map(|p| self.snapshots.validity(p.batch.checkpoint()));
                if let (Some(p), Some(validity)) = (proposed, validity) {
                    if validity != Validity::Unknown {
                        // A stored proposal with a proof-of-lock round
                        // carries its verified polka: the paper's "2f + 1
                        // prevotes for v in vr" holds, even when an
                        // equivocator's vote in it differs from the one this
                        // replica counted.
                        let lock = self.record.heights.get(&h).and_then(|r| r.locked.as_ref());
                        let v = p.header.value;
                        let support =
                            validity == Validity::Valid && rules::may_prevote(lock, &p.header);
                        self.prevote(h, support.then_some(v), out);
                        continue;
                    }
                }
            }
            if st.step >= Step::Prevote && !st.polka_handled {
                let polka = st
                    .votes(VoteKind::Prevote, r)
                    .and_then(|s| s.quorum_value(quorum));
                let proposed = st.proposals.get(&r);
                if let (Some(v), Some(p)) = (polka, proposed) {
                    if v == p.header.value {
                        let batch = p.batch.clone();
                        st.polka_handled = true;
                        // The polka is a quorum: its certificate exists.
                        if let Some(proof) = st.certificate(VoteKind::Prevote, r, v, quorum) {
                            let valid = Lock { batch, proof };
                            st.valid = Some(valid.clone());
                            if st.step == Step::Prevote {
                                self.precommit_on(h, valid, out);
                            }
                        }
                        continue;
                    }
                }
            }
            let nil_polka = st
                .votes(VoteKind::Prevote, r)
                .is_some_and(|s| s.count(None) >= quorum);
            if st.step == Step::Prevote && nil_polka {
                self.precommit(h, None, out);
                continue;
            }
            let precommits_total = st.votes(VoteKind::Precommit, r).map_or(0, |s| s.total());
            if !st.precommit_timer_set && precommits_total >= quorum {
                st.precommit_timer_set = true;
                let after = timeouts.in_round(timeouts.precommit_ms, r);
                out.timers.push((
                    after,
                    Timer::Precommit {
                        height: h,
                        round: r,
                    },
                ));
            }
            return;
        }
    }

    /// Decides `h` if some round has a quorum of precommits for a value whose
    /// batch is known. Asks a precommitter for the batch when it is not.
    pub(super) fn try_decide(&mut self, now: u64, h: u64, out: &mut Outputs) -> bool {
        let quorum = self.quorum_at(h);
        let Some(st) = self.heights.get(&h) else {
            return false;
        };
        let found = st
            .precommits
            .iter()
            .find_map(|(r, set)| set.quorum_value(quorum).map(|v| (*r, v, set)));
        let Some((round, value, set)) = found else {
            return false;
        };
        let Some(body) = self.body(h, &value) else {
            let me = self.me;
            let voter = set.votes().map(|v| v.voter).find(|v| *v != me);
            if let Some(voter) = voter {
                self.request_sync(now, voter, h, out);
            }
            return false;
        };
        let batch = body.batch.clone();
        let Some(certificate) = st.certificate(VoteKind::Precommit, round, value, quorum) else {
            return false;
        };
        self.decide(now, h, Decision { batch, certificate }, out);
        true
    }

    pub(super) fn decide(&mut self, now: u64, h: u64, decision: Decision, out: &mut Outputs) {
        ::metrics::counter!("hologram_consensus_decisions_total").increment(1);
        self.catch_up.decided(h, now);
        tracing::debug!(
            height = h,
            round = decision.certificate.round(),
            commands = decision.batch.len(),
            "decided"
        );
        if let Some(st) = self.heights.remove(&h) {
            let ms = now.saturating_sub(st.started);
            ::metrics::histogram!("hologram_consensus_commit_latency_seconds")
                .record(ms as f64 / 1e3);
            self.settle(h, st.proposals);
        }
        // The decided commands leave the mempool (claims and all); then the
        // claims of the height's other bodies are released. The height's
        // voting record (its lock and signed votes) and the durable copies
        // of its submitted commands stay until the decision is delivered: a
        // decision held above `next` lives only in memory, and a replica
        // restarted before delivering it must resume the height under its
        // lock (never vote anew, which could certify a second value) and
        // still hold the commands.
        let mut ids = Vec::with_capacity(decision.batch.len());
        for c in decision.batch.commands() {
            let id = c.id();
            self.mempool.remove(&id);
            ids.push(id);
        }
        self.committed.push(ids);
        let value = decision.certificate.value;
        let others = self
            .bodies
            .remove(&h)
            .into_iter()
            .flat_map(HashMap::into_iter);
        for (_, body) in others.filter(|(receipt, _)| *receipt != value) {
            for c in body.batch.commands() {
                self.mempool.unclaim(&c.id());
            }
        }
        self.detector.observe_decision(
            h,
            decision.certificate.round(),
            &decision.certificate.value,
        );
        self.decided.insert(h, decision);
        while let Some(d) = self.decided.remove(&self.next) {
            self.record.heights.remove(&self.next);
            for c in d.batch.commands() {
                self.record.submitted.remove(&c.id());
            }
            self.snapshots.delivered(&d);
            self.apply_membership(&d);
            out.decisions.push(d.clone());
            self.history.insert(self.next, d);
            self.next += 1;
        }
        self.detector.prune_below(self.next);
        self.gate.prune_below(self.next);
        ::metrics::gauge!("hologram_consensus_height").set(self.next as f64);
        self.mempool_changed();
        self.activate(now, out);
        if self.catching_up_from.is_some() && !self.behind() {
            let from = self.catching_up_from.take().unwrap_or(self.next);
            tracing::info!(me = %self.me, from, to = self.next, "catch-up finished");
        }
    }
}
