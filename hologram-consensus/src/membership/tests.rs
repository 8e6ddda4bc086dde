use super::*;
use crate::batch::Batch;
use crate::certificate::Certificate;
use crate::vote::{Slot, Vote, VoteKind};
use hologram_receipt::KeyPair;
use proptest::prelude::*;

fn key(i: u8) -> KeyPair {
    KeyPair::from_seed([i; 32])
}

fn set_of(keys: &[KeyPair]) -> ValidatorSet {
    ValidatorSet::new(keys.iter().map(KeyPair::node_id).collect()).unwrap()
}

/// A decision of `height` naming `set`, certified by `signers`, carrying `change`.
fn decided(
    height: u64,
    set: &ValidatorSet,
    signers: &[KeyPair],
    change: Option<SetChange>,
) -> Decision {
    let batch = Batch::empty().with_set(set.fingerprint(), change);
    let slot = Slot {
        height,
        round: 0,
        kind: VoteKind::Precommit,
    };
    let value = batch.receipt();
    let votes: Vec<Vote> = signers
        .iter()
        .map(|k| Vote::sign(k, slot, Some(value)))
        .collect();
    Decision {
        batch,
        certificate: Certificate::from_votes(slot, value, &votes),
    }
}

fn change(approvers: &[KeyPair], version: u64, set: &ValidatorSet, op: SetOp) -> SetChange {
    let approvals = approvers
        .iter()
        .map(|k| SetChange::approve(k, version, set, &op))
        .collect();
    SetChange::new(version, op, approvals)
}

/// Four validators growing to five at height 3 + delay.
fn growing(delay: u64) -> (Vec<KeyPair>, ValidatorSet, ValidatorSet, Vec<Decision>) {
    let keys: Vec<KeyPair> = (1..=5).map(key).collect();
    let four = set_of(&keys[..4]);
    let five = set_of(&keys);
    let add = change(&keys[..3], 0, &four, SetOp::Add(keys[4].node_id()));
    let mut log = Vec::new();
    for h in 0..3 + delay + 2 {
        let (set, signers) = if h < 3 + delay {
            (&four, &keys[..3])
        } else {
            (&five, &keys[1..5])
        };
        let c = (h == 3).then(|| add.clone());
        log.push(decided(h, set, signers, c));
    }
    (keys, four, five, log)
}

#[test]
fn a_change_decided_at_h_takes_effect_at_h_plus_delay() {
    let (keys, four, five, log) = growing(2);
    let mut m = Membership::new(four.clone(), 2);
    for d in &log[..3] {
        m.verify(d).unwrap();
        assert_eq!(m.apply(d).unwrap(), None);
    }
    m.verify(&log[3]).unwrap();
    assert_eq!(m.apply(&log[3]).unwrap(), Some(5));
    assert_eq!((m.version(), m.newest(), m.current()), (1, &five, &four));
    assert!(m.changing() && m.is_member(&keys[4].node_id()));
    assert_eq!(m.at(4).unwrap(), &four);
    assert_eq!(m.at(5).unwrap(), &five);
    assert!(matches!(
        m.at(6),
        Err(ConsensusError::UnknownValidatorSet { height: 6, .. })
    ));
    // Height 4 is still the old set's: a certificate of the new set's
    // signers (one of them not a member yet) does not verify there.
    let early = decided(4, &five, &keys[1..5], None);
    assert!(matches!(
        m.verify(&early),
        Err(ConsensusError::UnknownValidatorSet { height: 4, .. })
    ));
    m.apply(&log[4]).unwrap();
    // From height 5 on, the old set's quorum is no quorum of the new one.
    let old_quorum = decided(5, &five, &keys[..3], None);
    assert!(matches!(
        m.verify(&old_quorum),
        Err(ConsensusError::InsufficientSignatures { .. })
    ));
    let old_named = decided(5, &four, &keys[..3], None);
    assert!(matches!(
        m.verify(&old_named),
        Err(ConsensusError::UnknownValidatorSet { .. })
    ));
    m.verify(&log[5]).unwrap();
    m.apply(&log[5]).unwrap();
    assert!(!m.changing());
    assert_eq!(m.current(), &five);
    assert!(m.apply(&log[2]).is_err(), "heights are applied in order");
}

#[test]
fn a_change_that_does_not_apply_is_ignored_by_everyone() {
    let keys: Vec<KeyPair> = (1..=5).map(key).collect();
    let four = set_of(&keys[..4]);
    let mut m = Membership::new(four.clone(), 2);
    // Approved by two of four: not a quorum.
    let weak = change(&keys[..2], 0, &four, SetOp::Add(keys[4].node_id()));
    let d = decided(0, &four, &keys[..3], Some(weak));
    m.verify(&d).unwrap();
    assert_eq!(m.apply(&d).unwrap(), None);
    assert_eq!((m.version(), m.newest()), (0, &four));
    // A replay of an applied change (its version is past).
    let add = change(&keys[..3], 0, &four, SetOp::Add(keys[4].node_id()));
    m.apply(&decided(1, &four, &keys[..3], Some(add.clone())))
        .unwrap();
    assert_eq!(m.version(), 1);
    assert_eq!(
        m.apply(&decided(2, &four, &keys[..3], Some(add))).unwrap(),
        None
    );
    assert_eq!(m.version(), 1);
}

