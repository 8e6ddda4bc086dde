//! The transaction protocol's messages and their bounded wire encoding.
//!
//! Messages are serde + postcard ([`TxnMessage::to_wire`]);
//! [`TxnMessage::from_wire`] decodes with [`hologram_lattice::wire::decode`]
//! (input longer than [`MAX_MESSAGE_LEN`] refused unread, trailing bytes
//! refused), then re-checks every bound serde
//! does not (key and value sizes, op and participant counts; a group proof's
//! member and signature lists are bounded by [`MAX_GROUP`](crate::receipts::MAX_GROUP) as they are
//! decoded, see [`crate::receipts`]). What is hashed
//! or signed is never these bytes but the canonical bytes of
//! [`crate::receipts`].

use crate::handoff::{HandOffAck, Transfer};
use crate::receipts::{check_prepares, Decision, PrepareRequest, SignedReceipt};
use crate::types::{bound, MAX_KEY_LEN, MAX_OPS, MAX_PARTICIPANTS, MAX_VALUE_LEN};
use crate::{Key, TxnError, TxnId};
use hologram_lattice::wire::Wire;
use hologram_receipt::Receipt;
use serde::{Deserialize, Serialize};

/// The longest reason string a refusal carries.
pub const MAX_REASON_LEN: usize = 1024;

/// The longest encoded message: a prepare with [`MAX_OPS`] largest puts and
/// [`MAX_PARTICIPANTS`] participants, with room for framing.
pub const MAX_MESSAGE_LEN: usize =
    MAX_OPS * (MAX_VALUE_LEN + MAX_KEY_LEN + 16) + MAX_PARTICIPANTS * 40 + 4096;

/// Why a participant refused a request, as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// [`TxnError::Conflict`].
    Conflict {
        /// The contended key.
        key: Key,
        /// Its holder.
        holder: TxnId,
    },
    /// [`TxnError::StaleShardMap`].
    StaleShardMap {
        /// The key not here.
        key: Key,
        /// The participant's map version.
        current: u64,
    },
    /// [`TxnError::Rejected`].
    Rejected {
        /// The key.
        key: Key,
        /// Why.
        reason: String,
    },
    /// [`TxnError::AlreadyDecided`].
    AlreadyDecided,
    /// [`TxnError::ContentsDiffer`].
    ContentsDiffer,
    /// [`TxnError::UnknownTransaction`].
    Unknown,
    /// Anything else, as text.
    Invalid(String),
    /// [`TxnError::Transport`] or [`TxnError::Unreachable`]: the participant (or, for a group, enough of
    /// its members) could not be reached. Retryable; it answers nothing
    /// about the transaction.
    Unavailable(String),
}

impl Refusal {
    /// The wire form of an error about `txn`.
    pub fn from_error(error: TxnError) -> Self {
        match error {
            TxnError::Conflict { key, holder } => Refusal::Conflict { key, holder },
            TxnError::StaleShardMap { key, current } => Refusal::StaleShardMap { key, current },
            TxnError::Rejected { key, reason } => Refusal::Rejected {
                key,
                reason: truncate(reason),
            },
            TxnError::AlreadyDecided(_) => Refusal::AlreadyDecided,
            TxnError::ContentsDiffer(_) => Refusal::ContentsDiffer,
            TxnError::UnknownTransaction(_) => Refusal::Unknown,
            TxnError::Transport(reason) => Refusal::Unavailable(truncate(reason)),
            e @ TxnError::Unreachable { .. } => Refusal::Unavailable(truncate(e.to_string())),
            other => Refusal::Invalid(truncate(other.to_string())),
        }
    }

    /// The error this refusal stands for.
    pub fn into_error(self, txn: TxnId) -> TxnError {
        match self {
            Refusal::Conflict { key, holder } => TxnError::Conflict { key, holder },
            Refusal::StaleShardMap { key, current } => TxnError::StaleShardMap { key, current },
            Refusal::Rejected { key, reason } => TxnError::Rejected { key, reason },
            Refusal::AlreadyDecided => TxnError::AlreadyDecided(txn),
            Refusal::ContentsDiffer => TxnError::ContentsDiffer(txn),
            Refusal::Unknown => TxnError::UnknownTransaction(txn),
            Refusal::Invalid(reason) => TxnError::Aborted { txn, reason },
            Refusal::Unavailable(reason) => TxnError::Transport(reason),
        }
    }

