//! The snapshot codec, its parts and their verification.

use super::fetch::{Fetched, SnapshotFetch};
use super::*;
use crate::batch::Batch;
use crate::certificate::Certificate;
use crate::command::Command;
use crate::message::Decision;
use crate::vote::{Slot, VoteKind};
use hologram_cam::ChunkParams;
use hologram_lattice::Address;
use hologram_receipt::{KeyPair, Receipt};
use proptest::prelude::*;

const LIMITS: SessionLimits = SessionLimits {
    max_sessions: 4,
    window: 8,
    expiry_heights: 50,
};

/// A snapshot whose session table saw `log` (client, sequence) and whose
/// machine is `machine`.
fn snapshot(log: &[(u8, u64)], machine: Vec<u8>, height: u64) -> Snapshot<String> {
    let mut sessions = SessionTable::new(LIMITS);
    let mut chain = ReceiptChain::new();
    for (h, &(client, sequence)) in log.iter().enumerate() {
        let c = Command::sign(&KeyPair::from_seed([client; 32]), sequence, 0, vec![]).unwrap();
        if sessions.admit(h as u64, &c) == crate::Verdict::Apply {
            sessions.answer(&c, format!("answer {sequence}"));
            chain.extend(&Receipt::from_bytes(&[client]));
        }
    }
    let set = crate::ValidatorSet::new(vec![KeyPair::from_seed([7; 32]).node_id()]).unwrap();
    Snapshot {
        height,
        membership: crate::Membership::new(set, 2).starting_at(height),
        chain,
        sessions,
        machine,
    }
}

