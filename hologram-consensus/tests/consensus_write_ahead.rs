//! A replica whose own precommit completes a quorum signs it and delivers
//! the height in one step, and delivering drops the height from its voting
//! record. The signature must still count for the write-ahead rule (the
//! record's `signed`): the disk-fault campaign (seed 190) caught a validator
//! that sent such a precommit while the write was under way, lost the write,
//! restarted with the height undelivered and without the precommit, and
//! precommitted nil in that round.

mod support;

use hologram_consensus::{
    ConsensusMessage, Outgoing, Outputs, Replica, ReplicaConfig, Slot, Vote, VoteKind,
};
use support::decided::{commands, validators};

#[test]
fn a_precommit_that_delivers_its_height_still_counts_as_signed() {
    let (keys, set) = validators();
    let leader = set.leader(0, 0);
    let me = keys
        .iter()
        .position(|k| k.node_id() == leader)
        .expect("a validator leads");
    let others: Vec<usize> = (0..keys.len()).filter(|&i| i != me).collect();
    let mut replica = Replica::new(keys[me].clone(), ReplicaConfig::new(set)).expect("config");
    let mut out = Outputs::default();
    replica.start(0, &mut out);
    // It leads height 0: a submission makes it propose and prevote.
    replica
        .submit(1, commands("w", 2), true, &mut out)
        .expect("taken");
    let value = replica.voting_record().heights[&0].proposals[&0].value;
    let vote = |i: usize, kind| {
        let slot = Slot {
            height: 0,
            round: 0,
            kind,
        };
        ConsensusMessage::Vote(Vote::sign(&keys[i], slot, Some(value)))
    };
    // Two precommits arrive early, then the prevotes that make the polka.
    for &i in &others[..2] {
        replica.handle_message(2, keys[i].node_id(), vote(i, VoteKind::Precommit), &mut out);
    }
    replica.handle_message(
        3,
        keys[others[0]].node_id(),
        vote(others[0], VoteKind::Prevote),
        &mut out,
    );
    let saved = replica.voting_record().clone();
    assert!(saved.heights.contains_key(&0));
    let mut out = Outputs::default();
    replica.handle_message(
        4,
        keys[others[1]].node_id(),
        vote(others[1], VoteKind::Prevote),
        &mut out,
    );
    // One step: its precommit, the quorum, the height delivered.
    let precommitted = out.messages.iter().any(|m| {
        matches!(m, Outgoing::Broadcast(ConsensusMessage::Vote(v))
            if v.voter == leader && v.slot.kind == VoteKind::Precommit)
    });
    assert!(precommitted, "{:?}", out.messages);
    assert_eq!(replica.next_height(), 1, "the height is delivered");
    let record = replica.voting_record();
    assert!(!record.heights.contains_key(&0), "and left the record");
    assert!(
        record.signed > saved.signed,
        "the precommit is not counted: the step would send it before its write"
    );
}
