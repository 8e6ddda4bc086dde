//! How a checkpoint is bound into consensus, one replica at a time: a
//! validator prevotes a proposal carrying a checkpoint only once its own
//! machine computed that very checkpoint (it waits for one its machine has
//! not reached, prevotes nil on any other); and how a replicated state
//! machine refuses a snapshot that is not the one certified, changing
//! nothing.

mod support;

use hologram_consensus::{
    Batch, Checkpoint, ClientSession, ConsensusError, ConsensusMessage, LocalValidator, Outgoing,
    Outputs, Proposal, Replica, ReplicaConfig, ReplicatedStateMachine, SignedHeader, Timer,
    Validator, VoteKind,
};
use hologram_lattice::Address;
use hologram_receipt::{ChainHead, KeyPair, Receipt};
use support::decided::{certified, validators, Registers};

fn checkpoint(tag: &[u8]) -> Checkpoint {
    Checkpoint {
        height: 4,
        snapshot: Address::of(tag),
        chain_head: ChainHead::GENESIS,
    }
}

/// The proposal of height 0, round 0 by its leader (`keys[0]`), its batch
/// carrying `c`.
fn proposal(leader: &KeyPair, c: Checkpoint) -> (ConsensusMessage, Receipt) {
    let batch = Batch::empty().with_checkpoint(Some(c));
    let value = batch.receipt();
    let header = SignedHeader::sign(leader, 0, 0, None, value);
    let p = Proposal {
        header,
        batch,
        proof_of_lock: None,
    };
    (ConsensusMessage::Proposal(Box::new(p)), value)
}

/// The prevote in `out`, if one was sent: `Some(value)` (`None` for nil).
fn prevote(out: &Outputs) -> Option<Option<Receipt>> {
    out.messages.iter().find_map(|m| match m {
        Outgoing::Broadcast(ConsensusMessage::Vote(v)) if v.slot.kind == VoteKind::Prevote => {
            Some(v.value)
        }
        _ => None,
    })
}

fn replica(keys: &KeyPair, enabled: bool) -> Replica {
    let (_, set) = validators();
    let mut r = Replica::new(keys.clone(), ReplicaConfig::new(set)).unwrap();
    if enabled {
        r.enable_snapshots();
    }
    let mut out = Outputs::default();
    r.start(0, &mut out);
    r
}

#[test]
fn a_checkpoint_is_prevoted_once_the_machine_computed_the_same() {
    let (keys, _) = validators();
    let c = checkpoint(b"the snapshot");
    let (p, value) = proposal(&keys[0], c);
    // Not reached yet: the validator waits.
    let mut r = replica(&keys[1], true);
    let mut out = Outputs::default();
    r.handle_message(1, keys[0].node_id(), p.clone(), &mut out);
    assert_eq!(prevote(&out), None, "waits for its machine");
    // Its machine computes the same checkpoint: it prevotes the value.
    let mut out = Outputs::default();
    r.note_checkpoint(2, c, &mut out);
    assert_eq!(prevote(&out), Some(Some(value)));

    // A validator whose machine computed another checkpoint prevotes nil.
    let mut other = replica(&keys[2], true);
    let mut out = Outputs::default();
    other.note_checkpoint(0, checkpoint(b"another state"), &mut out);
    other.handle_message(1, keys[0].node_id(), p.clone(), &mut out);
    assert_eq!(prevote(&out), Some(None));

    // A replica whose node runs no machine never supports a checkpoint:
    // nil when the propose timeout expires.
    let mut blind = replica(&keys[3], false);
    let mut out = Outputs::default();
    blind.handle_message(1, keys[0].node_id(), p, &mut out);
    assert_eq!(prevote(&out), None);
    let mut out = Outputs::default();
    blind.handle_timer(
        500,
        Timer::Propose {
            height: 0,
            round: 0,
        },
        &mut out,
    );
    assert_eq!(prevote(&out), Some(None));
}

#[test]
fn a_validator_without_a_machine_refuses_to_prevote_a_checkpoint() {
    let (keys, set) = validators();
    let validator = LocalValidator::new(keys[1].clone(), set);
    let (p, _) = proposal(&keys[0], checkpoint(b"unchecked"));
    let ConsensusMessage::Proposal(p) = p else {
        unreachable!("a proposal")
    };
    let refused = futures::executor::block_on(validator.prepare_vote(&p));
    assert!(
        matches!(&refused, Err(ConsensusError::Refused { reason, .. }) if reason.contains("snapshot")),
        "{refused:?}"
    );
    // Without the checkpoint, the same batch is prevoted.
    let batch = Batch::empty();
    let plain = Proposal {
        header: SignedHeader::sign(&keys[0], 0, 0, None, batch.receipt()),
        batch,
        proof_of_lock: None,
    };
    assert!(futures::executor::block_on(validator.prepare_vote(&plain)).is_ok());
}

