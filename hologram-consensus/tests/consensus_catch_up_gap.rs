//! A replica that is pushed a decision above its next height, with nothing
//! in flight, asks for the missing ones (found by the seed-11 soak of the
//! pipelined fault campaign once catch-up answers were deduplicated: a
//! replica held decisions 12 and 13, lacked 11, had nothing in flight and
//! nothing to send, and waited forever); and a replica that caught up to a
//! height a peer was seen at, with nothing in flight, asks for it while the
//! cluster is idle (the votes of that height came while it was beyond the
//! window, so the height was never started here; the others decided it and
//! went quiet — a stall of this kind was seen in the partition campaign,
//! seed 125, in an experiment that delayed resends).

mod support;

use hologram_consensus::{
    Batch, ConsensusMessage, Outgoing, Outputs, Replica, ReplicaConfig, Slot, Timer, Vote, VoteKind,
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

/// Whether `out` asks for decisions from `first` on.
fn asks_from(out: &Outputs, first: u64) -> bool {
    out.messages.iter().any(
        |m| matches!(m, Outgoing::To(_, ConsensusMessage::SyncRequest { from }) if *from == first),
    )
}

#[test]
fn a_height_a_peer_was_seen_at_is_fetched_while_the_cluster_is_idle() {
    let (keys, set) = validators();
    let config = ReplicaConfig::new(set);
    let resend = config.timeouts.resend_ms;
    let mut replica = Replica::new(keys[3].clone(), config).expect("config");
    let mut out = Outputs::default();
    replica.start(0, &mut out);
    // A vote of height 1, beyond the window (depth 1): a peer is there.
    let from = keys[0].node_id();
    let slot = Slot {
        height: 1,
        round: 0,
        kind: VoteKind::Prevote,
    };
    let vote = Vote::sign(&keys[0], slot, None);
    let mut out = Outputs::default();
    replica.handle_message(1, from, ConsensusMessage::Vote(vote), &mut out);
    assert!(asks_from(&out, 0), "{:?}", out.messages);
    assert!(out.timers.iter().any(|(_, t)| *t == Timer::Resend));
    // Height 0 arrives; height 1 is now in the window but not in flight
    // (its vote came too early), and the cluster sends nothing more.
    let decision = certified(&keys, 0, Batch::new(commands("x", 2)).expect("small"));
    let mut out = Outputs::default();
    replica.handle_message(
        2,
        from,
        ConsensusMessage::Decision(Box::new(decision)),
        &mut out,
    );
    assert_eq!(replica.next_height(), 1);
    assert_eq!(replica.in_flight().count(), 0);
    assert!(
        asks_from(&out, 1),
        "no catch-up request: {:?}",
        out.messages
    );
    // It keeps asking, one request per resend interval at most, ...
    let mut now = 2;
    let mut asked = 0;
    for _ in 0..4 {
        now += resend;
        out = Outputs::default();
        replica.handle_timer(now, Timer::Resend, &mut out);
        assert!(
            out.timers.iter().any(|(_, t)| *t == Timer::Resend),
            "{:?}",
            out.timers
        );
        let requests = out
            .messages
            .iter()
            .filter(|m| matches!(m, Outgoing::To(_, ConsensusMessage::SyncRequest { .. })))
            .count();
        assert!(requests <= 1, "{:?}", out.messages);
        asked += usize::from(asks_from(&out, 1));
    }
    assert!(asked >= 3, "asked {asked} times in 4 intervals");
    // ... until it has height 1; then it goes quiet.
    let decision = certified(&keys, 1, Batch::new(commands("y", 1)).expect("small"));
    out = Outputs::default();
    replica.handle_message(
        now,
        from,
        ConsensusMessage::Decision(Box::new(decision)),
        &mut out,
    );
    assert_eq!(replica.next_height(), 2);
    out = Outputs::default();
    replica.handle_timer(now + resend, Timer::Resend, &mut out);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_height_past_its_first_round_asks_a_peer_while_the_cluster_is_idle() {
    // A replica in height 0 that hears nothing of it (the group decided it
    // while this one was down, cut off, or abstaining, and went quiet):
    // its rounds time out one after the other. Past round 0 it asks a
    // peer for the decision; in round 0 it does not.
    let (keys, set) = validators();
    let config = ReplicaConfig::new(set);
    let mut replica = Replica::new(keys[3].clone(), config).expect("config");
    let mut out = Outputs::default();
    replica.start(0, &mut out);
    replica
        .submit(0, commands("lonely", 1), false, &mut out)
        .expect("taken");
    assert_eq!(replica.in_flight().count(), 1, "height 0 started");
    let mut pending: Vec<(u64, Timer)> = std::mem::take(&mut out.timers);
    let mut now = 0;
    let (mut in_round_0, mut asked_in_round_0, mut asked) = (true, false, false);
    for _ in 0..40 {
        pending.sort_by_key(|(at, _)| *at);
        if pending.is_empty() {
            break;
        }
        let (delay, timer) = pending.remove(0);
        now += delay;
        for (d, _) in &mut pending {
            *d = d.saturating_sub(delay);
        }
        let mut out = Outputs::default();
        let entering_round_1 = matches!(timer, Timer::Precommit { round: 0, .. });
        replica.handle_timer(now, timer, &mut out);
        let requests = asks_from(&out, 0);
        if in_round_0 && !entering_round_1 {
            asked_in_round_0 |= requests;
        }
        in_round_0 &= !entering_round_1;
        asked |= requests && !in_round_0;
        pending.extend(out.timers);
        if asked {
            break;
        }
    }
    assert!(
        !asked_in_round_0,
        "asked for height 0 while still in round 0"
    );
    assert!(asked, "never asked for the height it lingers in");
    assert_eq!(replica.next_height(), 0);
}
