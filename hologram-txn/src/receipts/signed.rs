//! A receipt signed for one purpose, by a node or a group, and the checks
//! of a commit certificate.

use super::{commit_receipt, Proof};
use crate::types::{bound, MAX_PARTICIPANTS};
use crate::{TxnError, TxnId};
use hologram_lattice::NodeId;
use hologram_receipt::{verify_signature, KeyPair, Purpose, Receipt, Signature, SignatureBatch};
use serde::{Deserialize, Serialize};

/// A receipt with the proof that its signer signed it for one purpose: the
/// signer's own signature, or a group's (the `receipts` module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// Who signed: a node (its key), or a group (its [`group_id`](super::group_id)).
    pub signer: NodeId,
    /// What was signed.
    pub receipt: Receipt,
    /// The signature, or the group's member signatures, over the receipt's
    /// canonical bytes.
    pub proof: Proof,
}

impl SignedReceipt {
    /// `keys` signs `receipt` for `purpose`.
    pub fn sign(keys: &KeyPair, purpose: Purpose, receipt: Receipt) -> Self {
        SignedReceipt {
            signer: keys.node_id(),
            receipt,
            proof: Proof::Single(keys.sign(purpose, &receipt.to_canonical_bytes())),
        }
    }

    /// The signatures that must all verify for the proof to hold, each with
    /// its signer's key, after every check that needs no signature (for a
    /// group proof: bounds, members, indices and count).
    pub fn signatures(&self) -> Result<Vec<(NodeId, Signature)>, TxnError> {
        match &self.proof {
            Proof::Single(signature) => Ok(vec![(self.signer, *signature)]),
            Proof::Group(proof) => {
                proof.check()?;
                proof.shares(&self.signer)
            }
        }
    }

    /// Checks the proof for `purpose`, each signature strictly. A single
    /// signature whose signer is a group id fails as a
    /// [`TxnError::BadSignature`] (no one holds a key for it).
    pub fn verify(&self, purpose: Purpose) -> Result<(), TxnError> {
        let canonical = self.receipt.to_canonical_bytes();
        for (signer, signature) in self.signatures()? {
            verify_signature(&signer, purpose, &canonical, &signature)
                .map_err(|source| TxnError::BadSignature { signer, source })?;
        }
        Ok(())
    }

    /// Adds the proof's signatures for `purpose` to `batch` (every member
    /// signature of a group proof, once its checks without signatures
    /// pass): the proof holds if the batch verifies.
    pub fn push_to(&self, batch: &mut SignatureBatch, purpose: Purpose) -> Result<(), TxnError> {
        let canonical = self.receipt.to_canonical_bytes();
        for (signer, signature) in self.signatures()? {
            batch.push(signer, purpose, &canonical, signature);
        }
        Ok(())
    }

    /// Checks the bounds a decoded receipt must meet (those of a group proof).
    pub fn check(&self) -> Result<(), TxnError> {
        match &self.proof {
            Proof::Single(_) => Ok(()),
            Proof::Group(proof) => proof.check(),
        }
    }

    /// Whether it claims the same signer and receipt as `other`, whatever
    /// the proofs.
    pub fn same_claim(&self, other: &SignedReceipt) -> bool {
        self.signer == other.signer && self.receipt == other.receipt
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

/// Checks the bounds of a decoded list of prepares: at most
/// [`MAX_PARTICIPANTS`], every group proof within its own.
pub fn check_prepares(prepares: &[SignedReceipt]) -> Result<(), TxnError> {
    bound("prepare list", prepares.len(), MAX_PARTICIPANTS)?;
    prepares.iter().try_for_each(SignedReceipt::check)
}
