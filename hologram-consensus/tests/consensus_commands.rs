//! Commands are bound to their client (issue #19, point 8): a forged or
//! altered command — payload changed, key swapped, signature garbage — is
//! refused by the mempool, and a proposal carrying one is not voted for,
//! whether a host on the network or a Byzantine proposer injects it.

mod support;

use hologram_consensus::{
    Batch, Command, ConsensusError, ConsensusMessage, Outgoing, Outputs, Replica, ReplicaConfig,
    SignedHeader, ValidatorSet, VoteKind,
};
use hologram_consensus::{BatchProof, Proposal};
use hologram_lattice::sim::{check_seeds, Faults};
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Receipt, Signature};
use support::byzantine::Behaviour;
use support::{faulty_network, Cluster};

fn validators() -> (Vec<KeyPair>, ValidatorSet) {
    let keys: Vec<KeyPair> = (1..=4u8).map(|i| KeyPair::from_seed([i; 32])).collect();
    let set = ValidatorSet::new(keys.iter().map(KeyPair::node_id).collect()).expect("set");
    (keys, set)
}

fn client() -> KeyPair {
    KeyPair::from_seed([0xc1; 32])
}

/// The three forgeries of `real`: payload changed, key swapped for
/// `other`'s, signature garbage, sequence changed.
fn forgeries(real: &Command, other: &KeyPair) -> [(&'static str, Command); 4] {
    let mut payload = real.bytes().to_vec();
    payload.extend_from_slice(b" and pay mallory");
    let mut garbage = real.signature().to_bytes();
    for (i, b) in garbage.iter_mut().enumerate() {
        *b ^= i as u8 | 1;
    }
    let (seq, first) = (real.sequence(), real.first_unanswered());
    let part = |client, sig, payload: Vec<u8>| {
        Command::from_parts(client, seq, first, sig, BatchProof::single(), payload).expect("small")
    };
    [
        (
            "payload changed",
            part(real.client(), real.signature(), payload),
        ),
        (
            "key swapped",
            part(other.node_id(), real.signature(), real.bytes().to_vec()),
        ),
        (
            "signature garbage",
            part(
                real.client(),
                Signature::from_bytes(garbage),
                real.bytes().to_vec(),
            ),
        ),
        (
            "sequence changed",
            Command::from_parts(
                real.client(),
                seq + 1,
                first,
                real.signature(),
                BatchProof::single(),
                real.bytes().to_vec(),
            )
            .expect("small"),
        ),
    ]
}

/// A replica of the set that does not lead height 0, round 0, and the leader's keys.
fn follower() -> (Replica, KeyPair, NodeId) {
    let (keys, set) = validators();
    let leader = set.leader(0, 0);
    let me = keys.iter().find(|k| k.node_id() != leader).expect("4 keys");
    let lead = keys.iter().find(|k| k.node_id() == leader).expect("leader");
    let other = keys
        .iter()
        .find(|k| k.node_id() != leader && k.node_id() != me.node_id())
        .expect("4 keys");
    let replica = Replica::new(me.clone(), ReplicaConfig::new(set)).expect("config");
    (replica, lead.clone(), other.node_id())
}

fn proposal(leader: &KeyPair, commands: Vec<Command>) -> ConsensusMessage {
    let batch = Batch::new(commands).expect("small");
    let header = SignedHeader::sign(leader, 0, 0, None, batch.receipt());
    ConsensusMessage::Proposal(Box::new(Proposal {
        header,
        batch,
        proof_of_lock: None,
    }))
}

/// The value this replica prevoted for at height 0, if it prevoted.
fn prevoted(out: &Outputs) -> Option<Option<Receipt>> {
    out.messages.iter().find_map(|m| match m {
        Outgoing::Broadcast(ConsensusMessage::Vote(v)) if v.slot.kind == VoteKind::Prevote => {
            Some(v.value)
        }
        _ => None,
    })
}

#[test]
fn the_mempool_refuses_forged_commands_from_clients_and_peers() {
    let real = Command::sign(&client(), 1, 0, b"transfer 10 to bob".to_vec()).expect("small");
    assert!(real.verify().is_ok());
    for (what, forged) in forgeries(&real, &KeyPair::from_seed([0xee; 32])) {
        assert!(forged.verify().is_err(), "{what}");
        // From a client.
        let (mut r, _, peer) = follower();
        let mut out = Outputs::default();
        let e = r.submit(0, vec![forged.clone()], true, &mut out);
        assert!(
            matches!(e, Err(ConsensusError::BadCommand { id, .. }) if id == forged.id()),
            "{what}: {e:?}"
        );
        assert_eq!(r.mempool_len(), 0, "{what}");
        assert!(out.messages.is_empty(), "{what}: nothing gossiped");
        // From a validator (or a host naming one): alone, and beside a good one
        // (the frame is dropped whole).
        let other = Command::sign(&client(), 2, 0, b"something else".to_vec()).expect("small");
        for frame in [vec![forged.clone()], vec![other.clone(), forged.clone()]] {
            r.handle_message(0, peer, ConsensusMessage::Commands(frame), &mut out);
            assert_eq!(r.mempool_len(), 0, "{what}");
        }
        // The genuine commands are taken, from a client or a validator.
        assert_eq!(
            r.submit(0, vec![real.clone()], false, &mut out).ok(),
            Some(1)
        );
        r.handle_message(0, peer, ConsensusMessage::Commands(vec![other]), &mut out);
        assert_eq!(r.mempool_len(), 2, "{what}");
        // The forgery that shares the real command's id (a changed
        // signature) is not taken in its place either.
        r.handle_message(0, peer, ConsensusMessage::Commands(vec![forged]), &mut out);
        assert_eq!(r.mempool_len(), 2, "{what}");
    }
}

#[test]
fn a_proposal_carrying_a_forged_command_is_not_voted_for() {
    let real = Command::sign(&client(), 1, 0, b"transfer 10 to bob".to_vec()).expect("small");
    for (what, forged) in forgeries(&real, &KeyPair::from_seed([0xee; 32])) {
        for held in [false, true] {
            let (mut r, leader, _) = follower();
            let mut out = Outputs::default();
            if held {
                // The real command waits in the mempool: its forgery (same id
                // when only the signature differs) is still checked.
                r.submit(0, vec![real.clone()], false, &mut out)
                    .expect("real");
                out = Outputs::default();
            }
            let bad = proposal(&leader, vec![real.clone(), forged.clone()]);
            r.handle_message(0, leader.node_id(), bad, &mut out);
            assert_eq!(
                prevoted(&out),
                None,
                "{what}, held {held}: voted {:?}",
                out.misbehaviour
            );
            assert!(
                out.misbehaviour.iter().any(|m| m.node == leader.node_id()),
                "{what}, held {held}: the proposer is not blamed"
            );
        }
    }
    // The same proposal without the forgery gets a prevote.
    let (mut r, leader, _) = follower();
    let mut out = Outputs::default();
    let good = proposal(&leader, vec![real.clone()]);
    let value = match &good {
        ConsensusMessage::Proposal(p) => p.header.value,
        _ => unreachable!(),
    };
    r.handle_message(0, leader.node_id(), good, &mut out);
    assert_eq!(prevoted(&out), Some(Some(value)));
}

/// The request/response face refuses the same proposals: a
/// [`LocalValidator`](hologram_consensus::LocalValidator) does not prevote
/// for a batch holding a forged command.
#[test]
fn a_local_validator_does_not_prevote_for_a_forged_command() {
    use hologram_consensus::{LocalValidator, Validator};
    let (keys, set) = validators();
    let leader = keys
        .iter()
        .find(|k| k.node_id() == set.leader(0, 0))
        .expect("leader");
    let real = Command::sign(&client(), 1, 0, b"transfer 10 to bob".to_vec()).expect("small");
    let as_proposal = |m: ConsensusMessage| match m {
        ConsensusMessage::Proposal(p) => *p,
        _ => unreachable!(),
    };
    for (what, forged) in forgeries(&real, &KeyPair::from_seed([0xee; 32])) {
        let validator = LocalValidator::new(keys[0].clone(), set.clone());
        let bad = as_proposal(proposal(leader, vec![real.clone(), forged]));
        let refused = futures::executor::block_on(validator.prepare_vote(&bad));
        assert!(
            matches!(refused, Err(ConsensusError::BadCommand { .. })),
            "{what}: {refused:?}"
        );
    }
    let validator = LocalValidator::new(keys[0].clone(), set.clone());
    let good = as_proposal(proposal(leader, vec![real]));
    assert!(futures::executor::block_on(validator.prepare_vote(&good)).is_ok());
}

/// A Byzantine validator slips forged commands into its proposals and
/// `Commands` frames: the invariant of `support` (checked after every step)
/// asserts that no committed batch holds a command whose signature fails;
/// every genuine command commits, and the honest replicas blame the forger.
#[test]
fn a_byzantine_proposer_cannot_inject_forged_commands() {
    check_seeds("forged commands", 3, |seed| {
        forged_commands_campaign(seed, 1, Faults::NONE)
    });
}

/// The same on a network with loss, duplication, corruption and reordering,
/// heights pipelined.
#[test]
fn a_byzantine_proposer_cannot_inject_forged_commands_on_a_faulty_network() {
    check_seeds("forged commands, faulty network", 3, |seed| {
        forged_commands_campaign(seed, 4, faulty_network())
    });
}

fn forged_commands_campaign(seed: u64, depth: usize, faults: Faults) -> Result<(), String> {
    let mut c = Cluster::new(seed, 4, &[Behaviour::ForgeCommands], depth, faults);
    let mut wanted = Vec::new();
    let mut t = 0;
    while t < 3_000 {
        wanted.extend(c.submit_random());
        t += 50;
        c.sim.run_until(t).map_err(|e| e.to_string())?;
    }
    c.run_until_committed(&wanted, t + 20_000)?;
    let forger = c.byzantine[0];
    for (id, node, _) in c.sim.nodes() {
        let Some(h) = node.honest() else { continue };
        if !h.node.misbehaviour().iter().any(|m| m.node == forger) {
            return Err(format!("{id} never blamed the forger {forger}"));
        }
        let committed = h.node.log().iter().map(|d| d.batch.len()).sum::<usize>();
        if committed < wanted.len() {
            return Err(format!(
                "{id}: {committed} commands, {} wanted",
                wanted.len()
            ));
        }
    }
    Ok(())
}
