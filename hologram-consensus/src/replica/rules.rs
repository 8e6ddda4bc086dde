//! Tendermint's rules, written once: the [`Replica`](super::Replica), the
//! [`LocalValidator`](crate::LocalValidator) and
//! [`ReceiptConsensus`](crate::ReceiptConsensus) all decide with these.
//!
//! The rules are those of Buchman, Kwon and Milosevic, *The latest gossip
//! on BFT consensus* (2018):
//!
//! - **Proposal validity** ([`check_leader`], [`check_proposal`]): the
//!   round's leader signed it, its batch is the one the header names, and a
//!   proof-of-lock round `vr` comes with a verified polka of round
//!   `vr < round` for the same value.
//! - **The prevote rule** ([`may_prevote`], the paper's lines 22–33): a
//!   validator locked on `(lockedRound, lockedValue)` prevotes a proposal
//!   for `v` only if `v` is its locked value or the proposal carries a polka
//!   of a round `vr >= lockedRound`.
//! - **One vote per slot** ([`HeightRecord::sign_vote`]): asked again, the
//!   voting record returns the vote already signed; it never signs a second
//!   value in a slot, nor a vote in a round older than the newest it signed in.
//! - **Lock on a polka** ([`HeightRecord::precommit_on`], line 36): the
//!   precommit for a polka's value and the lock (batch and polka) are
//!   recorded together.
//! - **What a leader proposes** ([`proposal`], lines 14–19): its valid value
//!   (the newest value with a polka) with that polka as proof of lock, else a
//!   fresh batch.
//! - **Round change** ([`round_reached`], line 55): a round that `f + 1`
//!   validators were seen in is joined (one of them is honest).

use super::record::{HeightRecord, Lock};
use crate::batch::Batch;
use crate::certificate::Certificate;
use crate::message::Proposal;
use crate::vote::{SignedHeader, Slot, Vote, VoteKind};
use crate::{ConsensusError, ValidatorSet};
use hologram_receipt::{KeyPair, Receipt};

/// Why a voting record will not sign a vote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// Another value was signed in the slot: this vote.
    #[error("already signed a {:?} for another value at height {} round {}",
        .0.slot.kind, .0.slot.height, .0.slot.round)]
    Signed(Box<Vote>),
    /// The slot's round is older than the newest one signed in.
    #[error("round {round} is older than round {last} already voted in")]
    OlderRound {
        /// The slot's round.
        round: u32,
        /// The newest round signed in.
        last: u32,
    },
}

impl HeightRecord {
    /// The vote already signed in `slot` if it is for `value`; `None` if
    /// nothing was signed there and the round is not older than the newest
    /// signed in; else a [`Refusal`].
    pub(crate) fn signed(
        &self,
        slot: Slot,
        value: Option<Receipt>,
    ) -> Result<Option<Vote>, Refusal> {
        if let Some(v) = self.votes.get(&(slot.round, slot.kind)) {
            return if v.value == value {
                Ok(Some(*v))
            } else {
                Err(Refusal::Signed(Box::new(*v)))
            };
        }
        let last = self.last_round();
        if slot.round < last {
            return Err(Refusal::OlderRound {
                round: slot.round,
                last,
            });
        }
        Ok(None)
    }

    /// Signs `value` in `slot` through the record (see [`signed`](Self::signed)):
    /// the vote already signed there, or a new one, recorded.
    pub(crate) fn sign_vote(
        &mut self,
        keys: &KeyPair,
        slot: Slot,
        value: Option<Receipt>,
    ) -> Result<Vote, Refusal> {
        if let Some(v) = self.signed(slot, value)? {
            return Ok(v);
        }
        let vote = Vote::sign(keys, slot, value);
        self.votes.insert((slot.round, slot.kind), vote);
        Ok(vote)
    }

