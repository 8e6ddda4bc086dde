//! What replicas send each other, and its bounded wire format.
//!
//! Messages travel as postcard (serde) under
//! [`crate::CONSENSUS_PROTOCOL`](crate::CONSENSUS_PROTOCOL).
//! The wire format is not what is signed: signatures cover the hand-defined
//! canonical bytes of [`vote`](crate::vote) and the batch receipt. A decoder
//! refuses more than [`MAX_MESSAGE_BYTES`] before reading and re-checks every
//! bound serde does not (commands per batch, signatures per certificate).

use crate::batch::{Batch, MAX_BATCH_BYTES, MAX_BATCH_COMMANDS};
use crate::certificate::Certificate;
use crate::command::Command;
use crate::snapshot::MAX_SNAPSHOT_PART_BYTES;
use crate::validators::MAX_VALIDATORS;
use crate::vote::{SignedHeader, Vote, VoteKind};
use crate::ConsensusError;
use crate::ValidatorSet;
use hologram_lattice::wire::{self, Wire};
use hologram_lattice::Address;
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

impl Proposal {
    /// Checks the bounds serde does not (the batch's, the proof of lock's
    /// signature count).
    pub(crate) fn check_bounds(&self) -> Result<(), ConsensusError> {
        self.batch.check_bounds()?;
        self.proof_of_lock
            .as_ref()
            .map_or(Ok(()), check_certificate_size)
    }
}

impl Decision {
    /// Checks the bounds serde does not (the batch's, the certificate's
    /// signature count).
    pub(crate) fn check_bounds(&self) -> Result<(), ConsensusError> {
        self.batch.check_bounds()?;
        check_certificate_size(&self.certificate)
    }

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
    /// State sync: "my log no longer holds the heights you asked for; it
    /// starts at the snapshot this decision's batch names" (the newest
    /// certified [`Checkpoint`](crate::Checkpoint) the sender keeps).
    ///
    /// With it, the sender's newest set-change links
    /// ([`Membership::links`](crate::Membership::links), at most
    /// [`MAX_SET_CHANGE_LINKS`](crate::MAX_SET_CHANGE_LINKS)): a node
    /// behind a change checks them as a light client before it trusts the
    /// offer.
    SnapshotOffer(Box<Decision>, Vec<Decision>),
    /// State sync: "send me part `part` of the snapshot at `snapshot`" (0
    /// its manifest, `i + 1` its chunk `i`; see
    /// [`SnapshotParts`](crate::SnapshotParts)).
    SnapshotRequest {
        /// The snapshot's address.
        snapshot: Address,
        /// The part wanted.
        part: u32,
    },
    /// State sync: one part of a snapshot, at most
    /// [`MAX_SNAPSHOT_PART_BYTES`] bytes, verified by the receiver against
    /// the address its certified checkpoint or manifest names.
    SnapshotPart {
        /// The snapshot's address.
        snapshot: Address,
        /// Which part.
        part: u32,
        /// Its bytes.
        bytes: Vec<u8>,
    },
}

/// Decoded from exactly one buffer ([`Wire::from_wire`]: more than
/// [`MAX_MESSAGE_BYTES`] refused unread, malformed input and trailing bytes
/// refused), then checked for the bounds serde does not see.
impl Wire for ConsensusMessage {
    const NAME: &'static str = "consensus message";
    const MAX_WIRE_LEN: usize = MAX_MESSAGE_BYTES;
    type Error = ConsensusError;

    fn check_decoded(&self) -> Result<(), ConsensusError> {
        match self {
            ConsensusMessage::Proposal(p) => p.check_bounds(),
            ConsensusMessage::Decision(d) => d.check_bounds(),
            ConsensusMessage::SnapshotOffer(d, links) => {
                wire::check_count(
                    "set-change links",
                    links.len(),
                    crate::membership::MAX_SET_CHANGE_LINKS,
                )?;
                for link in links {
                    link.check_bounds()?;
                    crate::membership::travels_alone(link)?;
                }
                d.check_bounds()
            }
            ConsensusMessage::SnapshotPart { bytes, .. } => Ok(wire::check_count(
                "snapshot part bytes",
                bytes.len(),
                MAX_SNAPSHOT_PART_BYTES,
            )?),
            ConsensusMessage::Commands(commands) => Batch::new(commands.clone()).map(|_| ()),
            ConsensusMessage::Vote(_)
            | ConsensusMessage::SyncRequest { .. }
            | ConsensusMessage::SnapshotRequest { .. } => Ok(()),
        }
    }
}

/// Refuses a decoded certificate with more signatures than validators.
pub(crate) fn check_certificate_size(c: &Certificate) -> Result<(), ConsensusError> {
    let signatures = c.signatures.len();
    Ok(wire::check_count(
        "certificate signatures",
        signatures,
        MAX_VALIDATORS,
    )?)
}
