//! A replica that is pushed a decision above its next height, with nothing
//! in flight, asks for the missing ones (found by the seed-11 soak of the
//! pipelined fault campaign once catch-up answers were deduplicated: a
//! replica held decisions 12 and 13, lacked 11, had nothing in flight and
//! nothing to send, and waited forever).

mod support;

use hologram_consensus::{
    Batch, ConsensusMessage, Outgoing, Outputs, Replica, ReplicaConfig, Timer,
};
use support::decided::{certified, commands, validators};

#[test]
fn a_gap_below_pushed_decisions_is_fetched() {
    let (keys, set) = validators();
    let mut config = ReplicaConfig::new(set);
    config.max_pipeline_depth = 4;
    let mut replica = Replica::new(keys[3].clone(), config).expect("config");
    let mut out = Outputs::default();
    replica.start(0, &mut out);
    assert!(out.messages.is_empty() && out.timers.is_empty());
    let batch = Batch::new(commands("x", 2)).expect("small");
    let pushed = certified(&keys, 1, batch);
    let from = keys[0].node_id();
    let mut out = Outputs::default();
    replica.handle_message(
        5,
        from,
        ConsensusMessage::Decision(Box::new(pushed)),
        &mut out,
    );
    assert_eq!(replica.next_height(), 0, "height 1 waits for height 0");
    let asked = out.messages.iter().any(
        |m| matches!(m, Outgoing::To(to, ConsensusMessage::SyncRequest { from: 0 }) if *to == from),
    );
    assert!(asked, "no catch-up request: {:?}", out.messages);
    // And it keeps asking on its resend timer until height 0 arrives.
    assert!(
        out.timers.iter().any(|(_, t)| *t == Timer::Resend),
        "{:?}",
        out.timers
    );
}
