//! A decided height as a stored object, in the hand-defined bytes the docs
//! of [`DurableLog`](super::DurableLog) give. The certificate's kind is
//! always precommit, so it is not stored; what makes a block trustworthy is
//! its certificate, checked on every read ([`Decision::verify`]).

use crate::batch::{
    Batch, BATCH_MAGIC, COMMAND_HEADER, FLAG_CHECKPOINT, FLAG_SET_CHANGE, MAX_BATCH_COMMANDS,
    NAMED_BATCH_MAGIC,
};
use crate::batch_proof::BatchProof;
use crate::certificate::Certificate;
use crate::codec::Reader;
use crate::command::{Command, MAX_COMMAND_BYTES};
use crate::membership::SetChange;
use crate::message::Decision;
use crate::snapshot::Checkpoint;
use crate::validators::MAX_VALIDATORS;
use crate::vote::{Slot, VoteKind};
use hologram_lattice::NodeId;
use hologram_receipt::{Receipt, Signature};

/// The prefix of a block object.
pub(crate) const BLOCK_MAGIC: &[u8; 17] = b"hologram block v1";

/// An error if `bytes` are a block of a newer format than this build reads.
pub(crate) fn check_version(bytes: &[u8]) -> Result<(), crate::ConsensusError> {
    super::newer_format("block", bytes, b"hologram block v", 1)
}

/// The bytes of a block holding `decision`.
pub(crate) fn encode(decision: &Decision) -> Vec<u8> {
    let c = &decision.certificate;
    let batch = decision.batch.canonical_bytes();
    let mut out = Vec::with_capacity(17 + 8 + 4 + 72 + 2 + 96 * c.signatures.len() + batch.len());
    out.extend_from_slice(BLOCK_MAGIC);
    out.extend_from_slice(&c.slot.height.to_le_bytes());
    out.extend_from_slice(&c.slot.round.to_le_bytes());
    out.extend_from_slice(&c.value.to_canonical_bytes());
    // A verified certificate has at most MAX_VALIDATORS (< 2^16) signers.
    out.extend_from_slice(&(c.signatures.len() as u16).to_le_bytes());
    for (signer, signature) in &c.signatures {
        out.extend_from_slice(signer.as_bytes());
        out.extend_from_slice(&signature.to_bytes());
    }
    out.extend_from_slice(&batch);
    out
}

