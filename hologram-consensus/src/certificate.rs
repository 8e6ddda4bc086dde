//! Certificates: a quorum of matching signed votes that anyone holding the
//! [`ValidatorSet`] can verify.
//!
//! A [`Certificate`] of kind [`VoteKind::Precommit`] is a *commit
//! certificate*: proof that the value was decided at its height. One of kind
//! [`VoteKind::Prevote`] is a *polka*: proof that a quorum prevoted the value
//! in that round, which lets a later leader re-propose a locked value.

use crate::vote::{vote_canonical_bytes, Slot, Vote, VoteKind};
use crate::{ConsensusError, ValidatorSet};
use hologram_lattice::NodeId;
use hologram_receipt::{Purpose, Receipt, Signature, SignatureBatch};
use serde::{Deserialize, Serialize};

/// A quorum of distinct validators' signatures on one vote (slot and value).
///
/// Signers are listed in increasing id order, each once, so a certificate
/// has one canonical form and counting distinct signers is a comparison of
/// neighbours.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Certificate {
    /// The slot every signature was cast in.
    pub slot: Slot,
    /// The value every signature supports.
    pub value: Receipt,
    /// `(signer, signature)`, signers strictly increasing.
    pub signatures: Vec<(NodeId, Signature)>,
}

impl Certificate {
    /// A certificate of `votes` (all for `slot` and `value`; others are
    /// skipped, as are repeated voters). The caller has checked each vote.
    pub fn from_votes<'a>(
        slot: Slot,
        value: Receipt,
        votes: impl IntoIterator<Item = &'a Vote>,
    ) -> Self {
        let mut signatures: Vec<(NodeId, Signature)> = votes
            .into_iter()
            .filter(|v| v.slot == slot && v.value == Some(value))
            .map(|v| (v.voter, v.signature))
            .collect();
        signatures.sort_unstable_by_key(|(id, _)| *id);
        signatures.dedup_by_key(|(id, _)| *id);
        Self {
            slot,
            value,
            signatures,
        }
    }

    /// The height certified.
    pub fn height(&self) -> u64 {
        self.slot.height
    }

    /// The round certified.
    pub fn round(&self) -> u32 {
        self.slot.round
    }

    /// Checks the certificate against `validators`: signers strictly
    /// increasing (so distinct), every signer a validator, at least a quorum
    /// of them, and every signature valid for [`Purpose::Vote`] over the
    /// vote's canonical bytes. Signatures are checked in one batch.
    pub fn verify(&self, validators: &ValidatorSet) -> Result<(), ConsensusError> {
        let needed = validators.quorum();
        if self.signatures.len() < needed {
            return Err(self.insufficient(self.signatures.len(), needed));
        }
        if self.signatures.len() > validators.len() {
            return Err(ConsensusError::TooLarge {
                what: "certificate (signatures)",
                size: self.signatures.len(),
                max: validators.len(),
            });
        }
        for pair in self.signatures.windows(2) {
            if pair[0].0 >= pair[1].0 {
                return Err(ConsensusError::DuplicateSigner(pair[1].0));
            }
        }
        let canonical = vote_canonical_bytes(self.slot, Some(&self.value));
        let mut batch = SignatureBatch::with_capacity(self.signatures.len());
        for (signer, signature) in &self.signatures {
            validators.check_member(signer)?;
            batch.push(*signer, Purpose::Vote, &canonical, *signature);
        }
        batch.verify().map_err(ConsensusError::BadSignature)
    }

    /// [`verify`](Self::verify), and that the certificate is of `kind`.
    pub fn verify_kind(
        &self,
        kind: VoteKind,
        validators: &ValidatorSet,
    ) -> Result<(), ConsensusError> {
        if self.slot.kind != kind {
            return Err(ConsensusError::WrongCertificateKind {
                expected: kind,
                got: self.slot.kind,
            });
        }
        self.verify(validators)
    }

    /// The votes the certificate is made of.
    pub fn votes(&self) -> impl Iterator<Item = Vote> + '_ {
        self.signatures.iter().map(|&(voter, signature)| Vote {
            slot: self.slot,
            value: Some(self.value),
            voter,
            signature,
        })
    }

    fn insufficient(&self, got: usize, needed: usize) -> ConsensusError {
        ConsensusError::InsufficientSignatures {
            height: self.slot.height,
            round: self.slot.round,
            got,
            needed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_receipt::KeyPair;

    fn setup(n: u8) -> (Vec<KeyPair>, ValidatorSet) {
        let keys: Vec<KeyPair> = (1..=n).map(|i| KeyPair::from_seed([i; 32])).collect();
        let set = ValidatorSet::new(keys.iter().map(KeyPair::node_id).collect()).unwrap();
        (keys, set)
    }

    const SLOT: Slot = Slot {
        height: 3,
        round: 1,
        kind: VoteKind::Precommit,
    };

    #[test]
    fn a_quorum_of_distinct_valid_signatures_verifies() {
        let (keys, set) = setup(4);
        let value = Receipt::from_bytes(b"batch");
        let votes: Vec<Vote> = keys[..3]
            .iter()
            .map(|k| Vote::sign(k, SLOT, Some(value)))
            .collect();
        let cert = Certificate::from_votes(SLOT, value, &votes);
        assert!(cert.verify(&set).is_ok());
        assert!(cert.verify_kind(VoteKind::Precommit, &set).is_ok());
        assert!(matches!(
            cert.verify_kind(VoteKind::Prevote, &set),
            Err(ConsensusError::WrongCertificateKind { .. })
        ));

        // Two signatures are too few, even with the third one repeated.
        let mut short = cert.clone();
        short.signatures[2] = short.signatures[1];
        assert!(matches!(
            short.verify(&set),
            Err(ConsensusError::DuplicateSigner(_))
        ));
        short.signatures.pop();
        assert!(matches!(
            short.verify(&set),
            Err(ConsensusError::InsufficientSignatures {
                got: 2,
                needed: 3,
                ..
            })
        ));

        // A different value, round or an outsider's signature fails.
        let mut other = cert.clone();
        other.value = Receipt::from_bytes(b"other");
        assert!(matches!(
            other.verify(&set),
            Err(ConsensusError::BadSignature(_))
        ));
        let mut other = cert.clone();
        other.slot.round = 2;
        assert!(other.verify(&set).is_err());
        let outsider = KeyPair::from_seed([99; 32]);
        let mut votes2 = votes.clone();
        votes2[0] = Vote::sign(&outsider, SLOT, Some(value));
        let cert2 = Certificate::from_votes(SLOT, value, &votes2);
        assert!(matches!(
            cert2.verify(&set),
            Err(ConsensusError::NotAValidator(_))
        ));
    }
}
