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
use hologram_receipt::{verify_signature, KeyPair, Purpose, Receipt, Signature, SignatureBatch};
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

/// Prefix of the bytes a group's id is the hash of (module docs).
pub const GROUP_ID_TAG: &[u8] = b"hologram shard-group v1\n";

/// The most members a group may have (every decoder refuses more before
/// reading them).
pub const MAX_GROUP: usize = 64;

/// The id of the group whose members are `members`: `BLAKE3(GROUP_ID_TAG ‖
/// n u8 ‖ the n member ids)`. The members must be strictly ascending, 1 to
/// [`MAX_GROUP`] of them.
pub fn group_id(members: &[NodeId]) -> Result<NodeId, TxnError> {
    if members.is_empty() {
        return Err(TxnError::Empty("group member list"));
    }
    bound("group member list", members.len(), MAX_GROUP)?;
    if !members.windows(2).all(|w| w[0] < w[1]) {
        return Err(TxnError::Decode {
            what: "group member list",
            reason: "members not ascending and distinct".into(),
        });
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(GROUP_ID_TAG);
    // Bounded above by MAX_GROUP < 256.
    hasher.update(&[members.len() as u8]);
    members.iter().for_each(|m| {
        hasher.update(m.as_bytes());
    });
    Ok(NodeId::from_bytes(*hasher.finalize().as_bytes()))
}

/// A group of members that signs as one participant (see
/// [`ReplicatedParticipant`](crate::ReplicatedParticipant)): its members, ascending, and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    id: NodeId,
    members: Vec<NodeId>,
}

impl Group {
    /// The group of `members` (in any order; distinct, 1 to [`MAX_GROUP`]).
    pub fn new(mut members: Vec<NodeId>) -> Result<Self, TxnError> {
        members.sort_unstable();
        let id = group_id(&members)?;
        Ok(Group { id, members })
    }

    /// Its id, [`group_id`] of its members.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Its members, ascending.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// How many member signatures make a receipt the group's: `f + 1`, with
    /// `f = (n - 1) / 3` the members that may be Byzantine.
    pub fn needed(&self) -> usize {
        needed(self.members.len())
    }

    /// `receipt` claimed by the group, with no member signature yet: its
    /// proof names the members and fails to verify until `f + 1` of them
    /// sign (see [`ReplicatedParticipant`](crate::ReplicatedParticipant)).
    pub fn unsigned(&self, receipt: Receipt) -> SignedReceipt {
        SignedReceipt {
            signer: self.id,
            receipt,
            proof: Proof::Group(GroupProof {
                members: self.members.clone(),
                signatures: Vec::new(),
            }),
        }
    }
}

/// `f + 1` for a group of `n` members.
fn needed(n: usize) -> usize {
    n.saturating_sub(1) / 3 + 1
}

/// What proves that a [`SignedReceipt`]'s signer signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proof {
    /// The signer's own Ed25519 signature (the signer's id is its key).
    Single(Signature),
    /// Signatures of `f + 1` members of the group whose id is the signer.
    Group(GroupProof),
}

/// A group's signature: signatures of its members, each over the same
/// canonical bytes under the same purpose as a single signature.
///
/// It proves the receipt is the group's when the members hash to the
/// group's id ([`group_id`]) and at least `f + 1` of them (`f = (n - 1) /
/// 3`) signed: honest members sign only what the group's deterministic
/// machine output from its certified log, so one honest signer suffices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupProof {
    /// The group's members, strictly ascending, 1 to [`MAX_GROUP`].
    #[serde(deserialize_with = "bounded::<_, _, MAX_GROUP>")]
    pub members: Vec<NodeId>,
    /// Member signatures, each with the index of its member in `members`.
    #[serde(deserialize_with = "bounded::<_, _, MAX_GROUP>")]
    pub signatures: Vec<(u8, Signature)>,
}

/// Deserializes a sequence of at most `MAX` elements, refusing a longer one
/// before reading past its bound.
pub(crate) fn bounded<'de, D, T, const MAX: usize>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T, const MAX: usize>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const MAX: usize> serde::de::Visitor<'de> for Bounded<T, MAX> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "at most {MAX} elements")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let too_many = || serde::de::Error::invalid_length(MAX + 1, &self);
            if seq.size_hint().is_some_and(|n| n > MAX) {
                return Err(too_many());
            }
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                if out.len() == MAX {
                    return Err(too_many());
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_seq(Bounded::<T, MAX>(std::marker::PhantomData))
}

impl GroupProof {
    /// Checks the bounds a decoded proof must meet: 1 to [`MAX_GROUP`]
    /// members, at most one signature per member.
    pub fn check(&self) -> Result<(), TxnError> {
        if self.members.is_empty() {
            return Err(TxnError::Empty("group member list"));
        }
        bound("group member list", self.members.len(), MAX_GROUP)?;
        bound(
            "group signature list",
            self.signatures.len(),
            self.members.len(),
        )
    }

