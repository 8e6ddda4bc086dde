//! A participant's inputs from its driver: messages, timers and its start.

use super::{ParticipantCore, ParticipantTimer};
use crate::wire::{decided, refused};
use crate::{TxnId, TxnMessage};
use hologram_lattice::NodeId;

impl ParticipantCore {
    /// Handles a message from `from` (malformed ones, and hand-offs that do
    /// not check out, are dropped).
    pub fn on_message(&mut self, from: NodeId, message: TxnMessage) {
        if message.check().is_err() {
            return;
        }
        let _span = message
            .txn()
            .map(|txn| tracing::debug_span!("participant", ?txn).entered());
        let reply = match message {
            TxnMessage::Prepare(request) => {
                let txn = request.txn;
                Some(match self.prepare(request) {
                    Ok(vote) => TxnMessage::Prepared { txn, vote },
                    Err(e) => refused(txn, e),
                })
            }
            TxnMessage::CommitOnePhase { request, expected } => Some(decided(
                request.txn,
                self.commit_one_phase(request, &expected),
            )),
            TxnMessage::Commit { txn, prepares } => Some(decided(txn, self.commit(txn, &prepares))),
            TxnMessage::Abort { txn } => Some(decided(txn, self.abort(txn))),
            TxnMessage::Resolve { txn, decision } => Some(match self.resolve(txn, &decision) {
                Ok(ack) => TxnMessage::Ack { txn, ack },
                Err(e) => refused(txn, e),
            }),
            // The primary's answer to our query: apply it; the coordinator
            // collects our ack when it resends the decision.
            TxnMessage::Decided { txn, decision } => {
                let _ = self.resolve(txn, &decision);
                None
            }
            TxnMessage::Query { txn } => match self.query(txn) {
                Ok(Some(decision)) => Some(TxnMessage::Decided { txn, decision }),
                _ => None,
            },
            TxnMessage::HandOff(transfer) => self
                .receive_hand_off(from, *transfer)
                .ok()
                .map(|ack| TxnMessage::HandedOver(Box::new(ack))),
            TxnMessage::HandedOver(ack) => {
                let _ = self.hand_off_acknowledged(from, &ack);
                None
            }
            TxnMessage::Prepared { .. } | TxnMessage::Refused { .. } | TxnMessage::Ack { .. } => {
                None
            }
        };
        if let Some(reply) = reply {
            self.effects.send.push((from, reply));
        }
    }

    /// A timer expired.
    pub fn on_timer(&mut self, timer: ParticipantTimer) {
        match timer {
            ParticipantTimer::Decide(txn) => {
                if self.prepared_primary(&txn) {
                    let _ = self.decide_abort(txn);
                }
            }
            ParticipantTimer::Resolve { txn, attempt } => {
                if let Some(p) = self.prepared.get(&txn) {
                    let primary = p.request.primary;
                    self.effects.send.push((primary, TxnMessage::Query { txn }));
                    let wait = self
                        .config
                        .resolve_after_ms
                        .saturating_mul(1 << attempt.min(16))
                        .min(self.config.resolve_max_ms);
                    let next = ParticipantTimer::Resolve {
                        txn,
                        attempt: attempt.saturating_add(1),
                    };
                    self.effects.timers.push((wait, next));
                }
            }
            ParticipantTimer::HandOff => self.resend_hand_offs(),
        }
    }

    /// After a (re)start: re-arms the recovery timer of every prepared
    /// transaction, so none waits forever.
    pub fn on_start(&mut self) {
        let txns: Vec<TxnId> = self.prepared.keys().copied().collect();
        for txn in txns {
            self.arm(txn);
        }
        // Keys handed off before a crash and not acknowledged: again.
        self.resend_hand_offs();
    }

    pub(super) fn arm(&mut self, txn: TxnId) {
        let timer = if self.prepared_primary(&txn) {
            (self.config.decide_timeout_ms, ParticipantTimer::Decide(txn))
        } else {
            let t = ParticipantTimer::Resolve { txn, attempt: 0 };
            (self.config.resolve_after_ms, t)
        };
        self.effects.timers.push(timer);
    }

    pub(super) fn prepared_primary(&self, txn: &TxnId) -> bool {
        self.prepared
            .get(txn)
            .is_some_and(|p| p.request.primary == self.id)
    }
}
