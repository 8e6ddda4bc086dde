//! The coordinator: drives a transaction through two-phase commit, as a
//! deterministic core without I/O.

use crate::effects::Effects;
use crate::{Decision, Op, PrepareRequest, SignedReceipt, TxnError, TxnId, TxnMessage};
use hologram_lattice::sim::Millis;
use hologram_lattice::NodeId;
use hologram_receipt::{Receipt, SignatureBatch};
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
        /// Participants whose signed receipt of `receipt` is verified.
        acked: BTreeSet<NodeId>,
        /// Signed receipts of `receipt` whose signatures are not checked yet:
        /// the primary's decision, then each acknowledgement.
        unchecked: BTreeMap<NodeId, SignedReceipt>,
        /// The phase to go back to if the decision proves forged.
        prior: Box<Phase>,
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
///
/// The coordinator keeps **no durable state**: the decision lives in the
/// primary participant's store (see [`ParticipantCore`](crate::ParticipantCore)), so a
/// coordinator that crashes loses only its knowledge of the outcome, never
/// the outcome, and blocks nobody. Its transactions in flight are resolved by
/// their primaries (abort, unless the primary already committed).
///
/// For each transaction:
///
/// 1. **Preparing**: send each participant its [`PrepareRequest`]; accept a
///    vote only if it is signed by that participant for
///    [`Purpose::Prepare`](hologram_receipt::Purpose::Prepare) and its receipt **equals** the prepare receipt the
///    coordinator computes from the request (a participant that prepared
///    something else, e.g. a corrupted request, makes the transaction abort).
///    The vote's signature is checked by the primary, which commits only on a
///    certificate of valid votes.
///    A refusal, or no full set of votes within `prepare_timeout_ms`, leads to
///    abort.
/// 2. **Deciding**: ask the primary to commit on the certificate of all votes
///    (or to abort). Its signed [`Decision`] is final, whatever was asked.
/// 3. **Finishing**: send the decision to every other participant until each
///    acknowledges with its own signed receipt equal to the decided one.
///    Only then is the transaction reported: `Ok(commit receipt)` — the
///    composition of the prepare receipts — or the abort's reason.
///
/// ## Which signatures the coordinator checks, and when
///
/// The coordinator reports an outcome only on signatures it has verified:
/// the primary's on the decision and every other participant's on its
/// acknowledgement. It checks them **together**, in one
/// [`SignatureBatch`] once every participant has answered (a single one
/// strictly, alone), rather than each as it arrives; the decision is
/// forwarded to the other participants before its signature is checked.
/// That is safe because nothing but the coordinator's own report rests on
/// the coordinator's word:
///
/// - every participant verifies a decision strictly itself before it applies
///   it ([`ParticipantCore::resolve`](crate::ParticipantCore::resolve)), so a
///   forged decision forwarded by a deceived coordinator is refused and
///   changes nothing;
/// - the report waits for the batch: a forged decision or acknowledgement
///   fails it, and the slow path (each signature strictly) finds which. A
///   forged acknowledgement is dropped and the decision sent again; a forged
///   decision sends the coordinator back to the phase it was in, to ask the
///   primary again, as does a participant's refusal of an unchecked decision.
///   So a forgery costs a round trip, never a wrong report.
///
/// The structure of what arrives (signer, receipt equal to the expected one)
/// is checked at once, without a signature check, so nothing ill-formed is
/// forwarded. Batch verification is not `verify_strict` for signatures that
/// only the key's holder can craft (see [`SignatureBatch`]); where the batch
/// and strict verification disagree, the slow path's strict verdict wins.
/// A replicated group's receipt ([`Proof::Group`](crate::Proof::Group))
/// puts each of its member signatures in the batch
/// ([`SignedReceipt::push_to`]), after the checks that need no signature
/// (the members hash to the group's id, indices distinct and in range,
/// `f + 1` of them); one that fails those fails the batch.
/// Votes are not checked here at all: the primary commits only on a
/// certificate of valid votes, and any vote whose receipt differs from the
/// one the coordinator computes aborts the transaction.
///
/// A single-participant transaction skips phase 1: the participant commits
/// in one step ([`TxnMessage::CommitOnePhase`]).
///
/// Everything is resent every `retry_ms` until answered; participants answer
/// repeats idempotently.
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

    /// Its timing.
    pub fn config(&self) -> CoordinatorConfig {
        self.config
    }

    /// Drains what the driver must do (send, set timers; never persist).
    pub fn take_effects(&mut self) -> Effects<CoordinatorTimer> {
        std::mem::take(&mut self.effects)
    }

    /// Drains the transactions that ended since the last call.
    pub fn take_completed(&mut self) -> Vec<(TxnId, TxnResult)> {
        std::mem::take(&mut self.completed)
    }

    /// Handles a message from `from` (malformed or unexpected ones are dropped).
    pub fn on_message(&mut self, from: NodeId, message: TxnMessage) {
        if message.check().is_err() {
            return;
        }
        let Some(txn) = message.txn() else {
            return;
        };
        let _span = tracing::debug_span!("coordinator", ?txn).entered();
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
                // on a certificate of valid votes (module docs). The receipt
                // must equal ours.
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
                    // A participant refused the decision: if its signature is
                    // unchecked, check it now (it may be forged).
                    Phase::Finishing { .. } => {
                        let primary = flight.primary;
                        self.check_unchecked(txn, Some(primary));
                    }
                    _ => {}
                }
            }
            TxnMessage::Decided { decision, .. } => {
                if from != flight.primary || matches!(flight.phase, Phase::Finishing { .. }) {
                    return;
                }
                let Ok(receipt) = decision.check_claim(&txn, &flight.primary) else {
                    return;
                };
                if decision.is_commit() && receipt != flight.commit_receipt() {
                    // Only a decision the primary really signed ends the
                    // transaction on a mismatch.
                    if decision.verify(&txn, &flight.primary).is_ok() {
                        let reason = TxnError::ReceiptMismatch {
                            txn,
                            participant: from,
                        };
                        self.finish(txn, Err(reason));
                    }
                    return;
                }
                let mut unchecked = BTreeMap::new();
                unchecked.insert(from, decision.primary().clone());
                let prior = std::mem::replace(&mut flight.phase, Phase::Preparing);
                flight.phase = Phase::Finishing {
                    decision: Box::new(decision),
                    receipt,
                    acked: BTreeSet::new(),
                    unchecked,
                    prior: Box::new(prior),
                };
                self.send_pending(txn);
                self.maybe_finish(txn);
            }
            TxnMessage::Ack { ack, .. } => {
                let Phase::Finishing {
                    receipt,
                    acked,
                    unchecked,
                    ..
                } = &mut flight.phase
                else {
                    return;
                };
                if flight.requests.contains_key(&from)
                    && !acked.contains(&from)
                    && ack.check_claim(&txn, &from, receipt).is_ok()
                {
                    unchecked.insert(from, ack);
                    self.maybe_finish(txn);
                }
            }
            TxnMessage::Prepare(_)
            | TxnMessage::CommitOnePhase { .. }
            | TxnMessage::Commit { .. }
            | TxnMessage::Abort { .. }
            | TxnMessage::Resolve { .. }
            | TxnMessage::Query { .. }
            | TxnMessage::HandOff(_)
            | TxnMessage::HandedOver(_) => {}
        }
    }

    /// A timer expired.
    pub fn on_timer(&mut self, now: Millis, timer: CoordinatorTimer) {
        let CoordinatorTimer::Retry(txn) = timer;
        let _span = tracing::debug_span!("coordinator", ?txn).entered();
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
                let prepares = flight.votes.values().cloned().collect();
                send.push((flight.primary, TxnMessage::Commit { txn, prepares }));
            }
            Phase::Deciding { commit: false } => {
                send.push((flight.primary, TxnMessage::Abort { txn }));
            }
            Phase::Finishing {
                decision,
                acked,
                unchecked,
                ..
            } => {
                for node in flight.requests.keys() {
                    if !acked.contains(node) && !unchecked.contains_key(node) {
                        let decision = (**decision).clone();
                        send.push((*node, TxnMessage::Resolve { txn, decision }));
                    }
                }
            }
        }
    }

    /// Once every participant has answered, checks the unchecked signatures
    /// and, if all hold, reports the outcome.
    fn maybe_finish(&mut self, txn: TxnId) {
        let everyone_answered = self.flights.get(&txn).is_some_and(|f| match &f.phase {
            Phase::Finishing {
                acked, unchecked, ..
            } => acked.len() + unchecked.len() >= f.requests.len(),
            _ => false,
        });
        if !everyone_answered {
            return;
        }
        self.check_unchecked(txn, None);
        let Some(flight) = self.flights.get(&txn) else {
            return;
        };
        let Phase::Finishing {
            decision,
            receipt,
            acked,
            ..
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

    /// Verifies the unchecked signatures of a finishing transaction (only
    /// `only`'s, if given): valid ones become acknowledgements, forged ones
    /// are dropped and asked for again, and a forged decision sends the
    /// transaction back to the phase before it (module docs).
    fn check_unchecked(&mut self, txn: TxnId, only: Option<NodeId>) {
        let Some(flight) = self.flights.get_mut(&txn) else {
            return;
        };
        let Phase::Finishing {
            decision,
            acked,
            unchecked,
            prior,
            ..
        } = &mut flight.phase
        else {
            return;
        };
        let purpose = decision.purpose();
        let checking: Vec<SignedReceipt> = unchecked
            .iter()
            .filter(|(node, _)| only.is_none_or(|o| o == **node))
            .map(|(_, s)| s.clone())
            .collect();
        // A group proof adds each of its member signatures to the batch
        // (after its checks without signatures; one that fails them fails
        // the batch). Where the batch fails, or for a single signature,
        // strict verification one by one decides (it names the forged ones).
        let batch_holds = checking.len() > 1 && {
            let mut batch = SignatureBatch::with_capacity(checking.len());
            let pushed = checking
                .iter()
                .all(|s| s.push_to(&mut batch, purpose).is_ok());
            pushed && batch.verify().is_ok()
        };
        let forged: BTreeSet<NodeId> = match batch_holds {
            true => BTreeSet::new(),
            false => checking
                .iter()
                .filter(|s| s.verify(purpose).is_err())
                .map(|s| s.signer)
                .collect(),
        };
        if forged.contains(&flight.primary) {
            flight.phase = (**prior).clone();
            self.send_pending(txn);
            return;
        }
        for s in &checking {
            unchecked.remove(&s.signer);
            if !forged.contains(&s.signer) {
                acked.insert(s.signer);
            }
        }
        if !forged.is_empty() {
            self.send_pending(txn);
        }
    }

    fn finish(&mut self, txn: TxnId, result: TxnResult) {
        self.flights.remove(&txn);
        match &result {
            Ok(_) => {
                ::metrics::counter!("hologram_txn_committed_total").increment(1);
                tracing::debug!(?txn, "transaction committed");
            }
            Err(e) => {
                ::metrics::counter!("hologram_txn_aborted_total").increment(1);
                tracing::debug!(?txn, reason = %e, "transaction aborted");
            }
        }
        self.completed.push((txn, result));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::commit_receipt;
    use crate::Key;
    use hologram_receipt::{KeyPair, Purpose};

    /// A coordinator with a two-participant transaction whose votes are in:
    /// it now asks the primary to commit. Returns the coordinator, the keys
    /// (primary first) and the genuine decision.
    fn deciding() -> (CoordinatorCore, [KeyPair; 2], Decision) {
        let mut keys = [KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32])];
        keys.sort_by_key(KeyPair::node_id);
        let mut writes = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            let key = Key::new(vec![b'k', i as u8]).unwrap();
            writes.insert(k.node_id(), vec![Op::Add { key, delta: 1 }]);
        }
        let mut core = CoordinatorCore::new(CoordinatorConfig::default());
        core.begin(0, TxnId([5; 16]), 1, writes).unwrap();
        let mut votes = Vec::new();
        for (to, message) in core.take_effects().send {
            let TxnMessage::Prepare(request) = message else {
                panic!("expected prepares");
            };
            let k = keys.iter().find(|k| k.node_id() == to).unwrap();
            votes.push(SignedReceipt::sign(
                k,
                Purpose::Prepare,
                request.prepare_receipt(&to),
            ));
        }
        for vote in &votes {
            let txn = TxnId([5; 16]);
            core.on_message(
                vote.signer,
                TxnMessage::Prepared {
                    txn,
                    vote: vote.clone(),
                },
            );
        }
        let sent = core.take_effects().send;
        assert!(
            matches!(sent.as_slice(), [(to, TxnMessage::Commit { .. })] if *to == keys[0].node_id())
        );
        let c = commit_receipt(&votes);
        let decision = Decision::Committed {
            prepares: votes,
            primary: SignedReceipt::sign(&keys[0], Purpose::Commit, c),
        };
        (core, keys, decision)
    }

    fn forged(signer: &KeyPair, receipt: Receipt, purpose: Purpose) -> SignedReceipt {
        let mut s = SignedReceipt::sign(&KeyPair::from_seed([0xbb; 32]), purpose, receipt);
        s.signer = signer.node_id();
        s
    }

    #[test]
    fn a_forged_decision_is_caught_before_any_report_and_the_primary_asked_again() {
        let (mut core, keys, genuine) = deciding();
        let txn = TxnId([5; 16]);
        let (a, b) = (keys[0].node_id(), keys[1].node_id());
        let Decision::Committed { prepares, primary } = genuine.clone() else {
            unreachable!()
        };
        let fake = Decision::Committed {
            prepares,
            primary: forged(&keys[0], primary.receipt, Purpose::Commit),
        };
        // Well formed, so it is forwarded before its signature is checked…
        core.on_message(
            a,
            TxnMessage::Decided {
                txn,
                decision: fake,
            },
        );
        let sent = core.take_effects().send;
        assert!(matches!(sent.as_slice(), [(to, TxnMessage::Resolve { .. })] if *to == b));
        // …and a genuine acknowledgement completes the set: the batch fails
        // on the decision, nothing is reported, the primary is asked again.
        let ack = SignedReceipt::sign(&keys[1], Purpose::Commit, primary.receipt);
        core.on_message(
            b,
            TxnMessage::Ack {
                txn,
                ack: ack.clone(),
            },
        );
        assert!(core.take_completed().is_empty());
        let sent = core.take_effects().send;
        assert!(matches!(sent.as_slice(), [(to, TxnMessage::Commit { .. })] if *to == a));
        // The primary's genuine decision is taken; a repeat of it is ignored.
        core.on_message(
            a,
            TxnMessage::Decided {
                txn,
                decision: genuine.clone(),
            },
        );
        core.take_effects();
        core.on_message(
            a,
            TxnMessage::Decided {
                txn,
                decision: genuine.clone(),
            },
        );
        assert!(core.take_effects().send.is_empty(), "already finishing");
        // The genuine decision and acknowledgement report the commit.
        core.on_message(b, TxnMessage::Ack { txn, ack });
        assert_eq!(core.take_completed(), vec![(txn, Ok(primary.receipt))]);
    }

    #[test]
    fn a_refused_forged_decision_sends_the_coordinator_back() {
        let (mut core, keys, genuine) = deciding();
        let txn = TxnId([5; 16]);
        let (a, b) = (keys[0].node_id(), keys[1].node_id());
        let fake = Decision::Aborted {
            primary: forged(
                &keys[0],
                crate::receipts::abort_receipt(&txn),
                Purpose::Abort,
            ),
        };
        core.on_message(
            a,
            TxnMessage::Decided {
                txn,
                decision: fake,
            },
        );
        core.take_effects();
        let refusal = crate::wire::Refusal::Invalid("bad signature".into());
        core.on_message(b, TxnMessage::Refused { txn, refusal });
        let sent = core.take_effects().send;
        assert!(matches!(sent.as_slice(), [(to, TxnMessage::Commit { .. })] if *to == a));
        assert!(core.take_completed().is_empty());
        core.on_message(
            a,
            TxnMessage::Decided {
                txn,
                decision: genuine.clone(),
            },
        );
        let ack = SignedReceipt::sign(&keys[1], Purpose::Commit, genuine.primary().receipt);
        core.on_message(b, TxnMessage::Ack { txn, ack });
        assert_eq!(core.take_completed().len(), 1);
    }

    #[test]
    fn a_forged_acknowledgement_is_dropped_and_asked_for_again() {
        let (mut core, keys, genuine) = deciding();
        let txn = TxnId([5; 16]);
        let (a, b) = (keys[0].node_id(), keys[1].node_id());
        let receipt = genuine.primary().receipt;
        core.on_message(
            a,
            TxnMessage::Decided {
                txn,
                decision: genuine,
            },
        );
        core.take_effects();
        let ack = forged(&keys[1], receipt, Purpose::Commit);
        core.on_message(b, TxnMessage::Ack { txn, ack });
        assert!(core.take_completed().is_empty());
        let sent = core.take_effects().send;
        assert!(matches!(sent.as_slice(), [(to, TxnMessage::Resolve { .. })] if *to == b));
        // An acknowledgement of the wrong purpose is a forgery too.
        let ack = SignedReceipt::sign(&keys[1], Purpose::Abort, receipt);
        core.on_message(b, TxnMessage::Ack { txn, ack });
        assert!(core.take_completed().is_empty());
        let ack = SignedReceipt::sign(&keys[1], Purpose::Commit, receipt);
        core.on_message(b, TxnMessage::Ack { txn, ack });
        assert_eq!(core.take_completed(), vec![(txn, Ok(receipt))]);
    }
}