    fn check(&self) -> Result<(), TxnError> {
        match self {
            Refusal::Conflict { key, .. } | Refusal::StaleShardMap { key, .. } => key.check(),
            Refusal::Rejected { key, reason } => {
                key.check()?;
                bound("refusal reason", reason.len(), MAX_REASON_LEN)
            }
            Refusal::Invalid(reason) | Refusal::Unavailable(reason) => {
                bound("refusal reason", reason.len(), MAX_REASON_LEN)
            }
            Refusal::AlreadyDecided | Refusal::ContentsDiffer | Refusal::Unknown => Ok(()),
        }
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_REASON_LEN {
        let mut cut = MAX_REASON_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// A message of the transaction protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnMessage {
    /// Coordinator → participant: prepare your part (phase 1).
    Prepare(PrepareRequest),
    /// Coordinator → the only participant: prepare and commit at once, if
    /// the participant's prepare receipt equals `expected` (the one the
    /// coordinator computed): a request damaged or altered on the way is
    /// refused rather than committed.
    CommitOnePhase {
        /// The request.
        request: PrepareRequest,
        /// The prepare receipt the coordinator expects.
        expected: Receipt,
    },
    /// Coordinator → primary: decide commit, with every signed prepare receipt.
    Commit {
        /// The transaction.
        txn: TxnId,
        /// The certificate: one signed prepare receipt per participant.
        prepares: Vec<SignedReceipt>,
    },
    /// Coordinator → primary: decide abort.
    Abort {
        /// The transaction.
        txn: TxnId,
    },
    /// Coordinator → secondary: the primary's decision, to apply (phase 2).
    Resolve {
        /// The transaction.
        txn: TxnId,
        /// What the primary decided.
        decision: Decision,
    },
    /// Secondary → primary: what did you decide? (recovery)
    Query {
        /// The transaction.
        txn: TxnId,
    },
    /// Participant → coordinator: prepared; the signed prepare receipt.
    Prepared {
        /// The transaction.
        txn: TxnId,
        /// The vote.
        vote: SignedReceipt,
    },
    /// Participant → coordinator: refused.
    Refused {
        /// The transaction.
        txn: TxnId,
        /// Why.
        refusal: Refusal,
    },
    /// Primary → coordinator or a querying secondary: the decision.
    Decided {
        /// The transaction.
        txn: TxnId,
        /// What was decided.
        decision: Decision,
    },
    /// Secondary → coordinator: applied the decision; its own signed receipt.
    Ack {
        /// The transaction.
        txn: TxnId,
        /// The commit or abort receipt, signed.
        ack: SignedReceipt,
    },
    /// Previous owner → new owner: keys handed off ([`crate::Transfer`]).
    HandOff(Box<Transfer>),
    /// New owner → previous owner: the keys are held durably.
    HandedOver(Box<HandOffAck>),
}

impl TxnMessage {
    /// The transaction the message is about (none for a hand-off).
    pub fn txn(&self) -> Option<TxnId> {
        match self {
            TxnMessage::Prepare(r) | TxnMessage::CommitOnePhase { request: r, .. } => Some(r.txn),
            TxnMessage::Commit { txn, .. }
            | TxnMessage::Abort { txn }
            | TxnMessage::Resolve { txn, .. }
            | TxnMessage::Query { txn }
            | TxnMessage::Prepared { txn, .. }
            | TxnMessage::Refused { txn, .. }
            | TxnMessage::Decided { txn, .. }
            | TxnMessage::Ack { txn, .. } => Some(*txn),
            TxnMessage::HandOff(_) | TxnMessage::HandedOver(_) => None,
        }
    }

    /// Checks the bounds a decoded message must meet (group proofs'
    /// included).
    pub fn check(&self) -> Result<(), TxnError> {
        match self {
            TxnMessage::Prepare(r) | TxnMessage::CommitOnePhase { request: r, .. } => r.check(),
            TxnMessage::Commit { prepares, .. } => check_prepares(prepares),
            TxnMessage::Resolve { decision, .. } | TxnMessage::Decided { decision, .. } => {
                decision.check()
            }
            TxnMessage::Refused { refusal, .. } => refusal.check(),
            TxnMessage::HandOff(transfer) => transfer.check(),
            TxnMessage::HandedOver(ack) => ack.check(),
            TxnMessage::Prepared { vote: s, .. } | TxnMessage::Ack { ack: s, .. } => s.check(),
            TxnMessage::Abort { .. } | TxnMessage::Query { .. } => Ok(()),
        }
    }
}

/// Decoded from exactly one buffer ([`Wire::from_wire`]: more than
/// [`MAX_MESSAGE_LEN`] refused unread, trailing bytes refused), then
/// checked with [`TxnMessage::check`].
impl Wire for TxnMessage {
    const NAME: &'static str = "transaction message";
    const MAX_WIRE_LEN: usize = MAX_MESSAGE_LEN;
    type Error = TxnError;

    fn check_decoded(&self) -> Result<(), TxnError> {
        self.check()
    }
}

/// The refusal message of an error about `txn`.
pub(crate) fn refused(txn: TxnId, error: TxnError) -> TxnMessage {
    TxnMessage::Refused {
        txn,
        refusal: Refusal::from_error(error),
    }
}

/// The answer to a request for a decision.
pub(crate) fn decided(txn: TxnId, result: Result<crate::Decision, TxnError>) -> TxnMessage {
    match result {
        Ok(decision) => TxnMessage::Decided { txn, decision },
        Err(e) => refused(txn, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipts::{commit_receipt, Group, Proof, MAX_GROUP};
    use crate::{Op, PrepareRequest};
    use hologram_lattice::wire::WireError;
    use hologram_lattice::NodeId;
    use hologram_receipt::{KeyPair, Purpose};
    use proptest::prelude::*;

    fn prepare(key: Vec<u8>, delta: i64, n: u8) -> TxnMessage {
        // Built through serde, so that out-of-bounds keys can be made.
        let key: Key = postcard::from_bytes(&postcard::to_allocvec(&key).unwrap()).unwrap();
        let participants: Vec<NodeId> = (1..=n).map(|i| NodeId::from_bytes([i; 32])).collect();
        TxnMessage::Prepare(PrepareRequest {
            txn: TxnId([n; 16]),
            primary: participants[0],
            participants,
            ops: vec![Op::Add { key, delta }],
            map_version: 3,
        })
    }

    /// A commit decided by a group of `n` members, each of whose receipts
    /// carries a group proof signed by all members.
    fn group_decision(n: usize) -> TxnMessage {
        let keys: Vec<KeyPair> = (0..n as u8)
            .map(|i| KeyPair::from_seed([60 + i; 32]))
            .collect();
        let group = Group::new(keys.iter().map(KeyPair::node_id).collect()).unwrap();
        let sign = |purpose, receipt: Receipt| {
            let mut s = group.unsigned(receipt);
            if let Proof::Group(p) = &mut s.proof {
                p.signatures = (0..n)
                    .map(|i| {
                        let k = keys
                            .iter()
                            .find(|k| k.node_id() == group.members()[i])
                            .unwrap();
                        (i as u8, k.sign(purpose, &receipt.to_canonical_bytes()))
                    })
                    .collect();
            }
            s
        };
        let vote = sign(Purpose::Prepare, Receipt::from_bytes(b"vote"));
        let primary = sign(Purpose::Commit, commit_receipt([&vote]));
        TxnMessage::Decided {
            txn: TxnId([1; 16]),
            decision: Decision::Committed {
                prepares: vec![vote],
                primary,
            },
        }
    }

    fn decision_receipts(d: &Decision) -> Vec<&SignedReceipt> {
        match d {
            Decision::Committed { prepares, primary } => {
                prepares.iter().chain(std::iter::once(primary)).collect()
            }
            Decision::Aborted { primary } => vec![primary],
        }
    }

    #[test]
    fn oversized_and_trailing_input_is_refused() {
        let bytes = prepare(b"k".to_vec(), 1, 2).to_wire().unwrap();
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            TxnMessage::from_wire(&trailing),
            Err(TxnError::Wire(WireError::Trailing { extra: 1, .. }))
        ));
        let huge = vec![0u8; MAX_MESSAGE_LEN + 1];
        assert!(matches!(
            TxnMessage::from_wire(&huge),
            Err(TxnError::Wire(WireError::TooLarge {
                max: MAX_MESSAGE_LEN,
                ..
            }))
        ));
        // A key longer than the bound is refused after decoding.
        let long = prepare(vec![1; 300], 1, 1);
        let bytes = postcard::to_allocvec(&long).unwrap();
        assert!(matches!(
            TxnMessage::from_wire(&bytes),
            Err(TxnError::TooLarge { what: "key", .. })
        ));
    }

    proptest! {
        #[test]
        fn messages_round_trip(key in proptest::collection::vec(any::<u8>(), 1..64),
                               delta in any::<i64>(), n in 1u8..8) {
            let m = prepare(key, delta, n);
            prop_assert_eq!(TxnMessage::from_wire(&m.to_wire().unwrap()).unwrap(), m);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = TxnMessage::from_wire(&bytes);
        }

        /// A decision whose receipts carry group proofs: round trips, and
        /// with any bit flipped decodes within the bounds or fails, never
        /// panics.
        #[test]
        fn group_proofs_round_trip_and_flipped_never_panic(bit in 0usize..40_000, n in 1usize..8) {
            let m = group_decision(n);
            let mut bytes = m.to_wire().unwrap();
            prop_assert_eq!(&TxnMessage::from_wire(&bytes).unwrap(), &m);
            let i = bit % (bytes.len() * 8);
            bytes[i / 8] ^= 1 << (i % 8);
            if let Ok(TxnMessage::Decided { decision, .. }) = TxnMessage::from_wire(&bytes) {
                for s in decision_receipts(&decision) {
                    if let Proof::Group(p) = &s.proof {
                        prop_assert!(!p.members.is_empty() && p.members.len() <= MAX_GROUP);
                        prop_assert!(p.signatures.len() <= p.members.len());
                    }
                }
            }
        }

        #[test]
        fn flipped_bits_never_panic(bit in 0usize..2000) {
            let mut bytes = prepare(b"key".to_vec(), -5, 3).to_wire().unwrap();
            let i = bit % (bytes.len() * 8);
            bytes[i / 8] ^= 1 << (i % 8);
            let _ = TxnMessage::from_wire(&bytes);
        }
    }
}
