//! Tests of the receipts, group proofs and decisions.

use super::*;
use crate::Key;
use hologram_receipt::{KeyPair, Purpose, SignatureBatch};

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
    assert!(check_certificate(&r.txn, &r.participants, std::slice::from_ref(&pa), &pa).is_err());
    assert!(check_certificate(&r.txn, &r.participants, &[pa.clone(), pa.clone()], &pa).is_err());
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
