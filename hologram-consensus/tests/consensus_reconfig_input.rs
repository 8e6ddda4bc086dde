//! Bad input across a validator-set change, each refused with a specific
//! error and nothing applied: a certificate under a set the node does not
//! know in force (a replicated state machine, a durable log), a chain of
//! set changes with a forged link (a light client), and a snapshot of
//! another group. Also: a restored snapshot brings its validator sets (and
//! the change decided before it, not in force yet) with it.

mod support;

use hologram_cam::MemoryStore;
use hologram_consensus::{
    Batch, Certificate, ConsensusError, Decision, DurableLog, Membership, ReplicatedStateMachine,
    SetChange, SetOp, Slot, ValidatorSet, Vote, VoteKind,
};
use hologram_receipt::KeyPair;
use std::sync::Arc;
use support::decided::{commands, Registers};
use support::unbounded_window;

const DELAY: u64 = 2;

fn keys() -> Vec<KeyPair> {
    (1..=5u8).map(|i| KeyPair::from_seed([i; 32])).collect()
}

fn set_of(keys: &[KeyPair]) -> ValidatorSet {
    ValidatorSet::new(keys.iter().map(KeyPair::node_id).collect()).expect("distinct")
}

/// A decided height naming `set`, certified by `signers`, with a command
/// and maybe a set change.
fn decided(
    height: u64,
    set: &ValidatorSet,
    signers: &[KeyPair],
    change: Option<SetChange>,
) -> Decision {
    // A change travels in a batch without commands.
    let n = if change.is_some() { 0 } else { 1 };
    let batch = Batch::new(commands(&format!("h{height}-"), n))
        .expect("small")
        .with_set(set.fingerprint(), change);
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

/// Four validators; a fifth added by the batch of height 1, in force from
/// height 1 + DELAY = 3. Heights 0..6.
fn log() -> (Vec<KeyPair>, ValidatorSet, ValidatorSet, Vec<Decision>) {
    let keys = keys();
    let four = set_of(&keys[..4]);
    let five = set_of(&keys);
    let op = SetOp::Add(keys[4].node_id());
    let approvals = keys[..3]
        .iter()
        .map(|k| SetChange::approve(k, 0, &four, &op))
        .collect();
    let add = SetChange::new(0, op, approvals);
    let log = (0..6)
        .map(|h| {
            if h < 3 {
                decided(h, &four, &keys[..3], (h == 1).then(|| add.clone()))
            } else {
                decided(h, &five, &keys[1..5], None)
            }
        })
        .collect();
    (keys, four, five, log)
}

fn machine(genesis: &ValidatorSet) -> ReplicatedStateMachine<Registers> {
    ReplicatedStateMachine::with_limits(
        Registers::default(),
        Membership::new(genesis.clone(), DELAY),
        unbounded_window(),
    )
}

#[test]
fn a_machine_follows_the_change_and_refuses_certificates_of_a_set_not_in_force() {
    let (keys, four, five, log) = log();
    let mut m = machine(&four);
    m.apply_all(&log[..3]).expect("the old set's heights");
    assert_eq!(m.membership().current(), &five);
    // Height 3 certified by the old set's quorum, naming the old set: the
    // set in force is the new one. Refused, nothing applied.
    let stale = decided(3, &four, &keys[..3], None);
    let before = (m.next_height(), m.state().clone(), *m.receipt_chain());
    assert!(matches!(
        m.apply_decision(&stale),
        Err(ConsensusError::UnknownValidatorSet { height: 3, .. })
    ));
    // Naming the new set, but signed by the old quorum (one of them not in
    // the new set's quorum count): too few of the new set.
    let relabelled = decided(3, &five, &keys[..3], None);
    assert!(matches!(
        m.apply_decision(&relabelled),
        Err(ConsensusError::InsufficientSignatures { .. })
    ));
    // A set nobody knows.
    let strangers: Vec<KeyPair> = (20..24u8).map(|i| KeyPair::from_seed([i; 32])).collect();
    let unknown = decided(3, &set_of(&strangers), &strangers[..3], None);
    assert!(matches!(
        m.apply_decision(&unknown),
        Err(ConsensusError::UnknownValidatorSet { height: 3, .. })
    ));
    assert_eq!(
        (m.next_height(), m.state().clone(), *m.receipt_chain()),
        before
    );
    m.apply_all(&log[3..]).expect("the new set's heights");
    assert_eq!(m.next_height(), 6);
}

#[test]
fn a_durable_log_checks_each_block_under_its_set_and_refuses_the_rest() {
    let (keys, four, _, log) = log();
    let store = Arc::new(MemoryStore::new());
    let genesis = Membership::new(four.clone(), DELAY);
    futures::executor::block_on(async {
        let (mut durable, _) = DurableLog::open(store.clone(), genesis.clone())
            .await
            .expect("open");
        durable.append(&log[..4]).await.expect("append");
        // Height 4 under the old set: refused, nothing stored.
        let stale = decided(4, &four, &keys[..3], None);
        assert!(matches!(
            durable.append(&[stale]).await,
            Err(ConsensusError::UnknownValidatorSet { height: 4, .. })
        ));
        assert_eq!(durable.len(), 4);
        durable.append(&log[4..]).await.expect("append");
        // Read back across the change, each block under its own set.
        assert_eq!(durable.read(0, 6, usize::MAX).await.expect("read"), log);
        // Reopened: every block verified under the set in force at its
        // height, the sets rebuilt.
        let (reopened, recovered) = DurableLog::open(store, genesis).await.expect("reopen");
        assert!(recovered.rejected.is_empty(), "{:?}", recovered.rejected);
        assert_eq!(reopened.len(), 6);
        assert_eq!(reopened.validators().len(), 5);
        assert_eq!(recovered.membership.expect("sets").version(), 1);
    });
}

#[test]
fn a_light_client_refuses_a_chain_with_a_forged_link_and_keeps_nothing() {
    let (keys, four, five, log) = log();
    let genesis = Membership::new(four.clone(), DELAY);
    // The honest chain: one link, then any later certificate.
    let light = genesis.verify_chain(&log[1..2], &log[5]).expect("honest");
    assert_eq!(light.current(), &five);
    // A forged link: a change "approved" by keys that are not validators,
    // adding a stranger, certified by a forged quorum.
    let strangers: Vec<KeyPair> = (20..24u8).map(|i| KeyPair::from_seed([i; 32])).collect();
    let op = SetOp::Add(strangers[0].node_id());
    let approvals = strangers
        .iter()
        .map(|k| SetChange::approve(k, 0, &four, &op))
        .collect();
    let forged = decided(
        1,
        &four,
        &strangers[..3],
        Some(SetChange::new(0, op, approvals)),
    );
    let target = decided(5, &set_of(&strangers), &strangers[..3], None);
    assert!(matches!(
        genesis.verify_chain(std::slice::from_ref(&forged), &target),
        Err(ConsensusError::ForgedSetChangeLink { height: 1, .. })
    ));
    // The real validators' certificate on a change the set never approved.
    let mut swapped = log[1].clone();
    swapped.batch = swapped
        .batch
        .with_set(four.fingerprint(), forged.batch.set_change().cloned());
    assert!(matches!(
        genesis.verify_chain(&[swapped], &log[5]),
        Err(ConsensusError::ForgedSetChangeLink { height: 1, .. })
    ));
    // Without the link, the target is under a set never derived.
    assert!(matches!(
        genesis.verify_chain(&[], &log[5]),
        Err(ConsensusError::UnknownValidatorSet { height: 5, .. })
    ));
    assert_eq!(genesis, Membership::new(four, DELAY), "nothing kept");
    let _ = keys;
}

#[test]
fn a_restored_snapshot_brings_its_sets_and_a_pending_change() {
    let (_, four, five, log) = log();
    let mut source = machine(&four);
    // Snapshot at height 2: the change is decided (at 1) but in force at 3.
    source.apply_all(&log[..2]).expect("apply");
    assert!(source.membership().changing());
    let bytes = source.snapshot().expect("snapshot");
    let mut target = machine(&four);
    target.restore(&bytes, None).expect("restore");
    assert_eq!(target.membership(), source.membership());
    assert_eq!(target.membership().newest(), &five);
    // The restored machine verifies the new set's certificates from 3 on.
    target.apply_all(&log[2..]).expect("after the snapshot");
    source.apply_all(&log[2..]).expect("replayed");
    assert!(target.verify_replica(&source));
    // A machine of another group (other genesis set, or delay) refuses it.
    let mut other = ReplicatedStateMachine::with_limits(
        Registers::default(),
        Membership::new(four.clone(), DELAY + 1),
        unbounded_window(),
    );
    assert!(matches!(
        other.restore(&bytes, None),
        Err(ConsensusError::SnapshotMismatch(_))
    ));
    assert_eq!(other.next_height(), 0);
}
