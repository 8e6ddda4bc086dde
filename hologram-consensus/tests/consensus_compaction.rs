//! Log compaction and state sync over the driver: four validators over a
//! `MemoryNetwork`, each running a replicated state machine snapshotted
//! every few heights, keep their log in a store. Under a steady workload
//! the entries and bytes of each store's log stay bounded (the blocks below
//! each certified snapshot are deleted with it); a validator restarted on
//! an empty store fetches the newest certified snapshot from its peers,
//! restores it, catches up the tail and commits again; every store then
//! reopens to the same state (snapshot restored, tail replayed).

mod support;

use futures::executor::{LocalPool, LocalSpawner};
use futures::StreamExt;
use hologram_cam::{ChunkParams, Name, Object, Store};
use hologram_consensus::{
    Command, ConsensusError, DurableLog, Executor, ReplicaConfig, ReplicatedStateMachine,
    SetChange, SetOp, SnapshotConfig, ValidatorSet,
};
use hologram_lattice::transport::{MemoryNetwork, Timer};
use hologram_receipt::{KeyPair, ReceiptChain};
use std::sync::Arc;
use std::time::Duration;
use support::counting::Counting;
use support::decided::{validators, Registers};
use support::driven::{start_driver, Running};
use support::MachineFactory;

const INTERVAL: u64 = 8;

fn snapshots() -> SnapshotConfig {
    SnapshotConfig {
        interval: INTERVAL,
        chunks: ChunkParams {
            min: 256,
            avg: 1024,
            max: 4096,
        },
    }
}

fn machine(set: ValidatorSet) -> MachineFactory {
    Arc::new(move || {
        Box::new(ReplicatedStateMachine::new(
            Registers::default(),
            set.clone(),
        )) as Box<dyn Executor>
    })
}

/// A validator running, and the newest height it delivered.
struct Node {
    running: Running,
    delivered: Option<u64>,
}

fn start(
    spawner: &LocalSpawner,
    pool: &mut LocalPool,
    network: &MemoryNetwork,
    timer: &Timer,
    keys: &KeyPair,
    set: &ValidatorSet,
    store: Arc<dyn Store>,
) -> Node {
    let mut config = ReplicaConfig::new(set.clone());
    config.max_batch = 8;
    let machine = Some((machine(set.clone()), snapshots()));
    let (running, _) = start_driver(spawner, pool, network, timer, keys, store, config, machine);
    Node {
        running,
        delivered: None,
    }
}

/// Submits `commands` to every running validator and waits until each has
/// delivered a decision carrying the last of them.
fn commit(pool: &mut LocalPool, nodes: &mut [Node], commands: &[Command]) {
    for r in nodes.iter() {
        pool.run_until(r.running.handle.submit(commands.to_vec(), false))
            .expect("accepted");
    }
    let last = commands.last().expect("commands").id();
    let timer = Timer::new();
    for r in nodes.iter_mut() {
        loop {
            let next =
                pool.run_until(timer.timeout(Duration::from_secs(20), r.running.decisions.next()));
            let d = next.flatten().expect("a decision within 20 s");
            if let Some(h) = r.delivered {
                assert!(d.height() > h, "decisions in height order");
            }
            r.delivered = Some(d.height());
            if d.batch.commands().iter().any(|c| c.id() == last) {
                break;
            }
        }
    }
}

/// The state a store reopens to: its snapshot restored, its tail replayed.
fn reopened(
    pool: &mut LocalPool,
    set: &ValidatorSet,
    store: Arc<dyn Store>,
) -> (u64, ReceiptChain, u64) {
    let (log, recovered) = pool
        .run_until(DurableLog::open(store, set.clone()))
        .expect("open");
    assert!(recovered.rejected.is_empty(), "{:?}", recovered.rejected);
    let mut m = machine(set.clone())();
    if let Some((d, parts)) = &recovered.snapshot {
        let c = d.batch.checkpoint().expect("a checkpoint");
        m.restore(&parts.bytes(), c)
            .expect("the certified snapshot restores");
    }
    for d in &recovered.decisions {
        m.execute(d).expect("the tail applies");
    }
    (m.next_height(), m.chain(), log.start())
}

