//! What participants sign: prepare, commit and abort receipts, and the
//! primary's [`Decision`] that settles a transaction.
//!
//! - A participant's **prepare receipt** is `Receipt::from_bytes` of its
//!   prepare bytes: `"hologram txn-prepare v1\n" ‖ txn(16) ‖ participant(32)
//!   ‖ primary(32) ‖ n u8 ‖ the n participants (32 each, ascending) ‖ m u16 ‖
//!   the m ops` (ops as in [`crate::types`]). Every honest party computes it
//!   from the request alone, so a coordinator checks each returned prepare
//!   receipt for equality with its own computation.
//! - The **commit receipt** of a transaction is the order-independent
//!   composition of its prepare receipts ([`Receipt::compose_all`], SPEC §6).
//!   Every participant that commits returns a receipt equal to it, signed for
//!   [`Purpose::Commit`].
//! - The **abort receipt** is `Receipt::from_bytes("hologram txn-abort v1\n" ‖ txn)`,
//!   signed for [`Purpose::Abort`].
//!
//! Signatures cover the receipt's 72 canonical bytes under the purpose's
//! context (SPEC §7); a prepare signature never verifies as a commit.

use crate::types::{bound, MAX_OPS, MAX_PARTICIPANTS};
use crate::{Op, TxnError, TxnId};
use hologram_lattice::NodeId;
use hologram_receipt::{verify_signature, KeyPair, Purpose, Receipt, Signature};
use serde::{Deserialize, Serialize};

/// Prefix of the prepare bytes.
pub const PREPARE_TAG: &[u8] = b"hologram txn-prepare v1\n";
/// Prefix of the abort bytes.
pub const ABORT_TAG: &[u8] = b"hologram txn-abort v1\n";

/// What a participant is asked to prepare: its part of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareRequest {
    /// The transaction.
    pub txn: TxnId,
    /// The participant that decides (its store holds the decision record).
    pub primary: NodeId,
    /// Every participant, ascending, without repeats; includes `primary`.
    pub participants: Vec<NodeId>,
    /// This participant's writes, applied in order at commit.
    pub ops: Vec<Op>,
    /// The version of the shard map the coordinator routed with.
    pub map_version: u64,
}

impl PrepareRequest {
    /// Checks the bounds and shape a request must have: 1 to [`MAX_OPS`] ops
    /// within their own bounds, 1 to [`MAX_PARTICIPANTS`] participants,
    /// ascending without repeats, the primary among them.
    pub fn check(&self) -> Result<(), TxnError> {
        if self.ops.is_empty() {
            return Err(TxnError::Empty("operation list"));
        }
        bound("operation list", self.ops.len(), MAX_OPS)?;
        self.ops.iter().try_for_each(Op::check)?;
        if self.participants.is_empty() {
            return Err(TxnError::Empty("participant list"));
        }
        bound(
            "participant list",
            self.participants.len(),
            MAX_PARTICIPANTS,
        )?;
        if !self.participants.windows(2).all(|w| w[0] < w[1]) {
            return Err(TxnError::Decode {
                what: "prepare request",
                reason: "participants not ascending and distinct".into(),
            });
        }
        if self.participants.binary_search(&self.primary).is_err() {
            return Err(TxnError::Decode {
                what: "prepare request",
                reason: "primary is not a participant".into(),
            });
        }
        Ok(())
    }

    /// Whether this is a single-participant transaction (the one-phase fast path).
    pub fn is_one_phase(&self) -> bool {
        self.participants.len() == 1
    }

    /// The prepare bytes of `participant` for this request (module docs).
    pub fn prepare_bytes(&self, participant: &NodeId) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + 32 * self.participants.len() + 32 * self.ops.len());
        out.extend_from_slice(PREPARE_TAG);
        out.extend_from_slice(&self.txn.0);
        out.extend_from_slice(participant.as_bytes());
        out.extend_from_slice(self.primary.as_bytes());
        // `check` bounds both counts far below 256 and 65,536.
        out.push(self.participants.len() as u8);
        self.participants
            .iter()
            .for_each(|p| out.extend_from_slice(p.as_bytes()));
        out.extend_from_slice(&(self.ops.len() as u16).to_le_bytes());
        self.ops.iter().for_each(|op| op.encode(&mut out));
        out
    }

    /// The prepare receipt `participant` returns for this request.
    pub fn prepare_receipt(&self, participant: &NodeId) -> Receipt {
        Receipt::from_bytes(&self.prepare_bytes(participant))
    }
}

/// The abort receipt of a transaction (module docs).
pub fn abort_receipt(txn: &TxnId) -> Receipt {
    let mut bytes = Vec::with_capacity(ABORT_TAG.len() + 16);
    bytes.extend_from_slice(ABORT_TAG);
    bytes.extend_from_slice(&txn.0);
    Receipt::from_bytes(&bytes)
}

/// The commit receipt of a transaction: the composition of its prepare receipts.
pub fn commit_receipt<'a>(prepares: impl IntoIterator<Item = &'a SignedReceipt>) -> Receipt {
    Receipt::compose_all(prepares.into_iter().map(|s| &s.receipt))
}

