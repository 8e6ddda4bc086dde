//! What replicas send each other, and its bounded wire format.
//!
//! Messages travel as postcard (serde) under
//! [`Protocol::CONSENSUS`](hologram_lattice::transport::Protocol::CONSENSUS).
//! The wire format is not what is signed: signatures cover the hand-defined
//! canonical bytes of [`vote`](crate::vote) and the batch receipt. A decoder
//! refuses more than [`MAX_MESSAGE_BYTES`] before reading and re-checks every
//! bound serde does not (commands per batch, signatures per certificate).

use crate::batch::{Batch, MAX_BATCH_BYTES, MAX_BATCH_COMMANDS};
use crate::certificate::Certificate;
use crate::command::Command;
use crate::validators::MAX_VALIDATORS;
use crate::vote::{SignedHeader, Vote, VoteKind};
use crate::ConsensusError;
use crate::ValidatorSet;
use serde::{Deserialize, Serialize};

/// The largest encoded message: a full batch plus two certificates and headers.
pub const MAX_MESSAGE_BYTES: usize =
    MAX_BATCH_BYTES + MAX_BATCH_COMMANDS * COMMAND_OVERHEAD + 4 * MAX_VALIDATORS * 100 + 4096;

/// A command's encoded size besides its payload: client key (32), signature
/// (64) and the payload's length (at most 3 varint bytes).
pub(crate) const COMMAND_OVERHEAD: usize = 32 + 64 + 3;

/// A leader's proposal: the signed header, the batch it names, and, when it
/// re-proposes a value locked in an earlier round, the polka that justifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The signed header.
    pub header: SignedHeader,
    /// The proposed batch (its receipt must be `header.value`).
    pub batch: Batch,
    /// The prevote certificate of `header.pol_round`, when that is set.
    pub proof_of_lock: Option<Certificate>,
}

/// A decided height: the batch and the commit certificate naming its receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The decided batch.
    pub batch: Batch,
    /// The commit certificate (a quorum of precommits for the batch's receipt).
    pub certificate: Certificate,
}

impl Decision {
    /// The decided height.
    pub fn height(&self) -> u64 {
        self.certificate.height()
    }

    /// Checks the decision against `validators`: the certificate is a commit
    /// certificate that verifies, and it names the receipt of the batch.
    pub fn verify(&self, validators: &ValidatorSet) -> Result<(), ConsensusError> {
        self.batch.check_bounds()?;
        self.certificate
            .verify_kind(VoteKind::Precommit, validators)?;
        self.batch.check_names(&self.certificate.value)
    }
}

/// A message between replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsensusMessage {
    /// A leader's proposal.
    Proposal(Box<Proposal>),
    /// A prevote or precommit.
    Vote(Vote),
    /// A decided height (catch-up: pushed to a lagging peer or sent on request).
    Decision(Box<Decision>),
    /// "Send me the decisions from this height on."
    SyncRequest {
        /// The first height wanted.
        from: u64,
    },
    /// Commands for the mempools of the other replicas.
    Commands(Vec<Command>),
}

impl ConsensusMessage {
    /// The postcard encoding.
    pub fn encode(&self) -> Result<Vec<u8>, ConsensusError> {
        postcard::to_allocvec(self).map_err(|e| ConsensusError::Decode {
            what: "consensus message (encoding)",
            reason: e.to_string(),
        })
    }

    /// Decodes exactly `bytes`: refuses more than [`MAX_MESSAGE_BYTES`]
    /// unread, malformed input, trailing bytes, and values out of bounds.
    pub fn decode(bytes: &[u8]) -> Result<Self, ConsensusError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(ConsensusError::TooLarge {
                what: "consensus message",
                size: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        let (message, rest) =
            postcard::take_from_bytes::<Self>(bytes).map_err(|e| ConsensusError::Decode {
                what: "consensus message",
                reason: e.to_string(),
            })?;
        if !rest.is_empty() {
            return Err(ConsensusError::Decode {
                what: "consensus message",
                reason: format!("{} trailing bytes", rest.len()),
            });
        }
        message.check_bounds()?;
        Ok(message)
    }

    /// Checks the bounds serde does not.
    pub fn check_bounds(&self) -> Result<(), ConsensusError> {
        match self {
            ConsensusMessage::Proposal(p) => {
                p.batch.check_bounds()?;
                if let Some(c) = &p.proof_of_lock {
                    check_certificate_size(c)?;
                }
                Ok(())
            }
            ConsensusMessage::Decision(d) => {
                d.batch.check_bounds()?;
                check_certificate_size(&d.certificate)
            }
            ConsensusMessage::Commands(commands) => Batch::new(commands.clone()).map(|_| ()),
            ConsensusMessage::Vote(_) | ConsensusMessage::SyncRequest { .. } => Ok(()),
        }
    }
}

pub(crate) fn check_certificate_size(c: &Certificate) -> Result<(), ConsensusError> {
    if c.signatures.len() > MAX_VALIDATORS {
        return Err(ConsensusError::TooLarge {
            what: "certificate (signatures)",
            size: c.signatures.len(),
            max: MAX_VALIDATORS,
        });
    }
    Ok(())
}
