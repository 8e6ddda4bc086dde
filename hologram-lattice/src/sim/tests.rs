use super::*;
use std::collections::BTreeSet;

/// Floods rumors to every peer; ticks every 10 ms; persists every rumor whose
/// number is even (its "store"), forgets the rest on a crash.
#[derive(Debug, Clone, PartialEq)]
struct Flood {
    peers: Vec<NodeId>,
    seen: BTreeSet<u32>,
    durable: BTreeSet<u32>,
    arrivals: Vec<u32>,
    ticks: u32,
}

impl Flood {
    fn new(peers: Vec<NodeId>) -> Self {
        Flood {
            peers,
            seen: BTreeSet::new(),
            durable: BTreeSet::new(),
            arrivals: Vec::new(),
            ticks: 0,
        }
    }
}

impl Node for Flood {
    type Message = u32;
    type Timer = ();

    fn on_start(&mut self, ctx: &mut Context<'_, u32, ()>) {
        ctx.set_timer(10, ());
    }

    fn on_message(&mut self, ctx: &mut Context<'_, u32, ()>, _from: NodeId, rumor: u32) {
        self.arrivals.push(rumor);
        if self.seen.insert(rumor) {
            if rumor.is_multiple_of(2) {
                self.durable.insert(rumor);
            }
            for &p in &self.peers {
                if p != ctx.id() {
                    ctx.send(p, rumor);
                }
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, u32, ()>, (): ()) {
        self.ticks += 1;
        if self.ticks < 5 {
            ctx.set_timer(10, ());
        }
    }
}

impl Recover for Flood {
    fn recover(&self) -> Self {
        Flood {
            peers: self.peers.clone(),
            seen: self.durable.clone(),
            durable: self.durable.clone(),
            arrivals: Vec::new(),
            ticks: 0,
        }
    }
}

fn ids(n: u8) -> Vec<NodeId> {
    (0..n).map(|i| NodeId::from_bytes([i; 32])).collect()
}

fn network(seed: u64, faults: Faults, n: u8) -> Simulation<Flood> {
    let ids = ids(n);
    Simulation::new(
        seed,
        faults,
        ids.iter().map(|&id| (id, Flood::new(ids.clone()))),
    )
}

/// Nodes that know no peers: they record what arrives and forward nothing.
fn silent(seed: u64, faults: Faults, n: u8) -> Simulation<Flood> {
    Simulation::new(
        seed,
        faults,
        ids(n).into_iter().map(|id| (id, Flood::new(Vec::new()))),
    )
}

fn start_rumor(sim: &mut Simulation<Flood>, at: NodeId, rumor: u32) {
    sim.with_node(at, |node, ctx| node.on_message(ctx, at, rumor))
        .unwrap();
}

#[test]
fn a_run_is_a_function_of_its_seed() {
    let run = |seed| {
        let mut sim = network(seed, Faults::HOSTILE, 12);
        let first = sim.ids()[0];
        for r in 0..5 {
            start_rumor(&mut sim, first, r);
        }
        sim.run_until_quiet(10_000).unwrap();
        let states: Vec<Flood> = sim.nodes().map(|(_, n, _)| n.clone()).collect();
        (sim.stats().clone(), states, sim.now())
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3).0, run(4).0);
}

#[test]
fn loss_and_duplication_follow_their_rates() {
    let faults = Faults {
        loss: 0.3,
        duplicate: 0.2,
        corrupt: 0.0,
        latency_ms: (1, 20),
    };
    let mut sim = silent(1, faults, 2);
    let [a, b] = [sim.ids()[0], sim.ids()[1]];
    for i in 0..20_000 {
        sim.inject(a, b, i);
    }
    let s = sim.stats().clone();
    assert!((5_500..6_500).contains(&s.lost), "{s:?}");
    assert!((2_500..3_100).contains(&s.duplicated), "{s:?}");
    sim.run_until_quiet(1_000).unwrap();
    assert_eq!(sim.stats().delivered, 20_000 - s.lost + s.duplicated);
    assert_eq!(
        sim.node(b).unwrap().seen.len() as u64,
        20_000 - sim.stats().lost
    );
    // Latency is drawn per message, so later sends overtake earlier ones.
    let arrivals = &sim.node(b).unwrap().arrivals;
    assert!(arrivals.windows(2).any(|w| w[0] > w[1]), "reordered");
}

#[test]
fn corruption_flips_bits_or_drops() {
    let faults = Faults {
        corrupt: 1.0,
        ..Faults::NONE
    };
    let mut sim = silent(5, faults, 2);
    let [a, b] = [sim.ids()[0], sim.ids()[1]];
    for _ in 0..200 {
        sim.inject(a, b, 1_000);
    }
    sim.run_until_quiet(100).unwrap();
    let s = sim.stats();
    assert_eq!(s.corrupted + s.undecodable, 200);
    assert!(s.corrupted > 0);
    // No delivered copy is the original value; the receiver saw altered rumors.
    assert!(!sim.node(b).unwrap().seen.contains(&1_000));
}

#[test]
fn partitions_cut_and_heal() {
    let mut sim = network(9, Faults::NONE, 6);
    let ids = sim.ids();
    let (left, right) = ids.split_at(3);
    sim.partition(&[left, right]);
    start_rumor(&mut sim, left[0], 7);
    sim.run_until_quiet(1_000).unwrap();
    assert!(left
        .iter()
        .all(|&id| sim.node(id).unwrap().seen.contains(&7)));
    assert!(right
        .iter()
        .all(|&id| !sim.node(id).unwrap().seen.contains(&7)));
    assert!(sim.stats().partitioned > 0);
    sim.heal();
    start_rumor(&mut sim, left[1], 8);
    sim.run_until_quiet(2_000).unwrap();
    assert!(ids
        .iter()
        .all(|&id| sim.node(id).unwrap().seen.contains(&8)));
}

#[test]
fn a_crashed_node_loses_volatile_state_timers_and_messages() {
    let mut sim = network(2, Faults::NONE, 3);
    let ids = sim.ids();
    let victim = ids[2];
    start_rumor(&mut sim, ids[0], 2);
    start_rumor(&mut sim, ids[0], 3);
    sim.run_until(5).unwrap();
    assert!(sim.node(victim).unwrap().seen.contains(&3));
    sim.crash(victim);
    assert!(!sim.is_up(victim));
    assert!(sim.with_node(victim, |_, _| ()).is_none());
    start_rumor(&mut sim, ids[0], 4);
    sim.run_until_quiet(1_000).unwrap();
    let crashed = sim.node(victim).unwrap();
    assert_eq!(crashed.ticks, 0, "no timer fired after the crash");
    assert!(!crashed.seen.contains(&4));
    assert!(sim.stats().to_down_node > 0);
    sim.restart(victim);
    let back = sim.node(victim).unwrap();
    assert_eq!(
        back.seen,
        BTreeSet::from([2]),
        "only the durable rumor survives"
    );
    sim.run_until_quiet(1_000).unwrap();
    assert_eq!(
        sim.node(victim).unwrap().ticks,
        5,
        "timers run again after the restart"
    );
}

#[test]
fn an_invariant_violation_names_the_seed_and_step() {
    let mut sim = network(77, Faults::NONE, 4);
    let first = sim.ids()[0];
    sim.set_invariant(|s| {
        let total: usize = s.nodes().map(|(_, n, _)| n.seen.len()).sum();
        if total > 2 {
            Err(format!("{total} rumors seen"))
        } else {
            Ok(())
        }
    });
    start_rumor(&mut sim, first, 1);
    let err = sim.run_until_quiet(1_000).unwrap_err();
    match &err {
        LatticeError::InvariantViolated {
            seed,
            step,
            message,
            ..
        } => {
            assert_eq!(*seed, 77);
            assert!(*step >= 1);
            assert_eq!(message, "3 rumors seen");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("HOLOGRAM_SEED=77"));
}

#[test]
fn check_seeds_reports_the_failing_seed() {
    let result = std::panic::catch_unwind(|| {
        check_seeds("always fails on 2", 5, |seed| {
            if seed == 2 {
                Err("boom".into())
            } else {
                Ok(())
            }
        })
    });
    let panic = result.unwrap_err();
    let text = panic.downcast_ref::<String>().unwrap();
    if std::env::var(SEED_VAR).is_err() {
        assert!(text.contains("seed 2 failed: boom"), "{text}");
        assert!(text.contains("HOLOGRAM_SEED=2"), "{text}");
    }
}

#[test]
fn faults_are_normalized() {
    let f = Faults {
        loss: 7.0,
        duplicate: f64::NAN,
        corrupt: -1.0,
        latency_ms: (9, 3),
    }
    .normalized();
    assert_eq!(
        f,
        Faults {
            loss: 1.0,
            duplicate: 0.0,
            corrupt: 0.0,
            latency_ms: (3, 9)
        }
    );
}
