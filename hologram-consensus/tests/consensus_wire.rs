//! The wire decoder: garbage in gives an error (never a panic), every
//! message round-trips, and oversized input is refused before reading.

use hologram_consensus::MAX_MESSAGE_BYTES;
use hologram_consensus::{
    Batch, Certificate, Command, ConsensusError, ConsensusMessage, Decision, Proposal,
    SignedHeader, Slot, Vote, VoteKind,
};
use hologram_consensus::{Checkpoint, MAX_SNAPSHOT_PART_BYTES};
use hologram_lattice::wire::Wire;
use hologram_lattice::wire::WireError;
use hologram_lattice::Address;
use hologram_receipt::{ChainHead, KeyPair};
use proptest::prelude::*;

fn slot(height: u64, round: u32, precommit: bool) -> Slot {
    Slot {
        height,
        round,
        kind: if precommit {
            VoteKind::Precommit
        } else {
            VoteKind::Prevote
        },
    }
}

fn message(kind: u8, height: u64, round: u32, payloads: Vec<Vec<u8>>) -> ConsensusMessage {
    let keys = KeyPair::from_seed([height as u8; 32]);
    let commands: Vec<Command> = payloads
        .into_iter()
        .enumerate()
        .map(|(i, p)| Command::sign(&keys, i as u64, 0, p).expect("small"))
        .collect();
    let batch = Batch::new(commands.clone()).expect("small");
    let value = batch.receipt();
    let vote = Vote::sign(&keys, slot(height, round, true), Some(value));
    let checkpoint = Checkpoint {
        height,
        snapshot: Address::of(&height.to_le_bytes()),
        chain_head: ChainHead::from_bytes([round as u8; 32]),
    };
    match kind % 8 {
        0 => ConsensusMessage::Vote(vote),
        1 => ConsensusMessage::Proposal(Box::new(Proposal {
            header: SignedHeader::sign(&keys, height, round, None, value),
            batch,
            proof_of_lock: None,
        })),
        2 => ConsensusMessage::Decision(Box::new(Decision {
            certificate: Certificate::from_votes(vote.slot, value, &[vote]),
            batch,
        })),
        3 => ConsensusMessage::SyncRequest { from: height },
        5 => {
            let batch = batch.with_checkpoint(Some(checkpoint));
            let value = batch.receipt();
            let vote = Vote::sign(&keys, slot(height, round, true), Some(value));
            ConsensusMessage::SnapshotOffer(
                Box::new(Decision {
                    certificate: Certificate::from_votes(vote.slot, value, &[vote]),
                    batch,
                }),
                Vec::new(),
            )
        }
        6 => ConsensusMessage::SnapshotRequest {
            snapshot: checkpoint.snapshot,
            part: round,
        },
        7 => ConsensusMessage::SnapshotPart {
            snapshot: checkpoint.snapshot,
            part: round,
            bytes: commands.iter().flat_map(|c| c.bytes().to_vec()).collect(),
        },
        _ => ConsensusMessage::Commands(commands),
    }
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = ConsensusMessage::from_wire(&bytes);
    }

    #[test]
    fn messages_round_trip(
        kind in 0u8..8,
        height in any::<u64>(),
        round in any::<u32>(),
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
    ) {
        let m = message(kind, height, round, payloads);
        let bytes = m.to_wire().unwrap();
        prop_assert_eq!(ConsensusMessage::from_wire(&bytes).unwrap(), m);
    }

    #[test]
    fn flipped_bits_give_errors_or_other_messages(
        kind in 0u8..8,
        height in any::<u64>(),
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 0..4),
        bit in any::<usize>(),
    ) {
        let m = message(kind, height, 1, payloads);
        let mut bytes = m.to_wire().unwrap();
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        // Either an error or some message; a flipped vote never verifies.
        if let Ok(ConsensusMessage::Vote(v)) = ConsensusMessage::from_wire(&bytes) {
            if let ConsensusMessage::Vote(orig) = &m {
                if v != *orig {
                    prop_assert!(v.verify_signature().is_err());
                }
            }
        }
    }

    #[test]
    fn trailing_bytes_are_refused(kind in 0u8..8, extra in 1usize..8) {
        let m = message(kind, 3, 0, vec![b"x".to_vec()]);
        let mut bytes = m.to_wire().unwrap();
        bytes.extend(std::iter::repeat_n(0u8, extra));
        prop_assert!(ConsensusMessage::from_wire(&bytes).is_err());
    }
}

#[test]
fn oversized_input_is_refused_unread() {
    let bytes = vec![0u8; MAX_MESSAGE_BYTES + 1];
    assert!(matches!(
        ConsensusMessage::from_wire(&bytes),
        Err(ConsensusError::Wire(WireError::TooLarge {
            max: MAX_MESSAGE_BYTES,
            ..
        }))
    ));
}

#[test]
fn an_oversized_command_inside_a_message_is_refused() {
    // A Commands message whose one command is larger than a command may be.
    let big = vec![7u8; hologram_consensus::MAX_COMMAND_BYTES + 1];
    let mut bytes = vec![4u8, 1]; // variant 4 (Commands), one element
    let mut len = big.len();
    while len >= 0x80 {
        bytes.push((len as u8) | 0x80);
        len >>= 7;
    }
    bytes.push(len as u8);
    bytes.extend_from_slice(&big);
    assert!(ConsensusMessage::from_wire(&bytes).is_err());
}

#[test]
fn a_snapshot_part_over_its_bound_is_refused() {
    let part = |len: usize| ConsensusMessage::SnapshotPart {
        snapshot: Address::of(b"s"),
        part: 1,
        bytes: vec![7; len],
    };
    let ok = part(MAX_SNAPSHOT_PART_BYTES).to_wire().unwrap();
    assert!(ConsensusMessage::from_wire(&ok).is_ok());
    let over = part(MAX_SNAPSHOT_PART_BYTES + 1).to_wire().unwrap();
    assert!(ConsensusMessage::from_wire(&over).is_err());
}
