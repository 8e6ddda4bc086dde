//! The coordinator: drives a transaction through two-phase commit, as a
//! deterministic core without I/O.
//!
//! The coordinator keeps **no durable state**: the decision lives in the
//! primary participant's store (see [`crate::participant`]), so a
//! coordinator that crashes loses only its knowledge of the outcome, never
//! the outcome, and blocks nobody. Its transactions in flight are resolved by
//! their primaries (abort, unless the primary already committed).
//!
//! For each transaction:
//!
//! 1. **Preparing**: send each participant its [`PrepareRequest`]; accept a
//!    vote only if it is signed by that participant for
//!    [`Purpose::Prepare`] and its receipt **equals** the prepare receipt the
//!    coordinator computes from the request (a participant that prepared
//!    something else, e.g. a corrupted request, makes the transaction abort).
//!    The vote's signature is checked by the primary, which commits only on a
//!    certificate of valid votes.
//!    A refusal, or no full set of votes within `prepare_timeout_ms`, leads to
//!    abort.
//! 2. **Deciding**: ask the primary to commit on the certificate of all votes
//!    (or to abort). Its signed [`Decision`] is final, whatever was asked.
//! 3. **Finishing**: send the decision to every other participant until each
//!    acknowledges with its own signed receipt equal to the decided one.
//!    Only then is the transaction reported: `Ok(commit receipt)` — the
//!    composition of the prepare receipts — or the abort's reason.
//!
//! A single-participant transaction skips phase 1: the participant commits
//! in one step ([`TxnMessage::CommitOnePhase`]).
//!
//! Everything is resent every `retry_ms` until answered; participants answer
//! repeats idempotently.

use crate::effects::Effects;
use crate::{Decision, Op, PrepareRequest, SignedReceipt, TxnError, TxnId, TxnMessage};
use hologram_lattice::sim::Millis;
use hologram_lattice::NodeId;
use hologram_receipt::{Purpose, Receipt};
use std::collections::{BTreeMap, BTreeSet};

/// Timing of a coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// How long to wait for an answer before resending.
    pub retry_ms: Millis,
    /// How long phase 1 may take before the transaction is aborted.
    pub prepare_timeout_ms: Millis,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            retry_ms: 150,
            prepare_timeout_ms: 400,
        }
    }
}

/// What a coordinator's timers carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordinatorTimer {
    /// Resend what is unanswered for this transaction.
    Retry(TxnId),
}

/// How a transaction ended, as its coordinator saw it.
pub type TxnResult = Result<Receipt, TxnError>;

#[derive(Debug, Clone)]
enum Phase {
    Preparing,
    Deciding {
        commit: bool,
    },
    Finishing {
        decision: Box<Decision>,
        receipt: Receipt,
        acked: BTreeSet<NodeId>,
    },
}

#[derive(Debug, Clone)]
struct Flight {
    requests: BTreeMap<NodeId, PrepareRequest>,
    primary: NodeId,
    expected: BTreeMap<NodeId, Receipt>,
    votes: BTreeMap<NodeId, SignedReceipt>,
    phase: Phase,
    started: Millis,
    reason: Option<TxnError>,
}

impl Flight {
    fn one_phase(&self) -> bool {
        self.requests.len() == 1
    }

    fn commit_receipt(&self) -> Receipt {
        Receipt::compose_all(self.expected.values())
    }
}

/// Drives transactions through two-phase commit (see the module docs).
#[derive(Debug, Clone)]
pub struct CoordinatorCore {
    config: CoordinatorConfig,
    flights: BTreeMap<TxnId, Flight>,
    completed: Vec<(TxnId, TxnResult)>,
    effects: Effects<CoordinatorTimer>,
}

impl CoordinatorCore {
    /// A coordinator with nothing in flight.
    pub fn new(config: CoordinatorConfig) -> Self {
        CoordinatorCore {
            config,
            flights: BTreeMap::new(),
            completed: Vec::new(),
            effects: Effects::default(),
        }
    }

