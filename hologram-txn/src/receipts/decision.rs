//! The primary's signed decision that settles a transaction.

use super::{abort_receipt, check_prepares, commit_receipt, SignedReceipt};
use crate::types::{bound, MAX_PARTICIPANTS};
use crate::{TxnError, TxnId};
use hologram_lattice::NodeId;
use hologram_receipt::{Purpose, Receipt};
use serde::{Deserialize, Serialize};

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

    /// Checks the bounds a decoded decision must meet: at most
    /// [`MAX_PARTICIPANTS`] prepares, and every group proof within its own.
    pub fn check(&self) -> Result<(), TxnError> {
        if let Decision::Committed { prepares, .. } = self {
            check_prepares(prepares)?;
        }
        self.primary().check()
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