    /// Precommits the value of `polka` (a verified quorum of prevotes whose
    /// batch is `batch`) in its round and locks on it, both recorded.
    pub(crate) fn precommit_on(
        &mut self,
        keys: &KeyPair,
        batch: Batch,
        polka: Certificate,
    ) -> Result<Vote, Refusal> {
        let slot = Slot {
            kind: VoteKind::Precommit,
            ..polka.slot
        };
        let vote = self.sign_vote(keys, slot, Some(polka.value))?;
        self.locked = Some(Lock {
            batch,
            proof: polka,
        });
        Ok(vote)
    }
}

/// Checks that the round's leader signed `header` (not its signature).
pub(crate) fn check_leader(
    header: &SignedHeader,
    validators: &ValidatorSet,
) -> Result<(), ConsensusError> {
    let leader = validators.leader(header.height, header.round);
    if header.proposer != leader {
        return Err(ConsensusError::WrongProposer {
            height: header.height,
            round: header.round,
            from: header.proposer,
            leader,
        });
    }
    Ok(())
}

/// Checks what a proposal claims besides its leader and signature: its
/// batch is the one its header names, and a proof-of-lock round comes with
/// a polka of that earlier round, for the same value, that verifies.
pub(crate) fn check_proposal(
    p: &Proposal,
    validators: &ValidatorSet,
) -> Result<(), ConsensusError> {
    let h = &p.header;
    match (h.pol_round, &p.proof_of_lock) {
        (None, None) => {}
        (Some(vr), Some(cert)) => {
            if vr >= h.round || cert.slot.height != h.height || cert.slot.round != vr {
                return Err(ConsensusError::BadProofOfLock(format!(
                    "polka of height {} round {} for a proposal of height {} round {} (pol round {vr})",
                    cert.slot.height, cert.slot.round, h.height, h.round
                )));
            }
            if cert.value != h.value {
                return Err(ConsensusError::BadProofOfLock(
                    "the polka is for another value".into(),
                ));
            }
            cert.verify_kind(VoteKind::Prevote, validators)?;
        }
        _ => {
            return Err(ConsensusError::BadProofOfLock(
                "proof-of-lock round and certificate must come together".into(),
            ))
        }
    }
    crate::membership::travels_alone_batch(&p.batch)?;
    if let Some(named) = p.batch.set_name() {
        if named != validators.fingerprint() {
            return Err(ConsensusError::UnknownValidatorSet {
                height: h.height,
                named: named.iter().map(|b| format!("{b:02x}")).collect(),
            });
        }
    }
    p.batch.check_names(&h.value)
}

/// The prevote rule: whether a validator with `lock` may prevote for the
/// proposal with `header` (whose proof of lock [`check_proposal`] verified).
pub(crate) fn may_prevote(lock: Option<&Lock>, header: &SignedHeader) -> bool {
    lock.is_none_or(|l| {
        l.value() == header.value || header.pol_round.is_some_and(|vr| vr >= l.round())
    })
}

/// The proposal a leader signs for `round` of `height`: its valid value
/// with the polka as proof of lock, else the batch `fresh` makes.
pub(crate) fn proposal(
    keys: &KeyPair,
    height: u64,
    round: u32,
    valid: Option<Lock>,
    fresh: impl FnOnce() -> Batch,
) -> Proposal {
    let (batch, proof_of_lock) = match valid {
        Some(Lock { batch, proof }) => (batch, Some(proof)),
        None => (fresh(), None),
    };
    let pol_round = proof_of_lock.as_ref().map(Certificate::round);
    Proposal {
        header: SignedHeader::sign(keys, height, round, pol_round, batch.receipt()),
        batch,
        proof_of_lock,
    }
}

/// The round that `k` validators have reached: the `k`-th highest of the
/// rounds they were seen in (with `k = f + 1`, at least one honest validator
/// is that far, and no `f` can push it higher).
pub(crate) fn round_reached(rounds: impl IntoIterator<Item = u32>, k: usize) -> Option<u32> {
    let mut rounds: Vec<u32> = rounds.into_iter().collect();
    if k == 0 || rounds.len() < k {
        return None;
    }
    rounds.sort_unstable_by(|a, b| b.cmp(a));
    Some(rounds[k - 1])
}