#[test]
fn the_log_stays_bounded_and_an_empty_validator_syncs_from_a_snapshot() {
    let (keys, set) = validators();
    let network = MemoryNetwork::new(11);
    let timer = Timer::new();
    let mut pool = LocalPool::new();
    let spawner = pool.spawner();
    let stores: Vec<Arc<Counting>> = (0..4).map(|_| Arc::new(Counting::default())).collect();
    let mut nodes: Vec<Node> = keys
        .iter()
        .zip(&stores)
        .map(|(k, s)| start(&spawner, &mut pool, &network, &timer, k, &set, s.clone()))
        .collect();

    // A steady workload: 60 waves of 16 commands (two batches each) that
    // set the same 16 registers, from one client that claims its answers
    // (so the state and the session table stay the same size).
    let client = KeyPair::from_seed([0xc7; 32]);
    let wave = |w: u64| -> Vec<Command> {
        (0..16u64)
            .map(|i| {
                let sequence = w * 16 + i;
                let bytes = format!("k{i}={w}").into_bytes();
                Command::sign(&client, sequence, sequence, bytes).expect("small")
            })
            .collect()
    };
    // The largest named key space of any store in each third of the run.
    let mut peaks = [(0usize, 0usize); 3];
    for w in 0..60u64 {
        commit(&mut pool, &mut nodes, &wave(w));
        for s in &stores {
            let (entries, bytes) = s.named();
            let p = &mut peaks[(w / 20) as usize];
            *p = (p.0.max(entries), p.1.max(bytes));
        }
    }
    let height = nodes[0].delivered.expect("decided");
    assert!(height >= 6 * INTERVAL, "{height} heights decided");
    // Bounded: the blocks after the newest certified snapshot, its parts,
    // base and the voting record; the same in the last third of the run as
    // in the second (without compaction there is a block per height).
    println!("height {height}; named entries and bytes, peak per third of the run: {peaks:?}");
    assert!(
        peaks[2].0 < height as usize / 2,
        "{peaks:?} at height {height}"
    );
    assert!(
        peaks[2].0 <= peaks[1].0 + INTERVAL as usize && peaks[2].1 <= peaks[1].1 * 5 / 4,
        "the log grows: {peaks:?}"
    );

    // Validator 3 is replaced by an empty one with the same key: its peers'
    // logs start after their snapshots, so it must sync from a snapshot.
    nodes[3].running.handle.stop();
    pool.run_until_stalled();
    nodes.pop();
    let empty = Arc::new(Counting::default());
    nodes.push(start(
        &spawner,
        &mut pool,
        &network,
        &timer,
        &keys[3],
        &set,
        empty.clone(),
    ));
    commit(&mut pool, &mut nodes, &wave(60));
    let (.., start3) = reopened(&mut pool, &set, empty.clone());
    assert!(start3 > 0, "the empty validator's log starts at a snapshot");

    // Everyone stops; every store reopens to the same state.
    for r in &nodes {
        r.running.handle.stop();
    }
    pool.run_until_stalled();
    let states: Vec<_> = stores[..3]
        .iter()
        .map(|s| s.clone() as Arc<dyn Store>)
        .chain([empty as Arc<dyn Store>])
        .map(|s| reopened(&mut pool, &set, s))
        .collect();
    let (top, chain, _) = states[0];
    for (next, c, start) in &states {
        assert!(*start > 0, "every log was compacted");
        if *next == top {
            assert_eq!(*c, chain, "same state at the same height");
        }
    }
    assert!(states.iter().filter(|s| s.0 == top).count() >= 3);

    // A stored snapshot chunk cut short, or replaced: refused at open with
    // a specific error, and no snapshot is restored from it.
    let part1 = Name::new(b"hologram-consensus/log/snapshot/\0\0\0\x01".to_vec()).expect("name");
    for (i, tamper) in [
        |b: &[u8]| b[..b.len() - 1].to_vec(),
        |b: &[u8]| b.iter().map(|x| x ^ 1).collect::<Vec<u8>>(),
    ]
    .into_iter()
    .enumerate()
    {
        let store = stores[i].clone();
        let chunk = pool
            .run_until(store.get_named(&part1))
            .expect("read")
            .expect("a first chunk");
        let bad = Object::new(tamper(chunk.data()));
        pool.run_until(store.set_named(vec![(part1.clone(), Some(bad))]))
            .expect("write");
        let (_, recovered) = pool
            .run_until(DurableLog::open(store as Arc<dyn Store>, set.clone()))
            .expect("open");
        assert!(
            recovered.snapshot.is_none(),
            "nothing restored from a tampered chunk"
        );
        let refused = recovered.rejected.iter().any(|(_, e)| match i {
            0 => matches!(e, ConsensusError::SnapshotChunkLength { part: 1, .. }),
            _ => matches!(e, ConsensusError::SnapshotAddress { part: 1, .. }),
        });
        assert!(refused, "{:?}", recovered.rejected);
    }
}