/// Decodes a block's bytes; every length is bounded before it is used.
/// The certificate is not checked here.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decision, String> {
    let mut r = Reader::new(bytes);
    if r.take(BLOCK_MAGIC.len(), "magic")? != BLOCK_MAGIC {
        return Err("not a block".into());
    }
    let height = u64::from_le_bytes(r.array("height")?);
    let round = u32::from_le_bytes(r.array("round")?);
    let value =
        Receipt::from_canonical_bytes(r.take(72, "value")?).map_err(|e| format!("value: {e}"))?;
    let signers = usize::from(u16::from_le_bytes(r.array("signer count")?));
    if signers > MAX_VALIDATORS {
        return Err(format!(
            "{signers} signers, at most {MAX_VALIDATORS} possible"
        ));
    }
    let mut signatures = Vec::with_capacity(signers);
    for _ in 0..signers {
        let id = NodeId::from_bytes(r.array("signer")?);
        let signature = Signature::from_bytes(r.array("signature")?);
        signatures.push((id, signature));
    }
    let magic = r.take(BATCH_MAGIC.len(), "batch magic")?;
    let set = if magic == BATCH_MAGIC {
        None
    } else if magic == NAMED_BATCH_MAGIC {
        Some(r.array::<32>("batch validator set")?)
    } else {
        return Err("batch magic missing".into());
    };
    let count = u32::from_le_bytes(r.array("command count")?) as usize;
    if count > MAX_BATCH_COMMANDS {
        return Err(format!(
            "{count} commands, at most {MAX_BATCH_COMMANDS} allowed"
        ));
    }
    // A command takes at least its key, numbers, signature and length.
    let mut commands = Vec::with_capacity(count.min(r.rest.len() / COMMAND_HEADER));
    for _ in 0..count {
        let client = NodeId::from_bytes(r.array("command client")?);
        let sequence = u64::from_le_bytes(r.array("command sequence")?);
        let first_unanswered = u64::from_le_bytes(r.array("command first unanswered")?);
        let signature = Signature::from_bytes(r.array("command signature")?);
        let index = u16::from_le_bytes(r.array("command proof index")?);
        let of = u16::from_le_bytes(r.array("command proof count")?);
        let siblings = BatchProof::canonical_siblings_len(index, of).map_err(|e| e.to_string())?;
        let proof = BatchProof::from_canonical(index, of, r.take(siblings, "command proof")?)
            .map_err(|e| e.to_string())?;
        let len = u32::from_le_bytes(r.array("command length")?) as usize;
        if len > MAX_COMMAND_BYTES {
            return Err(format!(
                "command of {len} bytes, at most {MAX_COMMAND_BYTES} allowed"
            ));
        }
        let bytes = r.take(len, "command")?;
        // Not verified here: the certificate vouches for the batch.
        let command = Command::from_parts(
            client,
            sequence,
            first_unanswered,
            signature,
            proof,
            bytes.to_vec(),
        );
        commands.push(command.map_err(|e| e.to_string())?);
    }
    // What is left: for an unnamed batch a checkpoint or nothing; for a
    // named one the flags, then what they announce (see `Batch`).
    let (checkpoint, change) = match set {
        None if r.rest.is_empty() => (None, None),
        None => (Some(Checkpoint::read(&mut r)?), None),
        Some(_) => {
            let flags = r.take(1, "batch flags")?[0];
            if flags & !(FLAG_CHECKPOINT | FLAG_SET_CHANGE) != 0 {
                return Err(format!("unknown batch flags {flags:#x}"));
            }
            let checkpoint = if flags & FLAG_CHECKPOINT != 0 {
                Some(Checkpoint::read(&mut r)?)
            } else {
                None
            };
            let change = if flags & FLAG_SET_CHANGE != 0 {
                Some(SetChange::read(&mut r)?)
            } else {
                None
            };
            (checkpoint, change)
        }
    };
    r.finish()?;
    let mut batch = Batch::new(commands)
        .map_err(|e| e.to_string())?
        .with_checkpoint(checkpoint);
    if let Some(set) = set {
        batch = batch.with_set(set, change);
    }
    let slot = Slot {
        height,
        round,
        kind: VoteKind::Precommit,
    };
    Ok(Decision {
        batch,
        certificate: Certificate {
            slot,
            value,
            signatures,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vote::Vote;
    use hologram_receipt::KeyPair;
    use proptest::prelude::*;

    fn decision(commands: Vec<Vec<u8>>, signers: u8) -> Decision {
        // Signed at once, so that the proofs have siblings to round-trip.
        let signed = if commands.is_empty() {
            Vec::new()
        } else {
            let numbered = commands
                .into_iter()
                .enumerate()
                .map(|(i, c)| (i as u64, 0, c.into()));
            Command::sign_batch(&KeyPair::from_seed([77; 32]), numbered).unwrap()
        };
        let batch = Batch::new(signed).unwrap();
        let slot = Slot {
            height: 9,
            round: 2,
            kind: VoteKind::Precommit,
        };
        let value = batch.receipt();
        let votes: Vec<Vote> = (1..=signers)
            .map(|i| Vote::sign(&KeyPair::from_seed([i; 32]), slot, Some(value)))
            .collect();
        Decision {
            batch,
            certificate: Certificate::from_votes(slot, value, &votes),
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let d = decision(vec![b"ab".to_vec()], 1);
        let bytes = encode(&d);
        assert_eq!(&bytes[..17], BLOCK_MAGIC);
        assert_eq!(&bytes[17..25], &9u64.to_le_bytes());
        assert_eq!(&bytes[25..29], &2u32.to_le_bytes());
        assert_eq!(&bytes[29..101], &d.certificate.value.to_canonical_bytes());
        assert_eq!(&bytes[101..103], &1u16.to_le_bytes());
        assert_eq!(&bytes[199..], d.batch.canonical_bytes().as_slice());
    }

    proptest! {
        #[test]
        fn round_trips(commands in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8), signers in 0u8..5, checkpoint in any::<Option<(u64, [u8; 32])>>(), named in any::<Option<([u8; 32], Option<(u64, u8)>)>>()) {
            let mut d = decision(commands, signers);
            d.batch = d.batch.with_checkpoint(checkpoint.map(|(height, a)| Checkpoint {
                height,
                snapshot: hologram_lattice::Address::from_bytes(a),
                chain_head: hologram_receipt::ChainHead::from_bytes(a),
            }));
            if let Some((set, change)) = named {
                let change = change.map(|(version, approvers)| {
                    let keys: Vec<KeyPair> = (1..=4u8).map(|i| KeyPair::from_seed([i; 32])).collect();
                    let validators = crate::ValidatorSet::new(keys.iter().map(KeyPair::node_id).collect()).unwrap();
                    let op = crate::SetOp::Remove(keys[0].node_id());
                    let approvals = keys[..usize::from(approvers % 5)]
                        .iter()
                        .map(|k| SetChange::approve(k, version, &validators, &op))
                        .collect();
                    SetChange::new(version, op, approvals)
                });
                d.batch = d.batch.with_set(set, change);
            }
            let bytes = encode(&d);
            let canonical = d.batch.canonical_bytes();
            let signers = usize::from(u16::from_le_bytes([bytes[101], bytes[102]]));
            prop_assert_eq!(&bytes[103 + 96 * signers..], canonical.as_slice());
            prop_assert_eq!(decode(&bytes).unwrap(), d);
        }

        #[test]
        fn garbage_is_an_error_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&bytes);
            let mut framed = BLOCK_MAGIC.to_vec();
            framed.extend_from_slice(&bytes);
            let _ = decode(&framed);
        }

        #[test]
        fn truncated_or_extended_blocks_are_errors(cut in 1usize..60, extra in 1usize..4) {
            let bytes = encode(&decision(vec![b"command".to_vec(), b"x".to_vec()], 3));
            let cut = cut.min(bytes.len());
            prop_assert!(decode(&bytes[..bytes.len() - cut]).is_err());
            let mut longer = bytes.clone();
            longer.extend(std::iter::repeat_n(0u8, extra));
            prop_assert!(decode(&longer).is_err());
        }
    }
}