    /// Starts `txn`: each participant's ops, routed with shard map
    /// `map_version`. The participant with the smallest id is the primary.
    pub fn begin(
        &mut self,
        now: Millis,
        txn: TxnId,
        map_version: u64,
        writes: BTreeMap<NodeId, Vec<Op>>,
    ) -> Result<(), TxnError> {
        if self.flights.contains_key(&txn) {
            return Err(TxnError::ContentsDiffer(txn));
        }
        let participants: Vec<NodeId> = writes.keys().copied().collect();
        let primary = *participants
            .first()
            .ok_or(TxnError::Empty("participant list"))?;
        let mut requests = BTreeMap::new();
        let mut expected = BTreeMap::new();
        for (node, ops) in writes {
            let request = PrepareRequest {
                txn,
                primary,
                participants: participants.clone(),
                ops,
                map_version,
            };
            request.check()?;
            expected.insert(node, request.prepare_receipt(&node));
            requests.insert(node, request);
        }
        let mut flight = Flight {
            requests,
            primary,
            expected,
            votes: BTreeMap::new(),
            phase: Phase::Preparing,
            started: now,
            reason: None,
        };
        if flight.one_phase() {
            flight.phase = Phase::Deciding { commit: true };
        }
        self.flights.insert(txn, flight);
        self.send_pending(txn);
        self.effects
            .timers
            .push((self.config.retry_ms, CoordinatorTimer::Retry(txn)));
        Ok(())
    }

    /// Drains what the driver must do (send, set timers; never persist).
    pub fn take_effects(&mut self) -> Effects<CoordinatorTimer> {
        std::mem::take(&mut self.effects)
    }

    /// Drains the transactions that ended since the last call.
    pub fn take_completed(&mut self) -> Vec<(TxnId, TxnResult)> {
        std::mem::take(&mut self.completed)
    }

    /// The transactions in flight.
    pub fn in_flight(&self) -> impl Iterator<Item = &TxnId> {
        self.flights.keys()
    }

    /// Handles a message from `from` (malformed or unexpected ones are dropped).
    pub fn on_message(&mut self, from: NodeId, message: TxnMessage) {
        if message.check().is_err() {
            return;
        }
        let txn = message.txn();
        let Some(flight) = self.flights.get_mut(&txn) else {
            return;
        };
        match message {
            TxnMessage::Prepared { vote, .. } => {
                if !matches!(flight.phase, Phase::Preparing) || vote.signer != from {
                    return;
                }
                let Some(expected) = flight.expected.get(&from) else {
                    return;
                };
                // Its signature is checked by the primary, which commits only
                // on a certificate of valid votes (and refuses otherwise, which
                // aborts): checking it here too would cost a verification per
                // participant for nothing. The receipt must equal ours.
                if vote.receipt != *expected {
                    let reason = TxnError::ReceiptMismatch {
                        txn,
                        participant: from,
                    };
                    self.decide(txn, false, Some(reason));
                    return;
                }
                flight.votes.insert(from, vote);
                if flight.votes.len() == flight.requests.len() {
                    self.decide(txn, true, None);
                }
            }
            TxnMessage::Refused { refusal, .. } => {
                let error = refusal.into_error(txn);
                match flight.phase {
                    Phase::Preparing => self.decide(txn, false, Some(error)),
                    // The primary would not commit (it holds nothing for the
                    // transaction, or the request reached it damaged): ask it
                    // to abort, and take whatever it decides.
                    Phase::Deciding { commit: true } if from == flight.primary => {
                        self.decide(txn, false, Some(error))
                    }
                    _ => {}
                }
            }
            TxnMessage::Decided { decision, .. } => {
                if from != flight.primary || matches!(flight.phase, Phase::Finishing { .. }) {
                    return;
                }
                let Ok(receipt) = decision.verify(&txn, &flight.primary) else {
                    return;
                };
                if decision.is_commit() && receipt != flight.commit_receipt() {
                    let reason = TxnError::ReceiptMismatch {
                        txn,
                        participant: from,
                    };
                    self.finish(txn, Err(reason));
                    return;
                }
                let mut acked = BTreeSet::new();
                acked.insert(from);
                flight.phase = Phase::Finishing {
                    decision: Box::new(decision),
                    receipt,
                    acked,
                };
                self.send_pending(txn);
                self.maybe_finish(txn);
            }
            TxnMessage::Ack { ack, .. } => {
                let Phase::Finishing {
                    decision,
                    receipt,
                    acked,
                } = &mut flight.phase
                else {
                    return;
                };
                let purpose = if decision.is_commit() {
                    Purpose::Commit
                } else {
                    Purpose::Abort
                };
                if flight.requests.contains_key(&from)
                    && ack.verify_as(&txn, &from, receipt, purpose).is_ok()
                {
                    acked.insert(from);
                    self.maybe_finish(txn);
                }
            }
            TxnMessage::Prepare(_)
            | TxnMessage::CommitOnePhase { .. }
            | TxnMessage::Commit { .. }
            | TxnMessage::Abort { .. }
            | TxnMessage::Resolve { .. }
            | TxnMessage::Query { .. } => {}
        }
    }