#[test]
fn a_compacted_log_keeps_the_links_of_the_set_changes_below_it() {
    // A set change is decided, then the log is compacted well past it: the
    // change's block is deleted with the rest, but its certified decision
    // (the link a node behind that change needs, as a light client, to
    // trust the sets after it) is kept, and comes back at open.
    let (keys, set) = validators();
    let network = MemoryNetwork::new(12);
    let timer = Timer::new();
    let mut pool = LocalPool::new();
    let spawner = pool.spawner();
    let stores: Vec<Arc<Counting>> = (0..4).map(|_| Arc::new(Counting::default())).collect();
    let mut nodes: Vec<Node> = keys
        .iter()
        .zip(&stores)
        .map(|(k, s)| start(&spawner, &mut pool, &network, &timer, k, &set, s.clone()))
        .collect();
    let client = KeyPair::from_seed([0xc8; 32]);
    let wave = |w: u64| -> Vec<Command> {
        (0..8u64)
            .map(|i| {
                let sequence = w * 8 + i;
                let bytes = format!("k{i}={w}").into_bytes();
                Command::sign(&client, sequence, sequence, bytes).expect("small")
            })
            .collect()
    };
    commit(&mut pool, &mut nodes, &wave(0));
    // A fifth validator is added (it never runs: four of five are a quorum).
    let op = SetOp::Add(KeyPair::from_seed([0x55; 32]).node_id());
    let approvals = keys[..3]
        .iter()
        .map(|k| SetChange::approve(k, 0, &set, &op))
        .collect();
    let change = SetChange::new(0, op, approvals);
    for n in &nodes {
        // Taken, or already decided (a peer proposed it first).
        match pool.run_until(n.running.handle.propose_set_change(change.clone())) {
            Ok(()) | Err(ConsensusError::SetChangeRefused { version: 0, .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let mut w = 1;
    let mut compacted_past = None;
    while compacted_past.is_none() {
        assert!(w < 120, "no compaction past the change by wave {w}");
        commit(&mut pool, &mut nodes, &wave(w));
        w += 1;
        if w % 8 == 0 {
            let (log, recovered) = pool
                .run_until(DurableLog::open(
                    stores[0].clone() as Arc<dyn Store>,
                    set.clone(),
                ))
                .expect("open");
            let m = recovered.membership.expect("a membership");
            if m.version() == 1 && log.start() > 0 && log.start() > change_height(&m) {
                compacted_past = Some((log.start(), m));
            }
        }
    }
    let (start, m) = compacted_past.expect("compacted");
    let links: Vec<u64> = m
        .links()
        .iter()
        .filter_map(|d| d.batch.set_change().map(|c| c.version))
        .collect();
    assert_eq!(
        links,
        vec![0],
        "the link of change 0 (log starts at {start})"
    );
    for n in &nodes {
        n.running.handle.stop();
    }
    pool.run_until_stalled();
}

/// The height the newest set change was decided at, from the sets: the
/// newest set is in force `delay` heights later.
fn change_height(m: &hologram_consensus::Membership) -> u64 {
    m.sets()
        .last()
        .map_or(u64::MAX, |(from, _)| from.saturating_sub(m.delay()))
}