/// A receipt with its signer's signature for one purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// Who signed.
    pub signer: NodeId,
    /// What was signed.
    pub receipt: Receipt,
    /// The signature over the receipt's canonical bytes.
    pub signature: Signature,
}

impl SignedReceipt {
    /// `keys` signs `receipt` for `purpose`.
    pub fn sign(keys: &KeyPair, purpose: Purpose, receipt: Receipt) -> Self {
        SignedReceipt {
            signer: keys.node_id(),
            receipt,
            signature: keys.sign(purpose, &receipt.to_canonical_bytes()),
        }
    }

    /// Checks the signature for `purpose`.
    pub fn verify(&self, purpose: Purpose) -> Result<(), TxnError> {
        verify_signature(
            &self.signer,
            purpose,
            &self.receipt.to_canonical_bytes(),
            &self.signature,
        )
        .map_err(|source| TxnError::BadSignature {
            signer: self.signer,
            source,
        })
    }

    /// Checks that `expected_signer` signed exactly `expected` for `purpose`.
    pub fn verify_as(
        &self,
        txn: &TxnId,
        expected_signer: &NodeId,
        expected: &Receipt,
        purpose: Purpose,
    ) -> Result<(), TxnError> {
        self.check_claim(txn, expected_signer, expected)?;
        self.verify(purpose)
    }

    /// Checks, without the signature, that it claims `expected_signer`
    /// signed exactly `expected`. Whoever relies on the claim must still
    /// verify the signature (alone with [`SignedReceipt::verify`], or in a
    /// [`hologram_receipt::SignatureBatch`]).
    pub fn check_claim(
        &self,
        txn: &TxnId,
        expected_signer: &NodeId,
        expected: &Receipt,
    ) -> Result<(), TxnError> {
        if self.signer != *expected_signer || self.receipt != *expected {
            return Err(TxnError::ReceiptMismatch {
                txn: *txn,
                participant: *expected_signer,
            });
        }
        Ok(())
    }
}

/// Checks a commit certificate (the signed prepare receipts of every
/// participant) as the primary does before it decides to commit: exactly one
/// prepare per participant, each signed for [`Purpose::Prepare`] by its
/// participant, and `own` (the primary's, already known) among them. Returns
/// the commit receipt.
pub fn check_certificate(
    txn: &TxnId,
    participants: &[NodeId],
    prepares: &[SignedReceipt],
    own: &SignedReceipt,
) -> Result<Receipt, TxnError> {
    check_certificate_with(txn, participants, prepares, own, |p| {
        p.verify(Purpose::Prepare)
    })
}

/// [`check_certificate`], with `verify` checking each other participant's
/// signature for [`Purpose::Prepare`] (e.g. answering from signatures already
/// verified, see [`crate::participant::Prework`]).
pub fn check_certificate_with(
    txn: &TxnId,
    participants: &[NodeId],
    prepares: &[SignedReceipt],
    own: &SignedReceipt,
    mut verify: impl FnMut(&SignedReceipt) -> Result<(), TxnError>,
) -> Result<Receipt, TxnError> {
    let invalid = |reason| TxnError::InvalidCertificate { txn: *txn, reason };
    if prepares.len() != participants.len() {
        return Err(invalid("not one prepare per participant"));
    }
    let mut signers: Vec<NodeId> = prepares.iter().map(|p| p.signer).collect();
    signers.sort_unstable();
    if signers != participants {
        return Err(invalid("signers are not the participants"));
    }
    for p in prepares {
        if p.signer == own.signer {
            if p.receipt != own.receipt {
                return Err(invalid("the primary's own prepare receipt differs"));
            }
        } else {
            verify(p)?;
        }
    }
    Ok(commit_receipt(prepares))
}

/// How the primary settled a transaction, signed by it: the proof every other
/// participant acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Committed: the prepare receipts and the primary's signature of their
    /// composition for [`Purpose::Commit`].
    Committed {
        /// Every participant's signed prepare receipt.
        prepares: Vec<SignedReceipt>,
        /// The primary's signed commit receipt.
        primary: SignedReceipt,
    },
    /// Aborted: the primary's signature of the abort receipt for [`Purpose::Abort`].
    Aborted {
        /// The primary's signed abort receipt.
        primary: SignedReceipt,
    },
}

impl Decision {
    /// Whether this is a commit.
    pub fn is_commit(&self) -> bool {
        matches!(self, Decision::Committed { .. })
    }

    /// The primary's signed receipt.
    pub fn primary(&self) -> &SignedReceipt {
        match self {
            Decision::Committed { primary, .. } | Decision::Aborted { primary } => primary,
        }
    }

    /// The purpose the primary's signature (and every participant's
    /// acknowledgement) is made for: [`Purpose::Commit`] or [`Purpose::Abort`].
    pub fn purpose(&self) -> Purpose {
        if self.is_commit() {
            Purpose::Commit
        } else {
            Purpose::Abort
        }
    }