#[test]
fn a_change_in_a_batch_with_commands_is_refused_and_ignored() {
    let keys: Vec<KeyPair> = (1..=5).map(key).collect();
    let four = set_of(&keys[..4]);
    let add = change(&keys[..3], 0, &four, SetOp::Add(keys[4].node_id()));
    let command = crate::Command::sign(&keys[0], 0, 0, b"x".to_vec()).unwrap();
    let batch = Batch::new(vec![command])
        .unwrap()
        .with_set(four.fingerprint(), Some(add));
    let slot = Slot {
        height: 0,
        round: 0,
        kind: VoteKind::Precommit,
    };
    let votes: Vec<Vote> = keys[..3]
        .iter()
        .map(|k| Vote::sign(k, slot, Some(batch.receipt())))
        .collect();
    let d = Decision {
        certificate: Certificate::from_votes(slot, batch.receipt(), &votes),
        batch,
    };
    let mut m = Membership::new(four.clone(), 2);
    assert_eq!(m.apply(&d).unwrap(), None);
    assert_eq!(m.version(), 0);
    assert!(m.links().is_empty());
    let target = decided(3, &four, &keys[..3], None);
    assert!(matches!(
        Membership::new(four, 2).verify_chain(&[d], &target),
        Err(ConsensusError::ForgedSetChangeLink { height: 0, .. })
    ));
}

#[test]
fn a_light_client_follows_a_chain_of_changes_and_refuses_forged_links() {
    let (keys, four, five, log) = growing(2);
    let genesis = Membership::new(four.clone(), 2);
    let target = &log[6];
    let light = genesis.verify_chain(&log[3..4], target).unwrap();
    assert_eq!(light.current(), &five);

    // Without the link, the target names a set the client never derived.
    assert!(matches!(
        genesis.verify_chain(&[], target),
        Err(ConsensusError::UnknownValidatorSet { height: 6, .. })
    ));

    // A forged link: the change's approvals are not the set's.
    let outsiders: Vec<KeyPair> = (20..24).map(key).collect();
    let forged_change = change(&outsiders[..3], 0, &four, SetOp::Add(keys[4].node_id()));
    let forged = decided(3, &four, &keys[..3], Some(forged_change));
    assert!(matches!(
        genesis.verify_chain(&[forged], target),
        Err(ConsensusError::ForgedSetChangeLink { height: 3, .. })
    ));
    // A forged link: its certificate is not the set's quorum.
    let mut uncertified = log[3].clone();
    uncertified.certificate.signatures.truncate(2);
    assert!(matches!(
        genesis.verify_chain(&[uncertified], target),
        Err(ConsensusError::ForgedSetChangeLink { height: 3, .. })
    ));
    // A link naming another set, a link without a change.
    let misnamed = decided(3, &five, &keys[..3], log[3].batch.set_change().cloned());
    assert!(matches!(
        genesis.verify_chain(&[misnamed], target),
        Err(ConsensusError::ForgedSetChangeLink { height: 3, .. })
    ));
    assert!(matches!(
        genesis.verify_chain(&log[2..3], target),
        Err(ConsensusError::ForgedSetChangeLink { height: 2, .. })
    ));
    // An unnamed target is not trusted by a light client.
    let mut unnamed = decided(6, &five, &keys[1..5], None);
    unnamed.batch = Batch::empty();
    assert!(genesis.verify_chain(&log[3..4], &unnamed).is_err());
    // Nothing of a refused chain was kept.
    assert_eq!(genesis, Membership::new(four, 2));
}

#[test]
fn replace_and_remove_change_the_quorum_and_the_leaders() {
    let keys: Vec<KeyPair> = (1..=5).map(key).collect();
    let four = set_of(&keys[..4]);
    let mut m = Membership::new(four.clone(), 1);
    let replace = change(
        &keys[..3],
        0,
        &four,
        SetOp::Replace {
            old: keys[3].node_id(),
            new: keys[4].node_id(),
        },
    );
    m.apply(&decided(0, &four, &keys[..3], Some(replace)))
        .unwrap();
    let replaced = m.at(1).unwrap().clone();
    assert_eq!(replaced.validators()[3], keys[4].node_id());
    let remove = change(&keys[..3], 1, &replaced, SetOp::Remove(keys[0].node_id()));
    m.apply(&decided(1, &replaced, &keys[..3], Some(remove)))
        .unwrap();
    let three = m.at(2).unwrap();
    assert_eq!(three.len(), 3);
    assert!(!three.contains(&keys[0].node_id()));
    // The removed validator's vote is not counted.
    let with_removed = decided(
        2,
        three,
        &[keys[0].clone(), keys[1].clone(), keys[2].clone()],
        None,
    );
    assert!(matches!(
        m.verify(&with_removed),
        Err(ConsensusError::NotAValidator(_))
    ));
}

#[test]
fn the_encoding_round_trips() {
    let (_, four, _, log) = growing(3);
    let mut m = Membership::new(four, 3);
    for d in &log[..5] {
        m.apply(d).unwrap();
        let back = Membership::decode(&m.encode()).unwrap();
        assert_eq!(back, m);
        assert!(back.links().is_empty(), "links are not state");
    }
    assert_eq!(m.links(), &log[3..4]);
    assert!(m.changing());
    let bytes = m.encode();
    for cut in 0..bytes.len() {
        assert!(Membership::decode(&bytes[..cut]).is_err());
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Membership::decode(&longer).is_err());
}

proptest! {
    #[test]
    fn garbage_never_decodes_into_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Membership::decode(&bytes);
    }
}
