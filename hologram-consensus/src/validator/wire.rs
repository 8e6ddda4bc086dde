//! Requests to a remote validator and its answers, with bounded decoding.
//!
//! Like [`ConsensusMessage`](crate::ConsensusMessage), these travel as
//! postcard; what is signed inside them (votes, headers, certificates) has
//! hand-defined canonical bytes.

use crate::certificate::Certificate;
use crate::message::{check_certificate_size, Decision, Proposal, MAX_MESSAGE_BYTES};
use crate::validator::HeightStatus;
use crate::vote::Vote;
use crate::ConsensusError;
use hologram_lattice::wire::Wire;
use serde::{Deserialize, Serialize};

/// What [`ReceiptConsensus`](crate::ReceiptConsensus) asks a validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValidatorRequest {
    /// [`Validator::prepare_vote`](crate::Validator::prepare_vote).
    Prepare(Box<Proposal>),
    /// [`Validator::commit`](crate::Validator::commit).
    Commit(Box<Proposal>, Box<Certificate>),
    /// [`Validator::finalize`](crate::Validator::finalize).
    Finalize(Box<Decision>),
    /// [`Validator::status`](crate::Validator::status) of a height.
    Status(u64),
}

/// A validator's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValidatorResponse {
    /// The signed vote asked for.
    Vote(Vote),
    /// The decision was taken.
    Finalized,
    /// What the validator knows of the height asked about.
    Status(Box<HeightStatus>),
    /// The validator refused, and why.
    Refused(String),
}

/// Decoded from exactly one buffer ([`Wire::from_wire`], at most
/// [`MAX_MESSAGE_BYTES`]), with the bounds of the replica messages carrying
/// the same values.
impl Wire for ValidatorRequest {
    const NAME: &'static str = "validator request";
    const MAX_WIRE_LEN: usize = MAX_MESSAGE_BYTES;
    type Error = ConsensusError;

    fn check_decoded(&self) -> Result<(), ConsensusError> {
        match self {
            ValidatorRequest::Prepare(p) => p.check_bounds(),
            ValidatorRequest::Commit(p, c) => p.check_bounds().and(check_certificate_size(c)),
            ValidatorRequest::Finalize(d) => d.check_bounds(),
            ValidatorRequest::Status(_) => Ok(()),
        }
    }
}

/// Decoded as a [`ValidatorRequest`] is.
impl Wire for ValidatorResponse {
    const NAME: &'static str = "validator response";
    const MAX_WIRE_LEN: usize = MAX_MESSAGE_BYTES;
    type Error = ConsensusError;

    fn check_decoded(&self) -> Result<(), ConsensusError> {
        let ValidatorResponse::Status(s) = self else {
            return Ok(());
        };
        if let Some(d) = &s.decided {
            d.check_bounds()?;
        }
        match &s.locked {
            Some(lock) => lock
                .batch
                .check_bounds()
                .and(check_certificate_size(&lock.proof)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batch;
    use crate::command::Command;
    use crate::replica::Lock;
    use crate::vote::{SignedHeader, Slot, VoteKind};
    use hologram_lattice::wire::WireError;
    use hologram_receipt::KeyPair;
    use proptest::prelude::*;

    fn proposal(bytes: Vec<u8>) -> Proposal {
        let keys = KeyPair::from_seed([3; 32]);
        let batch = Batch::new(vec![Command::sign(&keys, 0, 0, bytes).unwrap()]).unwrap();
        Proposal {
            header: SignedHeader::sign(&keys, 4, 1, None, batch.receipt()),
            batch,
            proof_of_lock: None,
        }
    }

    proptest! {
        #[test]
        fn requests_and_responses_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64), round in any::<u32>()) {
            let p = proposal(bytes);
            let keys = KeyPair::from_seed([5; 32]);
            let slot = Slot { height: 4, round, kind: VoteKind::Prevote };
            let vote = Vote::sign(&keys, slot, Some(p.header.value));
            let polka = Certificate::from_votes(slot, p.header.value, [&vote]);
            for r in [
                ValidatorRequest::Prepare(Box::new(p.clone())),
                ValidatorRequest::Commit(Box::new(p.clone()), Box::new(polka.clone())),
                ValidatorRequest::Finalize(Box::new(Decision { batch: p.batch.clone(), certificate: polka.clone() })),
            ] {
                prop_assert_eq!(ValidatorRequest::from_wire(&r.to_wire().unwrap()).unwrap(), r);
            }
            let status = HeightStatus { next_height: 4, decided: None, locked: Some(Lock { batch: p.batch.clone(), proof: polka.clone() }), last_round: Some(round) };
            prop_assert_eq!(ValidatorRequest::from_wire(&ValidatorRequest::Status(round as u64).to_wire().unwrap()).unwrap(), ValidatorRequest::Status(round as u64));
            for r in [ValidatorResponse::Vote(vote), ValidatorResponse::Finalized, ValidatorResponse::Refused("no".into()), ValidatorResponse::Status(Box::new(status))] {
                prop_assert_eq!(ValidatorResponse::from_wire(&r.to_wire().unwrap()).unwrap(), r);
            }
        }

        #[test]
        fn garbage_is_an_error_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ValidatorRequest::from_wire(&bytes);
            let _ = ValidatorResponse::from_wire(&bytes);
        }
    }

    #[test]
    fn trailing_and_oversized_input_is_refused() {
        let mut bytes = ValidatorResponse::Finalized.to_wire().unwrap();
        bytes.push(0);
        assert!(matches!(
            ValidatorResponse::from_wire(&bytes),
            Err(ConsensusError::Wire(WireError::Trailing { extra: 1, .. }))
        ));
        let huge = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            ValidatorRequest::from_wire(&huge),
            Err(ConsensusError::Wire(WireError::TooLarge {
                max: MAX_MESSAGE_BYTES,
                ..
            }))
        ));
    }
}