    /// The member signatures that must all verify for `group`'s proof to
    /// hold, after every check that needs no signature: the members hash to
    /// `group`, indices are in range and distinct, and there are `f + 1`.
    fn shares(&self, group: &NodeId) -> Result<Vec<(NodeId, Signature)>, TxnError> {
        if group_id(&self.members)? != *group {
            return Err(TxnError::NotTheGroup { group: *group });
        }
        let mut seen = [false; MAX_GROUP];
        let mut shares = Vec::with_capacity(self.signatures.len());
        for &(index, signature) in &self.signatures {
            let member =
                self.members
                    .get(usize::from(index))
                    .ok_or(TxnError::MemberIndexOutOfRange {
                        group: *group,
                        index,
                        members: self.members.len(),
                    })?;
            if std::mem::replace(&mut seen[usize::from(index)], true) {
                return Err(TxnError::DuplicateMemberIndex {
                    group: *group,
                    index,
                });
            }
            shares.push((*member, signature));
        }
        let needed = needed(self.members.len());
        if shares.len() < needed {
            return Err(TxnError::TooFewSignatures {
                group: *group,
                got: shares.len(),
                needed,
            });
        }
        Ok(shares)
    }
}

/// A receipt with the proof that its signer signed it for one purpose: the
/// signer's own signature, or a group's (module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// Who signed: a node (its key), or a group (its [`group_id`]).
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
        let c = check_certificate(&r.txn, &r.participants, &[pb.clone(), pa.clone()], &pa).unwrap();
        assert_eq!(c, commit_receipt(&[pa.clone(), pb.clone()]));
        // Missing, repeated, or wrongly signed prepares are refused.
        assert!(
            check_certificate(&r.txn, &r.participants, std::slice::from_ref(&pa), &pa).is_err()
        );
        assert!(
            check_certificate(&r.txn, &r.participants, &[pa.clone(), pa.clone()], &pa).is_err()
        );
        let forged = SignedReceipt::sign(&b, Purpose::Commit, pb.receipt);
        assert!(matches!(
            check_certificate(&r.txn, &r.participants, &[pa.clone(), forged], &pa),
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

    /// A group of four (f = 1), its member keys in member order, and a
    /// receipt.
    fn group() -> (Group, Vec<KeyPair>, Receipt) {
        let mut keys: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed([40 + i; 32])).collect();
        keys.sort_by_key(KeyPair::node_id);
        let group = Group::new(keys.iter().rev().map(KeyPair::node_id).collect()).unwrap();
        (group, keys, Receipt::from_bytes(b"a group's vote"))
    }

    /// `receipt` signed for `purpose` by the members at `indices`.
    fn signed_by(
        group: &Group,
        keys: &[KeyPair],
        indices: &[u8],
        purpose: Purpose,
        receipt: Receipt,
    ) -> SignedReceipt {
        let mut s = group.unsigned(receipt);
        let canonical = receipt.to_canonical_bytes();
        s.proof = Proof::Group(GroupProof {
            members: group.members().to_vec(),
            signatures: indices
                .iter()
                .map(|&i| (i, keys[usize::from(i)].sign(purpose, &canonical)))
                .collect(),
        });
        s
    }

    fn proof_mut(s: &mut SignedReceipt) -> &mut GroupProof {
        match &mut s.proof {
            Proof::Group(p) => p,
            Proof::Single(_) => unreachable!(),
        }
    }

    #[test]
    fn group_ids_hash_the_sorted_members_with_the_tag() {
        let (group, keys, _) = group();
        let mut bytes = GROUP_ID_TAG.to_vec();
        bytes.push(4);
        keys.iter()
            .for_each(|k| bytes.extend_from_slice(k.node_id().as_bytes()));
        assert_eq!(group.id().as_bytes(), blake3::hash(&bytes).as_bytes());
        assert_eq!(group.needed(), 2);
        assert!(group_id(&group.members()[..3]).is_ok_and(|id| id != group.id()));
        let mut unsorted = group.members().to_vec();
        unsorted.swap(0, 1);
        assert!(matches!(group_id(&unsorted), Err(TxnError::Decode { .. })));
        assert_eq!(group_id(&[]), Err(TxnError::Empty("group member list")));
        let many: Vec<NodeId> = (0..=MAX_GROUP as u8)
            .map(|i| NodeId::from_bytes([i; 32]))
            .collect();
        assert!(matches!(group_id(&many), Err(TxnError::TooLarge { .. })));
        assert!(matches!(
            Group::new(vec![group.members()[0]; 2]),
            Err(TxnError::Decode { .. })
        ));
    }

    #[test]
    fn group_proofs_need_f_plus_one_valid_distinct_member_signatures() {
        let (group, keys, receipt) = group();
        let id = group.id();
        let good = signed_by(&group, &keys, &[3, 1], Purpose::Prepare, receipt);
        assert_eq!(good.verify(Purpose::Prepare), Ok(()));
        let mut batch = SignatureBatch::new();
        good.push_to(&mut batch, Purpose::Prepare).unwrap();
        assert_eq!(batch.len(), 2);
        assert!(batch.verify().is_ok());
        // Another purpose: each member signature is checked for it.
        assert!(matches!(
            good.verify(Purpose::Commit),
            Err(TxnError::BadSignature { .. })
        ));
        let mut batch = SignatureBatch::new();
        good.push_to(&mut batch, Purpose::Commit).unwrap();
        assert!(batch.verify().is_err());
        // Unsigned, and f signatures: too few.
        assert_eq!(
            group.unsigned(receipt).verify(Purpose::Prepare),
            Err(TxnError::TooFewSignatures {
                group: id,
                got: 0,
                needed: 2
            })
        );
        let one = signed_by(&group, &keys, &[2], Purpose::Prepare, receipt);
        assert_eq!(
            one.verify(Purpose::Prepare),
            Err(TxnError::TooFewSignatures {
                group: id,
                got: 1,
                needed: 2
            })
        );
        assert!(one
            .push_to(&mut SignatureBatch::new(), Purpose::Prepare)
            .is_err());
        // One member twice is one member.
        let mut twice = good.clone();
        let first = proof_mut(&mut twice).signatures[0];
        proof_mut(&mut twice).signatures[1] = first;
        assert_eq!(
            twice.verify(Purpose::Prepare),
            Err(TxnError::DuplicateMemberIndex {
                group: id,
                index: 3
            })
        );
        // An index past the members.
        let mut past = good.clone();
        proof_mut(&mut past).signatures[0].0 = 4;
        assert_eq!(
            past.verify(Purpose::Prepare),
            Err(TxnError::MemberIndexOutOfRange {
                group: id,
                index: 4,
                members: 4
            })
        );
        // Members that are not the group's: an outsider in, the ids differ.
        let outsider = KeyPair::from_seed([99; 32]);
        let mut others = good.clone();
        let members = &mut proof_mut(&mut others).members;
        members[0] = outsider.node_id();
        members.sort();
        assert_eq!(
            others.verify(Purpose::Prepare),
            Err(TxnError::NotTheGroup { group: id })
        );
        // A signature swapped for another member's.
        let mut swapped = good.clone();
        proof_mut(&mut swapped).signatures[1].0 = 0;
        assert!(matches!(
            swapped.verify(Purpose::Prepare),
            Err(TxnError::BadSignature { .. })
        ));
        // A member's single signature in the group's name verifies under
        // no key.
        let single = SignedReceipt {
            signer: id,
            receipt,
            proof: Proof::Single(keys[0].sign(Purpose::Prepare, &receipt.to_canonical_bytes())),
        };
        assert!(matches!(
            single.verify(Purpose::Prepare),
            Err(TxnError::BadSignature { signer, .. }) if signer == id
        ));
    }

    #[test]
    fn group_proofs_are_bounded_as_they_decode() {
        let (group, keys, receipt) = group();
        let good = signed_by(&group, &keys, &[0, 1, 2, 3], Purpose::Abort, receipt);
        let bytes = postcard::to_allocvec(&good).unwrap();
        assert_eq!(postcard::from_bytes::<SignedReceipt>(&bytes).unwrap(), good);
        let mut long = good.clone();
        proof_mut(&mut long).members = (0..=MAX_GROUP as u8)
            .map(|i| NodeId::from_bytes([i; 32]))
            .collect();
        let bytes = postcard::to_allocvec(&long).unwrap();
        assert!(postcard::from_bytes::<SignedReceipt>(&bytes).is_err());
        let mut many = good;
        let share = proof_mut(&mut many).signatures[0];
        proof_mut(&mut many).signatures = vec![share; MAX_GROUP + 1];
        let bytes = postcard::to_allocvec(&many).unwrap();
        assert!(postcard::from_bytes::<SignedReceipt>(&bytes).is_err());
    }

    proptest::proptest! {
        /// Any bytes decode as a signed receipt or fail, without panic, and
        /// what decodes respects the bounds.
        #[test]
        fn decoding_signed_receipts_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            if let Ok(s) = postcard::from_bytes::<SignedReceipt>(&bytes) {
                if let Proof::Group(p) = &s.proof {
                    proptest::prop_assert!(p.members.len() <= MAX_GROUP);
                    proptest::prop_assert!(p.signatures.len() <= MAX_GROUP);
                }
                let _ = s.verify(Purpose::Prepare);
            }
        }

        /// A group proof with bits flipped decodes or fails without panic,
        /// and never verifies unless unchanged.
        #[test]
        fn flipped_group_proofs_never_panic(bit in 0usize..8000) {
            let (group, keys, receipt) = group();
            let good = signed_by(&group, &keys, &[0, 2], Purpose::Prepare, receipt);
            let mut bytes = postcard::to_allocvec(&good).unwrap();
            let i = bit % (bytes.len() * 8);
            bytes[i / 8] ^= 1 << (i % 8);
            if let Ok(s) = postcard::from_bytes::<SignedReceipt>(&bytes) {
                if s != good {
                    proptest::prop_assert!(s.verify(Purpose::Prepare).is_err());
                }
            }
        }
    }
}
