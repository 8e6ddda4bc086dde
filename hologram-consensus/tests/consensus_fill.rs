//! Fuller blocks: while a height is in flight, a replica starts another
//! only once `fill_commands` unclaimed commands wait, or when its fill
//! timer expires; an idle replica starts one at the first command.

mod support;

use hologram_consensus::{Outputs, Replica, ReplicaConfig, Timer};
use support::decided::{commands, validators};

fn in_flight(replica: &Replica) -> Vec<u64> {
    replica.in_flight().collect()
}

#[test]
fn pipelined_heights_wait_for_fuller_blocks() {
    let (keys, set) = validators();
    // A replica that leads neither height 0 nor 1, so that no proposal of
    // its own claims commands.
    let me = keys
        .iter()
        .find(|k| set.leader(0, 0) != k.node_id() && set.leader(1, 0) != k.node_id())
        .expect("four validators")
        .clone();
    let mut config = ReplicaConfig::new(set);
    config.max_pipeline_depth = 4;
    config.max_batch = 4;
    config.fill_commands = 4;
    config.fill_ms = 3;
    let mut replica = Replica::new(me, config).expect("config");
    let mut out = Outputs::default();
    replica.start(0, &mut out);
    let cmds = commands("fill", 13);

    // Idle: the first command starts a height at once.
    replica
        .submit(1, cmds[..1].to_vec(), true, &mut out)
        .expect("taken");
    assert_eq!(in_flight(&replica), [0]);
    assert!(!out.timers.iter().any(|(_, t)| *t == Timer::Fill));

    // Height 0 (waiting for its proposal) takes 4; the one left over is
    // below the fill threshold: it waits for the fill timer.
    let mut out = Outputs::default();
    replica
        .submit(2, cmds[1..5].to_vec(), true, &mut out)
        .expect("taken");
    assert_eq!(in_flight(&replica), [0]);
    assert_eq!(
        out.timers
            .iter()
            .filter(|(_, t)| *t == Timer::Fill)
            .collect::<Vec<_>>(),
        [&(3, Timer::Fill)]
    );

    // The timer expired: they get a height of their own.
    let mut out = Outputs::default();
    replica.handle_timer(5, Timer::Fill, &mut out);
    assert_eq!(in_flight(&replica), [0, 1]);

    // Enough for a full block starts one at once; the rest waits again.
    let mut out = Outputs::default();
    replica
        .submit(6, cmds[5..].to_vec(), true, &mut out)
        .expect("taken");
    assert_eq!(in_flight(&replica), [0, 1, 2]);
    assert!(out.timers.iter().any(|(_, t)| *t == Timer::Fill));
}

#[test]
fn fill_ms_must_be_positive() {
    let (_, set) = validators();
    let mut config = ReplicaConfig::new(set);
    config.fill_ms = 0;
    assert!(config.check().is_err());
}
