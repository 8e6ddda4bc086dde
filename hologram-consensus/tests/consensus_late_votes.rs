//! A late vote of a height just decided pushes nothing: the voter decides
//! from the votes it receives (its precommit often arrives after the
//! quorum's). Pushing the whole decision back to every late voter cost the
//! four-process cluster of #15 about half the bytes each node received. A
//! voter that really missed the votes sends its own again on its resend
//! timer, and once the grace (half a resend interval) is over the decision
//! is pushed to it.

mod support;

use hologram_consensus::{
    Batch, ConsensusMessage, Outgoing, Outputs, Replica, ReplicaConfig, Slot, Vote, VoteKind,
};
use support::decided::{certified, commands, validators};

/// Whether `out` pushes a decision of height `h` to anyone.
fn pushes(out: &Outputs, h: u64) -> bool {
    out.messages
        .iter()
        .any(|m| matches!(m, Outgoing::To(_, ConsensusMessage::Decision(d)) if d.height() == h))
}

#[test]
fn a_late_vote_pushes_the_decision_only_after_the_grace() {
    let (keys, set) = validators();
    let config = ReplicaConfig::new(set);
    let resend = config.timeouts.resend_ms;
    let mut replica = Replica::new(keys[3].clone(), config).expect("config");
    let mut out = Outputs::default();
    replica.start(0, &mut out);
    // Height 0 is decided here at t = 10.
    let decision = certified(&keys, 0, Batch::new(commands("x", 2)).expect("small"));
    let value = decision.certificate.value;
    let mut out = Outputs::default();
    replica.handle_message(
        10,
        keys[1].node_id(),
        ConsensusMessage::Decision(Box::new(decision)),
        &mut out,
    );
    assert_eq!(replica.next_height(), 1);
    let late = |voter: usize| {
        let slot = Slot {
            height: 0,
            round: 0,
            kind: VoteKind::Precommit,
        };
        ConsensusMessage::Vote(Vote::sign(&keys[voter], slot, Some(value)))
    };
    // A precommit arriving just after the decision: normal, nothing pushed.
    let mut out = Outputs::default();
    replica.handle_message(12, keys[0].node_id(), late(0), &mut out);
    assert!(!pushes(&out, 0), "pushed at once: {:?}", out.messages);
    // Just before the grace is over: still nothing.
    let mut out = Outputs::default();
    replica.handle_message(10 + resend / 2 - 1, keys[0].node_id(), late(0), &mut out);
    assert!(
        !pushes(&out, 0),
        "pushed within the grace: {:?}",
        out.messages
    );
    // The voter's resend, after the grace: it missed the votes, push.
    let mut out = Outputs::default();
    replica.handle_message(10 + resend, keys[0].node_id(), late(0), &mut out);
    assert!(
        pushes(&out, 0),
        "a voter that missed the votes was not pushed the decision"
    );
}