    /// Checks that `primary` signed this decision for `txn`: the commit
    /// receipt must be the composition of the listed prepares (at most
    /// [`MAX_PARTICIPANTS`], one per signer), the abort receipt that of
    /// `txn`. Returns the decided receipt.
    pub fn verify(&self, txn: &TxnId, primary: &NodeId) -> Result<Receipt, TxnError> {
        let expected = self.check_claim(txn, primary)?;
        self.primary().verify(self.purpose())?;
        Ok(expected)
    }

    /// Everything [`Decision::verify`] checks except the primary's
    /// signature: the decided receipt, if the decision is well formed and
    /// claims to be `primary`'s.
    pub fn check_claim(&self, txn: &TxnId, primary: &NodeId) -> Result<Receipt, TxnError> {
        let expected = match self {
            Decision::Committed { prepares, .. } => {
                bound("prepare list", prepares.len(), MAX_PARTICIPANTS)?;
                let mut signers: Vec<NodeId> = prepares.iter().map(|p| p.signer).collect();
                signers.sort_unstable();
                signers.dedup();
                if signers.len() != prepares.len() {
                    return Err(TxnError::InvalidCertificate {
                        txn: *txn,
                        reason: "a participant appears twice",
                    });
                }
                commit_receipt(prepares)
            }
            Decision::Aborted { .. } => abort_receipt(txn),
        };
        self.primary().check_claim(txn, primary, &expected)?;
        Ok(expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;

    fn request(keys: &[&KeyPair], txn: u8) -> PrepareRequest {
        let mut participants: Vec<NodeId> = keys.iter().map(|k| k.node_id()).collect();
        participants.sort();
        PrepareRequest {
            txn: TxnId([txn; 16]),
            primary: keys[0].node_id(),
            participants,
            ops: vec![Op::Add {
                key: Key::new(b"a".to_vec()).unwrap(),
                delta: 1,
            }],
            map_version: 1,
        }
    }

    #[test]
    fn prepare_receipts_bind_participant_txn_and_ops() {
        let (a, b) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]));
        let r = request(&[&a, &b], 1);
        assert!(r.check().is_ok());
        let ra = r.prepare_receipt(&a.node_id());
        assert_ne!(ra, r.prepare_receipt(&b.node_id()));
        assert_ne!(ra, request(&[&a, &b], 2).prepare_receipt(&a.node_id()));
        let mut other = r.clone();
        other.ops[0] = Op::Add {
            key: Key::new(b"a".to_vec()).unwrap(),
            delta: 2,
        };
        assert_ne!(ra, other.prepare_receipt(&a.node_id()));
        // The map version routes; it is not part of what is prepared.
        other = r.clone();
        other.map_version = 9;
        assert_eq!(ra, other.prepare_receipt(&a.node_id()));
    }

    #[test]
    fn malformed_requests_are_refused() {
        let (a, b) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]));
        let mut r = request(&[&a, &b], 1);
        r.participants.reverse();
        assert!(r.check().is_err());
        let mut r = request(&[&a], 1);
        r.primary = b.node_id();
        assert!(r.check().is_err());
        let mut r = request(&[&a], 1);
        r.ops.clear();
        assert_eq!(r.check(), Err(TxnError::Empty("operation list")));
    }

    #[test]
    fn certificates_and_decisions_verify_only_when_honest() {
        let (a, b) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]));
        let r = request(&[&a, &b], 1);
        let pa = SignedReceipt::sign(&a, Purpose::Prepare, r.prepare_receipt(&a.node_id()));
        let pb = SignedReceipt::sign(&b, Purpose::Prepare, r.prepare_receipt(&b.node_id()));
        let c = check_certificate(&r.txn, &r.participants, &[pb, pa], &pa).unwrap();
        assert_eq!(c, commit_receipt(&[pa, pb]));
        // Missing, repeated, or wrongly signed prepares are refused.
        assert!(check_certificate(&r.txn, &r.participants, &[pa], &pa).is_err());
        assert!(check_certificate(&r.txn, &r.participants, &[pa, pa], &pa).is_err());
        let forged = SignedReceipt::sign(&b, Purpose::Commit, pb.receipt);
        assert!(matches!(
            check_certificate(&r.txn, &r.participants, &[pa, forged], &pa),
            Err(TxnError::BadSignature { .. })
        ));

        let decision = Decision::Committed {
            prepares: vec![pa, pb],
            primary: SignedReceipt::sign(&a, Purpose::Commit, c),
        };
        assert_eq!(decision.verify(&r.txn, &a.node_id()), Ok(c));
        assert!(decision.verify(&r.txn, &b.node_id()).is_err());
        // A commit signature does not pass as an abort, nor one for another txn.
        let abort = Decision::Aborted {
            primary: SignedReceipt::sign(&a, Purpose::Commit, abort_receipt(&r.txn)),
        };
        assert!(matches!(
            abort.verify(&r.txn, &a.node_id()),
            Err(TxnError::BadSignature { .. })
        ));
        let abort = Decision::Aborted {
            primary: SignedReceipt::sign(&a, Purpose::Abort, abort_receipt(&r.txn)),
        };
        assert_eq!(
            abort.verify(&r.txn, &a.node_id()),
            Ok(abort_receipt(&r.txn))
        );
        assert!(abort.verify(&TxnId([9; 16]), &a.node_id()).is_err());
    }
}