#[test]
fn a_leader_proposes_its_newest_uncertified_checkpoint_in_round_zero() {
    let (keys, _) = validators();
    let mut leader = replica(&keys[0], true);
    let mut out = Outputs::default();
    let c = checkpoint(b"mine");
    leader.note_checkpoint(0, c, &mut out);
    let mut client = ClientSession::new(KeyPair::from_seed([9; 32]));
    let command = client.command(b"k=v".to_vec()).unwrap();
    let mut out = Outputs::default();
    leader.submit(1, vec![command], true, &mut out).unwrap();
    let proposed = out.messages.iter().find_map(|m| match m {
        Outgoing::Broadcast(ConsensusMessage::Proposal(p)) => Some(p.batch.checkpoint().copied()),
        _ => None,
    });
    assert_eq!(proposed, Some(Some(c)));
}

#[test]
fn a_snapshot_that_is_not_the_certified_one_changes_nothing() {
    let (keys, set) = validators();
    let mut client = ClientSession::new(KeyPair::from_seed([9; 32]));
    let commands = vec![
        client.command(b"a=1".to_vec()).unwrap(),
        client.command(b"b=2".to_vec()).unwrap(),
    ];
    let mut source = ReplicatedStateMachine::new(Registers::default(), set.clone());
    source
        .apply_decision(&certified(&keys, 0, Batch::new(commands).unwrap()))
        .unwrap();
    let bytes = source.snapshot().unwrap();
    let good = Checkpoint {
        height: 1,
        snapshot: Address::of(&bytes),
        chain_head: source.receipt_chain().head(),
    };
    let mut target = ReplicatedStateMachine::new(Registers::default(), set.clone());
    // Another chain head, another height: refused, nothing changed.
    let wrong_head = Checkpoint {
        chain_head: ChainHead::from_bytes([1; 32]),
        ..good
    };
    let wrong_height = Checkpoint { height: 2, ..good };
    for c in [wrong_head, wrong_height] {
        assert!(matches!(
            target.restore(&bytes, Some(&c)),
            Err(ConsensusError::SnapshotMismatch(_))
        ));
        assert_eq!((target.next_height(), target.applied_count()), (0, 0));
        assert!(target.state().0.is_empty());
    }
    // Cut short: malformed, nothing changed.
    assert!(matches!(
        target.restore(&bytes[..bytes.len() - 3], Some(&good)),
        Err(ConsensusError::SnapshotMalformed(_))
    ));
    assert_eq!(target.next_height(), 0);
    // Taken under another validator set: refused.
    let (other_keys, _) = (
        (5..=8u8)
            .map(|i| KeyPair::from_seed([i; 32]))
            .collect::<Vec<_>>(),
        (),
    );
    let other_set =
        hologram_consensus::ValidatorSet::new(other_keys.iter().map(KeyPair::node_id).collect())
            .unwrap();
    let mut stranger = ReplicatedStateMachine::new(Registers::default(), other_set);
    assert!(matches!(
        stranger.restore(&bytes, Some(&good)),
        Err(ConsensusError::SnapshotMismatch(_))
    ));
    // The certified one: restored, and the replica continues the chain.
    target.restore(&bytes, Some(&good)).unwrap();
    assert!(target.verify_replica(&source));
    assert_eq!(target.state(), source.state());
    let next = certified(
        &keys,
        1,
        Batch::new(vec![client.command(b"c=3".to_vec()).unwrap()]).unwrap(),
    );
    source.apply_decision(&next).unwrap();
    target.apply_decision(&next).unwrap();
    assert!(target.verify_replica(&source));
    // The session table came along: a retry is a duplicate on both.
    let retry = certified(
        &keys,
        2,
        Batch::new(vec![client.command(b"d=4".to_vec()).unwrap()]).unwrap(),
    );
    let (a, b) = (
        source.apply_decision(&retry).unwrap(),
        target.apply_decision(&retry).unwrap(),
    );
    assert_eq!(a, b);
}
