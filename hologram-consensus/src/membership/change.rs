//! [`SetChange`]: one change of a validator set, approved by a quorum of
//! the set it changes, and its canonical bytes.

use crate::codec::Reader;
use crate::validators::MAX_VALIDATORS;
use crate::{ConsensusError, ValidatorSet};
use hologram_lattice::NodeId;
use hologram_receipt::{verify_signature, KeyPair, Purpose, Signature};
use serde::{Deserialize, Serialize};

/// The prefix of the bytes a validator signs to approve a change.
const APPROVAL_MAGIC: &[u8; 22] = b"hologram set change v1";

/// What a [`SetChange`] does to a validator set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SetOp {
    /// A new validator, placed last.
    Add(NodeId),
    /// A validator leaves (the set must keep at least one).
    Remove(NodeId),
    /// `new` takes `old`'s place (and its position in the leader rotation):
    /// a dead validator's replacement, or a key rotation.
    Replace {
        /// The validator leaving.
        old: NodeId,
        /// The one taking its place.
        new: NodeId,
    },
}

impl SetOp {
    /// The set after this operation, or why it does not fit `set`.
    pub fn apply(&self, set: &ValidatorSet) -> Result<ValidatorSet, String> {
        let mut ids = set.validators().to_vec();
        match *self {
            SetOp::Add(id) => {
                if set.contains(&id) {
                    return Err(format!("{id} is already a validator"));
                }
                ids.push(id);
            }
            SetOp::Remove(id) => {
                let i = ids
                    .iter()
                    .position(|v| *v == id)
                    .ok_or_else(|| format!("{id} is not a validator"))?;
                ids.remove(i);
            }
            SetOp::Replace { old, new } => {
                if set.contains(&new) {
                    return Err(format!("{new} is already a validator"));
                }
                let i = ids
                    .iter()
                    .position(|v| *v == old)
                    .ok_or_else(|| format!("{old} is not a validator"))?;
                ids[i] = new;
            }
        }
        ValidatorSet::new(ids).map_err(|e| e.to_string())
    }