    /// A timer expired.
    pub fn on_timer(&mut self, now: Millis, timer: CoordinatorTimer) {
        let CoordinatorTimer::Retry(txn) = timer;
        let Some(flight) = self.flights.get(&txn) else {
            return;
        };
        if matches!(flight.phase, Phase::Preparing)
            && now.saturating_sub(flight.started) >= self.config.prepare_timeout_ms
        {
            self.decide(txn, false, Some(TxnError::TimedOut(txn)));
        } else {
            self.send_pending(txn);
        }
        self.effects
            .timers
            .push((self.config.retry_ms, CoordinatorTimer::Retry(txn)));
    }

    /// Moves to the decision phase and asks the primary.
    fn decide(&mut self, txn: TxnId, commit: bool, reason: Option<TxnError>) {
        if let Some(flight) = self.flights.get_mut(&txn) {
            if flight.reason.is_none() {
                flight.reason = reason;
            }
            flight.phase = Phase::Deciding { commit };
            self.send_pending(txn);
        }
    }

    /// (Re)sends whatever the transaction's phase still waits for.
    fn send_pending(&mut self, txn: TxnId) {
        let Some(flight) = self.flights.get(&txn) else {
            return;
        };
        let send = &mut self.effects.send;
        match &flight.phase {
            Phase::Preparing => {
                for (node, request) in &flight.requests {
                    if !flight.votes.contains_key(node) {
                        send.push((*node, TxnMessage::Prepare(request.clone())));
                    }
                }
            }
            Phase::Deciding { commit: true } if flight.one_phase() => {
                let primary = flight.primary;
                if let (Some(request), Some(&expected)) =
                    (flight.requests.get(&primary), flight.expected.get(&primary))
                {
                    let request = request.clone();
                    send.push((primary, TxnMessage::CommitOnePhase { request, expected }));
                }
            }
            Phase::Deciding { commit: true } => {
                let prepares = flight.votes.values().copied().collect();
                send.push((flight.primary, TxnMessage::Commit { txn, prepares }));
            }
            Phase::Deciding { commit: false } => {
                send.push((flight.primary, TxnMessage::Abort { txn }));
            }
            Phase::Finishing {
                decision, acked, ..
            } => {
                for node in flight.requests.keys() {
                    if !acked.contains(node) {
                        let decision = (**decision).clone();
                        send.push((*node, TxnMessage::Resolve { txn, decision }));
                    }
                }
            }
        }
    }

    fn maybe_finish(&mut self, txn: TxnId) {
        let Some(flight) = self.flights.get(&txn) else {
            return;
        };
        let Phase::Finishing {
            decision,
            receipt,
            acked,
        } = &flight.phase
        else {
            return;
        };
        if acked.len() < flight.requests.len() {
            return;
        }
        let result = if decision.is_commit() {
            Ok(*receipt)
        } else {
            Err(flight.reason.clone().unwrap_or(TxnError::Aborted {
                txn,
                reason: "the primary decided abort".into(),
            }))
        };
        self.finish(txn, result);
    }

    fn finish(&mut self, txn: TxnId, result: TxnResult) {
        self.flights.remove(&txn);
        self.completed.push((txn, result));
    }
}
