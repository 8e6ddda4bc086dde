//! `ReplicatedStateMachine`: decided batches applied in height order, each
//! command once, transition receipts chained; bad decisions change nothing.

mod support;

use hologram_consensus::{Batch, ConsensusError, ReplicatedStateMachine, StateMachine};
use hologram_receipt::Receipt;
use support::decided::{certified, commands, validators, Registers};

#[test]
fn replicas_applying_the_same_decisions_agree() {
    let (keys, set) = validators();
    let c = commands("k", 3);
    let d0 = certified(
        &keys,
        0,
        Batch::new(vec![c[0].clone(), c[1].clone()]).unwrap(),
    );
    let d1 = certified(
        &keys,
        1,
        Batch::new(vec![c[1].clone(), c[2].clone()]).unwrap(),
    );
    let mut a = ReplicatedStateMachine::new(Registers::default(), set.clone());
    let mut b = ReplicatedStateMachine::new(Registers::default(), set.clone());
    let out = a.apply_all([&d0, &d1]).unwrap();
    // The command in both batches is applied once, at height 0.
    let applied: Vec<_> = out
        .iter()
        .map(|x| (x.entry.height, x.entry.command))
        .collect();
    assert_eq!(
        applied,
        vec![(0, c[0].id()), (0, c[1].id()), (1, c[2].id())]
    );
    assert!(out.iter().all(|x| x.output));
    assert!(!a.verify_replica(&b));
    b.apply_decision(&d0).unwrap();
    assert!(!a.verify_replica(&b), "a prefix is not the same replica");
    b.apply_decision(&d1).unwrap();
    assert!(a.verify_replica(&b));
    assert_eq!(a.receipt_chain().len(), 3);
    // The first transition receipt binds the states around it and the command.
    let mut after = Registers::default();
    after.apply(&c[0]);
    let expected = Receipt::from_transition(
        &Registers::default().state_receipt(),
        &Receipt::from_bytes(c[0].bytes()),
        &after.state_receipt(),
    );
    assert_eq!(a.log()[0].receipt, expected);
    // Same commands in another order: another chain.
    let e0 = certified(
        &keys,
        0,
        Batch::new(vec![c[1].clone(), c[0].clone()]).unwrap(),
    );
    let mut other = ReplicatedStateMachine::new(Registers::default(), set);
    other.apply_decision(&e0).unwrap();
    let (_, set) = validators();
    let mut two = ReplicatedStateMachine::new(Registers::default(), set);
    two.apply_decision(&d0).unwrap();
    assert!(!other.verify_replica(&two));
}

#[test]
fn bad_decisions_are_refused_and_change_nothing() {
    let (keys, set) = validators();
    let c = commands("z", 2);
    let d0 = certified(&keys, 0, Batch::new(vec![c[0].clone()]).unwrap());
    let mut a = ReplicatedStateMachine::new(Registers::default(), set);
    // Out of order.
    let d1 = certified(&keys, 1, Batch::new(vec![c[1].clone()]).unwrap());
    assert!(matches!(a.apply_decision(&d1), Err(ConsensusError::Log(_))));
    // A batch swapped under a valid certificate.
    let mut swapped = d0.clone();
    swapped.batch = Batch::new(vec![c[1].clone()]).unwrap();
    assert!(matches!(
        a.apply_decision(&swapped),
        Err(ConsensusError::BatchMismatch { .. })
    ));
    // Too few signatures.
    let mut thin = d0.clone();
    thin.certificate.signatures.truncate(2);
    assert!(matches!(
        a.apply_decision(&thin),
        Err(ConsensusError::InsufficientSignatures { .. })
    ));
    assert_eq!(a.next_height(), 0);
    assert!(a.receipt_chain().is_empty());
    a.apply_decision(&d0).unwrap();
    assert_eq!(a.state().0.len(), 1);
}