    /// Canonical bytes: `1 ‖ id` (add), `2 ‖ id` (remove), `3 ‖ old ‖ new`
    /// (replace).
    fn write_canonical(&self, out: &mut Vec<u8>) {
        match self {
            SetOp::Add(id) => {
                out.push(1);
                out.extend_from_slice(id.as_bytes());
            }
            SetOp::Remove(id) => {
                out.push(2);
                out.extend_from_slice(id.as_bytes());
            }
            SetOp::Replace { old, new } => {
                out.push(3);
                out.extend_from_slice(old.as_bytes());
                out.extend_from_slice(new.as_bytes());
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, String> {
        let id = |r: &mut Reader<'_>, what| r.array(what).map(NodeId::from_bytes);
        match r.take(1, "set operation")?[0] {
            1 => Ok(SetOp::Add(id(r, "added validator")?)),
            2 => Ok(SetOp::Remove(id(r, "removed validator")?)),
            3 => Ok(SetOp::Replace {
                old: id(r, "replaced validator")?,
                new: id(r, "replacing validator")?,
            }),
            other => Err(format!("unknown set operation {other}")),
        }
    }
}

/// A change of a consensus group's validator set, carried by a decided
/// batch ([`Batch::set_change`](crate::Batch::set_change)) and applied when
/// that height is delivered, to take effect
/// [`Membership::delay`](crate::Membership::delay) heights later.
///
/// It names the set **version** it changes (the number of changes applied
/// before it) and carries the approvals of a quorum of that set's
/// validators, each an Ed25519 signature for [`Purpose::SetChange`] over
///
/// ```text
/// "hologram set change v1" (22) ‖ version u64 LE ‖ fingerprint of the set changed (32) ‖ operation
/// ```
///
/// (operation: `1 ‖ id` add, `2 ‖ id` remove, `3 ‖ old ‖ new` replace). A
/// change is thus authorised by the validators it governs (no `f` of them
/// can add or remove anyone) and applies at most once: once applied, the
/// version moves on and the same approvals never verify again, even if a
/// later set has the same members.
///
/// Its canonical bytes (inside a batch's) are `version u64 LE ‖ operation ‖
/// approval count u16 LE ‖ (signer (32) ‖ signature (64))*`, signers
/// strictly increasing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SetChange {
    /// The set version it changes.
    pub version: u64,
    /// What it does.
    pub op: SetOp,
    /// `(validator, signature)`, validators strictly increasing.
    pub approvals: Vec<(NodeId, Signature)>,
}

impl SetChange {
    /// The bytes a validator signs to approve `op` on `set` at `version`.
    pub fn approval_bytes(version: u64, set: &ValidatorSet, op: &SetOp) -> Vec<u8> {
        let mut out = Vec::with_capacity(APPROVAL_MAGIC.len() + 8 + 32 + 65);
        out.extend_from_slice(APPROVAL_MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&set.fingerprint());
        op.write_canonical(&mut out);
        out
    }

    /// `keys`' approval of `op` on `set` at `version`.
    pub fn approve(
        keys: &KeyPair,
        version: u64,
        set: &ValidatorSet,
        op: &SetOp,
    ) -> (NodeId, Signature) {
        let bytes = Self::approval_bytes(version, set, op);
        (keys.node_id(), keys.sign(Purpose::SetChange, &bytes))
    }

    /// A change of `op` at `version` with these approvals (put in their
    /// canonical order; a repeated signer is kept once).
    pub fn new(version: u64, op: SetOp, approvals: Vec<(NodeId, Signature)>) -> Self {
        let mut approvals = approvals;
        approvals.sort_unstable_by_key(|(id, _)| *id);
        approvals.dedup_by_key(|(id, _)| *id);
        Self {
            version,
            op,
            approvals,
        }
    }

    /// Checks the change against `set` at `version` (the set it must
    /// change): same version, a quorum of the set's distinct validators
    /// approved it with valid signatures, and its operation fits. Returns
    /// the set it makes; [`ConsensusError::SetChangeRefused`] if not.
    pub fn verify(&self, version: u64, set: &ValidatorSet) -> Result<ValidatorSet, ConsensusError> {
        let refuse = |reason: String| ConsensusError::SetChangeRefused {
            version: self.version,
            reason,
        };
        if self.version != version {
            return Err(refuse(format!("the set is at version {version}")));
        }
        if self.approvals.len() > set.len() {
            return Err(refuse(format!(
                "{} approvals for {} validators",
                self.approvals.len(),
                set.len()
            )));
        }
        for pair in self.approvals.windows(2) {
            if pair[0].0 >= pair[1].0 {
                return Err(refuse(format!(
                    "{} approves twice or out of order",
                    pair[1].0
                )));
            }
        }
        if self.approvals.len() < set.quorum() {
            return Err(refuse(format!(
                "{} approvals, a quorum is {}",
                self.approvals.len(),
                set.quorum()
            )));
        }
        let bytes = Self::approval_bytes(self.version, set, &self.op);
        // One by one, strictly: every replica applying the decided change
        // must reach the same verdict, which a batch does not promise for
        // a signature a Byzantine approver crafted (`SignatureBatch` docs).
        for (signer, signature) in &self.approvals {
            if !set.contains(signer) {
                return Err(refuse(format!("{signer} is not a validator of the set")));
            }
            verify_signature(signer, Purpose::SetChange, &bytes, signature)
                .map_err(|e| refuse(format!("{signer}'s approval does not verify: {e}")))?;
        }
        self.op.apply(set).map_err(refuse)
    }

    /// Checks the bounds a decoded change must meet (at most
    /// [`MAX_VALIDATORS`] approvals).
    pub(crate) fn check_bounds(&self) -> Result<(), ConsensusError> {
        if self.approvals.len() > MAX_VALIDATORS {
            return Err(ConsensusError::TooLarge {
                what: "set change (approvals)",
                size: self.approvals.len(),
                max: MAX_VALIDATORS,
            });
        }
        Ok(())
    }

    /// Appends the canonical bytes (see the type docs).
    pub(crate) fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        self.op.write_canonical(out);
        // At most MAX_VALIDATORS (< 2^16) once bounds are checked; a longer
        // list never verifies, and its count is cut to 16 bits only here.
        out.extend_from_slice(&(self.approvals.len() as u16).to_le_bytes());
        for (id, signature) in &self.approvals {
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(&signature.to_bytes());
        }
    }

    /// Reads canonical bytes; every count is bounded before it is used.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, String> {
        let version = r.u64("set change version")?;
        let op = SetOp::read(r)?;
        let count = usize::from(u16::from_le_bytes(r.array("approval count")?));
        if count > MAX_VALIDATORS || count * 96 > r.rest.len() {
            return Err(format!(
                "{count} approvals, {} bytes left (at most {MAX_VALIDATORS})",
                r.rest.len()
            ));
        }
        let mut approvals = Vec::with_capacity(count);
        for _ in 0..count {
            let id = NodeId::from_bytes(r.array("approver")?);
            approvals.push((id, Signature::from_bytes(r.array("approval")?)));
        }
        Ok(Self {
            version,
            op,
            approvals,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(n: u8) -> (Vec<KeyPair>, ValidatorSet) {
        let keys: Vec<KeyPair> = (1..=n).map(|i| KeyPair::from_seed([i; 32])).collect();
        let set = ValidatorSet::new(keys.iter().map(KeyPair::node_id).collect()).unwrap();
        (keys, set)
    }

    fn approved(keys: &[KeyPair], version: u64, set: &ValidatorSet, op: SetOp) -> SetChange {
        let approvals = keys
            .iter()
            .map(|k| SetChange::approve(k, version, set, &op))
            .collect();
        SetChange::new(version, op, approvals)
    }

    #[test]
    fn a_quorum_approved_change_applies_and_nothing_else_does() {
        let (keys, set) = keys(4);
        let newcomer = KeyPair::from_seed([9; 32]).node_id();
        let change = approved(&keys[..3], 0, &set, SetOp::Add(newcomer));
        let next = change.verify(0, &set).unwrap();
        assert_eq!(next.len(), 5);
        assert_eq!(next.validators()[4], newcomer);
        let refused = |c: &SetChange, version| {
            matches!(
                c.verify(version, &set),
                Err(ConsensusError::SetChangeRefused { .. })
            )
        };
        // Another version (a replay after the set moved on).
        assert!(refused(&change, 1));
        // Two approvals are not a quorum of four.
        assert!(refused(
            &approved(&keys[..2], 0, &set, SetOp::Add(newcomer)),
            0
        ));
        // An approval of another operation, or by an outsider.
        let mut forged = change.clone();
        forged.op = SetOp::Add(KeyPair::from_seed([10; 32]).node_id());
        assert!(refused(&forged, 0));
        let outsider = KeyPair::from_seed([11; 32]);
        let mut with_outsider = keys[..2].to_vec();
        with_outsider.push(outsider);
        assert!(refused(
            &approved(&with_outsider, 0, &set, SetOp::Add(newcomer)),
            0
        ));
        // Operations that do not fit.
        assert!(refused(
            &approved(&keys, 0, &set, SetOp::Add(set.validators()[0])),
            0
        ));
        assert!(refused(
            &approved(&keys, 0, &set, SetOp::Remove(newcomer)),
            0
        ));
        let (one_keys, one) = self::keys(1);
        let empty = approved(&one_keys, 0, &one, SetOp::Remove(one.validators()[0]));
        assert!(empty.verify(0, &one).is_err());
        // A replacement takes the old one's place.
        let old = set.validators()[1];
        let replaced = approved(&keys, 0, &set, SetOp::Replace { old, new: newcomer });
        let next = replaced.verify(0, &set).unwrap();
        assert_eq!(next.validators()[1], newcomer);
        assert!(!next.contains(&old));
    }

    proptest! {
        #[test]
        fn canonical_bytes_round_trip_and_cuts_are_refused(
            version in any::<u64>(),
            tag in 0u8..3,
            a in any::<[u8; 32]>(),
            b in any::<[u8; 32]>(),
            signers in 0usize..5,
        ) {
            let (keys, set) = keys(4);
            let op = match tag {
                0 => SetOp::Add(NodeId::from_bytes(a)),
                1 => SetOp::Remove(NodeId::from_bytes(a)),
                _ => SetOp::Replace { old: NodeId::from_bytes(a), new: NodeId::from_bytes(b) },
            };
            let change = approved(&keys[..signers], version, &set, op);
            let mut bytes = Vec::new();
            change.write_canonical(&mut bytes);
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(SetChange::read(&mut r).unwrap(), change);
            prop_assert!(r.finish().is_ok());
            for cut in 0..bytes.len() {
                let mut r = Reader::new(&bytes[..cut]);
                prop_assert!(SetChange::read(&mut r).is_err());
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = SetChange::read(&mut Reader::new(&bytes));
        }
    }
}
