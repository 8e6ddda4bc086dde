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
//!
//! ## Who signs: a node or a group
//!
//! A [`SignedReceipt`]'s [`Proof`] is either the signer's own Ed25519
//! signature (the signer's id is its public key), or, for a shard run by a
//! replicated group ([`ReplicatedParticipant`](crate::ReplicatedParticipant)), a [`GroupProof`]: signatures of
//! `f + 1` of the group's `n` members (`f = (n - 1) / 3`), each made exactly
//! as a single signature (`KeyPair::sign(purpose, canonical bytes)`).
//!
//! - A **group's id** is self-certifying, no directory needed:
//!   `BLAKE3(GROUP_ID_TAG ‖ n u8 ‖ the n member ids (32 each, strictly
//!   ascending))`, with [`GROUP_ID_TAG`] = `"hologram shard-group v1\n"` and
//!   `1 ≤ n ≤` [`MAX_GROUP`] ([`group_id`]). No one holds a key for it: a
//!   single signature claiming a group id fails as a bad signature.
//! - A **group proof** lists the members (their hash must be the signer)
//!   and pairs `(member index u8, signature)`, indices in range and
//!   distinct, at least `f + 1` of them, every signature valid for the
//!   purpose. Decoding refuses more than [`MAX_GROUP`] members or
//!   signatures before reading them. Honest members sign only outputs of
//!   the group's deterministic machine applied to its certified log, so one
//!   honest signer among `f + 1` makes the receipt the group's; a Byzantine
//!   member signing alone in the group's name proves nothing.
//! - Batch verification ([`SignedReceipt::push_to`]) adds every member
//!   signature of a group proof to the batch, after the checks that need no
//!   signature; strict verification ([`SignedReceipt::verify`]) checks each.

use crate::types::{bound, MAX_OPS, MAX_PARTICIPANTS};
use crate::{Op, TxnError, TxnId};
use hologram_lattice::NodeId;
use hologram_receipt::Receipt;
use serde::{Deserialize, Serialize};

mod decision;
mod group;
mod signed;

pub use decision::Decision;
pub(crate) use group::bounded;
pub use group::{group_id, Group, GroupProof, Proof, GROUP_ID_TAG, MAX_GROUP};
pub use signed::{check_certificate, check_certificate_with, check_prepares, SignedReceipt};

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

#[cfg(test)]
mod tests;
