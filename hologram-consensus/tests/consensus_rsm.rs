//! `ReplicatedStateMachine`: decided batches applied in height order, each
//! command once, transition receipts chained; bad decisions change nothing.

mod support;

use hologram_consensus::{
    Answer, Batch, ClientSession, Command, ConsensusError, Outcome, ReplicatedStateMachine,
    SessionLimits, StateMachine,
};
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
    // The command in both batches is applied once, at height 0, and
    // answered at height 1 as a duplicate with its first output.
    let applied: Vec<_> = out
        .iter()
        .filter_map(Answer::applied)
        .map(|x| (x.entry.height, x.entry.command))
        .collect();
    assert_eq!(
        applied,
        vec![(0, c[0].id()), (0, c[1].id()), (1, c[2].id())]
    );
    assert_eq!(out.len(), 4);
    assert_eq!(out[2].outcome, Outcome::Duplicate(true));
    assert_eq!((out[2].client, out[2].sequence), (c[1].client(), 1));
    assert!(out.iter().all(|x| x.output() == Some(&true)));
    assert_eq!(a.applied_count(), 3);
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

/// The same bytes under a new sequence are a new command, applied twice; a
/// retry of the same signed command is applied once and answered again;
/// stale and too-far-ahead sequences are not applied; two replicas fed the
/// same log (with session expiry and eviction) agree.
#[test]
fn sessions_apply_each_sequence_once_and_the_same_bytes_twice() {
    let (keys, set) = validators();
    let mut client = ClientSession::new(hologram_receipt::KeyPair::from_seed([0x5e; 32]));
    let first = client.command(b"x=1".to_vec()).unwrap();
    let again = client.command(b"x=1".to_vec()).unwrap();
    assert_ne!(first.id(), again.id());
    client.answered(0);
    client.answered(1);
    let third = client.command(b"y=2".to_vec()).unwrap();
    // An old number the client said it has the answer of, and one far ahead.
    let stale = Command::sign(client.keys(), 0, 0, b"x=1 retried late".to_vec()).unwrap();
    let ahead = Command::sign(client.keys(), 2 + 1024, 2, b"z=3".to_vec()).unwrap();
    let limits = SessionLimits {
        max_sessions: 2,
        window: 1024,
        expiry_heights: 3,
    };
    let log = [
        certified(
            &keys,
            0,
            Batch::new(vec![first.clone(), again.clone()]).unwrap(),
        ),
        certified(
            &keys,
            1,
            Batch::new(vec![first.clone(), third.clone()]).unwrap(),
        ),
        certified(
            &keys,
            2,
            Batch::new(vec![stale.clone(), ahead.clone()]).unwrap(),
        ),
        certified(&keys, 3, Batch::new(commands("o", 2)).unwrap()),
        certified(&keys, 4, Batch::new(commands("p", 1)).unwrap()),
        certified(&keys, 6 - 1, Batch::new(vec![third.clone()]).unwrap()),
    ];
    let mut a = ReplicatedStateMachine::with_limits(Registers::default(), set.clone(), limits);
    let mut b = ReplicatedStateMachine::with_limits(Registers::default(), set, limits);
    let out = a.apply_all(&log).unwrap();
    let outcomes: Vec<_> = out.iter().map(|x| x.outcome.clone()).collect();
    assert!(matches!(outcomes[0], Outcome::Applied(_)));
    assert!(
        matches!(outcomes[1], Outcome::Applied(_)),
        "same bytes, new sequence"
    );
    assert_eq!(outcomes[2], Outcome::Duplicate(true));
    assert!(matches!(outcomes[3], Outcome::Applied(_)));
    assert_eq!(outcomes[4], Outcome::Stale);
    assert_eq!(outcomes[5], Outcome::Refused);
    // Heights 3 and 4 bring two new clients into a table of two: the
    // client's session (last active at 2) is evicted at height 4, so its
    // retry at height 5 starts a new session and is applied again (the
    // documented price of eviction).
    assert!(matches!(outcomes[9], Outcome::Applied(_)));
    assert_eq!(a.applied_count(), 7);
    b.apply_all(&log).unwrap();
    assert!(a.verify_replica(&b));
    assert_eq!(a.sessions().len(), b.sessions().len());
    assert_eq!(a.sessions().answers(), b.sessions().answers());
}