proptest! {
    #[test]
    fn snapshots_round_trip(
        log in proptest::collection::vec((0u8..6, 0u64..10), 0..40),
        machine in proptest::collection::vec(any::<u8>(), 0..200),
        height in any::<u64>(),
    ) {
        let s = snapshot(&log, machine, height);
        let bytes = s.encode().unwrap();
        let back = Snapshot::<String>::decode(&bytes, LIMITS).unwrap();
        prop_assert_eq!(back.encode().unwrap(), bytes);
        prop_assert_eq!((back.height, &back.membership, back.chain), (s.height, &s.membership, s.chain));
        prop_assert_eq!(back.machine, s.machine);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Snapshot::<String>::decode(&bytes, LIMITS);
        let mut framed = SNAPSHOT_MAGIC.to_vec();
        framed.extend_from_slice(&bytes);
        let _ = Snapshot::<String>::decode(&framed, LIMITS);
    }

    #[test]
    fn cut_extended_or_flipped_snapshots_are_refused_or_reencode_exactly(
        log in proptest::collection::vec((0u8..6, 0u64..10), 1..30),
        cut in 1usize..64,
        flip in any::<usize>(),
    ) {
        let bytes = snapshot(&log, b"machine".to_vec(), 9).encode().unwrap();
        let cut = cut.min(bytes.len());
        prop_assert!(matches!(
            Snapshot::<String>::decode(&bytes[..bytes.len() - cut], LIMITS),
            Err(crate::ConsensusError::SnapshotMalformed(_))
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(Snapshot::<String>::decode(&longer, LIMITS).is_err());
        let mut flipped = bytes.clone();
        let i = flip % flipped.len();
        flipped[i] ^= 0x01;
        if let Ok(s) = Snapshot::<String>::decode(&flipped, LIMITS) {
            prop_assert_eq!(s.encode().unwrap(), flipped);
        }
    }

    /// Any bytes split into parts and fetched back part by part, in order,
    /// are the same bytes; the address is the manifest's.
    #[test]
    fn parts_fetch_back_to_the_same_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let parts = SnapshotParts::split(&bytes, small_chunks()).unwrap();
        prop_assert_eq!(parts.bytes(), bytes.clone());
        let mut fetch = fetch_of(&parts);
        let mut done = None;
        for i in 0..parts.len() {
            let part = parts.part(i).unwrap();
            match fetch.accept(parts.address(), i, part.data()).unwrap().unwrap() {
                Fetched::More => prop_assert!(i + 1 < parts.len()),
                Fetched::Done(b) => done = Some(b),
            }
        }
        prop_assert_eq!(done, Some(bytes));
    }
}

fn small_chunks() -> ChunkParams {
    ChunkParams {
        min: 64,
        avg: 256,
        max: 1024,
    }
}

fn fetch_of(parts: &SnapshotParts) -> SnapshotFetch {
    let checkpoint = Checkpoint {
        height: 10,
        snapshot: parts.address(),
        chain_head: hologram_receipt::ChainHead::GENESIS,
    };
    let batch = Batch::empty().with_checkpoint(Some(checkpoint));
    let decision = Decision {
        certificate: Certificate {
            slot: Slot {
                height: 12,
                round: 0,
                kind: VoteKind::Precommit,
            },
            value: batch.receipt(),
            signatures: Vec::new(),
        },
        batch,
    };
    SnapshotFetch::new(decision, checkpoint, 0)
}

#[test]
fn bytes_that_do_not_match_the_address_are_refused_and_nothing_is_kept() {
    let bytes: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 251) as u8).collect();
    let parts = SnapshotParts::split(&bytes, small_chunks()).unwrap();
    assert!(parts.len() > 3, "several chunks");
    let mut fetch = fetch_of(&parts);
    // A manifest of other bytes: not the certified address.
    let other = SnapshotParts::split(b"another snapshot", small_chunks()).unwrap();
    let lie = fetch.accept(parts.address(), 0, other.part(0).unwrap().data());
    assert!(matches!(
        lie,
        Some(Err(crate::ConsensusError::SnapshotAddress { part: 0, expected, .. })) if expected == parts.address()
    ));
    assert_eq!(fetch.next, 0, "nothing kept");
    // Parts of another snapshot, or not the one wanted, are not taken.
    assert!(fetch
        .accept(other.address(), 0, other.part(0).unwrap().data())
        .is_none());
    assert!(fetch
        .accept(parts.address(), 2, parts.part(2).unwrap().data())
        .is_none());
    assert!(matches!(
        fetch.accept(parts.address(), 0, parts.part(0).unwrap().data()),
        Some(Ok(Fetched::More))
    ));
    // A chunk of the right length but other bytes.
    let mut forged = parts.part(1).unwrap().data().to_vec();
    forged[0] ^= 1;
    assert!(matches!(
        fetch.accept(parts.address(), 1, &forged),
        Some(Err(crate::ConsensusError::SnapshotAddress { part: 1, .. }))
    ));
    assert_eq!(fetch.next, 1, "nothing kept");
}

#[test]
fn a_truncated_chunk_is_refused_with_its_lengths() {
    let bytes: Vec<u8> = (0..4000u32).map(|i| (i * 13 % 241) as u8).collect();
    let parts = SnapshotParts::split(&bytes, small_chunks()).unwrap();
    let mut fetch = fetch_of(&parts);
    fetch
        .accept(parts.address(), 0, parts.part(0).unwrap().data())
        .unwrap()
        .unwrap();
    let chunk = parts.part(1).unwrap().data();
    let cut = &chunk[..chunk.len() - 1];
    let expected = chunk.len() as u64;
    assert!(matches!(
        fetch.accept(parts.address(), 1, cut),
        Some(Err(crate::ConsensusError::SnapshotChunkLength { part: 1, expected: e, actual: a }))
            if e == expected && a == expected - 1
    ));
    assert_eq!(fetch.next, 1, "nothing kept");
    assert!(matches!(
        fetch.accept(parts.address(), 1, chunk),
        Some(Ok(Fetched::More))
    ));
}

#[test]
fn chunks_larger_than_a_part_are_refused() {
    let params = ChunkParams {
        min: 1 << 20,
        avg: 1 << 21,
        max: 1 << 22,
    };
    assert!(SnapshotParts::split(b"x", params).is_err());
    assert!(
        Address::of(b"x")
            != SnapshotParts::split(b"x", small_chunks())
                .unwrap()
                .address()
    );
}
