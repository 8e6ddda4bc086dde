//! The snapshot campaign: every honest validator runs a replicated state
//! machine snapshotted every few heights; leaders propose checkpoints,
//! validators check them against their own machines, and a certified one
//! compacts the log. Under loss, duplication, reordering, corruption,
//! partitions, crash–restart, nodes wiped to nothing, and one Byzantine
//! validator that offers its certified snapshot to everyone and answers
//! every part request with lies, every node behind a compacted log catches
//! up by state sync.
//!
//! After every step, besides the invariants of `support::invariant`
//! (agreement, certificates, equivocation proofs, on logs that may start
//! later after compaction):
//!
//! - an oracle machine replays the decided heights from 0; every certified
//!   checkpoint is the one the oracle computes at its height (its snapshot
//!   address and chain head);
//! - every honest machine has applied exactly its log: its next height is
//!   the log's end, and its receipt chain is the oracle's at that height
//!   (restored machines and replayed ones agree);
//! - whenever an honest machine sits at a snapshot height, its snapshot's
//!   bytes are the oracle's (the whole state: machine, sessions, chain);
//! - an honest node's log holds at most a bounded number of heights beyond
//!   its certified snapshot once compaction has begun.
//!
//! After the faults: every honest node, the wiped ones included, applies
//! new commands, and all machines agree with the oracle.
//!
//! Seeds: `HOLOGRAM_SEEDS=<n>` soaks, `HOLOGRAM_SEED=<s>` replays one.

mod support;

use hologram_cam::ChunkParams;
use hologram_consensus::{
    CommandId, Decision, Executor, ReplicatedStateMachine, SnapshotConfig, SnapshotParts,
};
use hologram_lattice::sim::{check_seeds, Simulation};
use hologram_lattice::NodeId;
use hologram_receipt::ReceiptChain;
use rand::RngExt;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use support::byzantine::Behaviour;
use support::decided::Registers;
use support::{faulty_network, unbounded_window, Cluster, MachineFactory, TestNode};

const INTERVAL: u64 = 4;

/// Over every run: snapshots restored by state sync, and lies of the
/// Byzantine snapshot server detected (blamed by an honest node).
static RESTORES: AtomicU64 = AtomicU64::new(0);
static LIES_DETECTED: AtomicU64 = AtomicU64::new(0);

fn snapshots() -> SnapshotConfig {
    SnapshotConfig {
        interval: INTERVAL,
        // Small chunks: snapshots of a few KiB are many parts.
        chunks: ChunkParams {
            min: 64,
            avg: 256,
            max: 1024,
        },
    }
}

fn machine(set: hologram_consensus::ValidatorSet) -> MachineFactory {
    Arc::new(move || {
        Box::new(ReplicatedStateMachine::with_limits(
            Registers::default(),
            set.clone(),
            unbounded_window(),
        )) as Box<dyn Executor>
    })
}

/// The oracle: the decided heights replayed from 0 on one machine.
struct Oracle {
    machine: Box<dyn Executor>,
    /// Every decided height seen, by height (until applied).
    decided: BTreeMap<u64, Decision>,
    /// The chain after each number of heights applied.
    chains: Vec<ReceiptChain>,
    /// The snapshot bytes and address at each snapshot height.
    snapshots: HashMap<u64, (Vec<u8>, hologram_lattice::Address)>,
    /// (node, height) whose snapshot was compared.
    compared: HashMap<NodeId, u64>,
    /// The height that decided each command applied.
    applied: HashMap<CommandId, u64>,
}

impl Oracle {
    fn advance(&mut self) -> Result<(), String> {
        while let Some(d) = self.decided.remove(&self.machine.next_height()) {
            for c in d.batch.commands() {
                self.applied.entry(c.id()).or_insert(d.height());
            }
            self.machine
                .execute(&d)
                .map_err(|e| format!("oracle: {e}"))?;
            self.chains.push(self.machine.chain());
            let next = self.machine.next_height();
            if snapshots().due(next) {
                let bytes = self.machine.snapshot().map_err(|e| e.to_string())?;
                let address = SnapshotParts::split(&bytes, snapshots().chunks)
                    .map_err(|e| e.to_string())?
                    .address();
                self.snapshots.insert(next, (bytes, address));
            }
        }
        Ok(())
    }

    fn check(&mut self, sim: &Simulation<TestNode>) -> Result<(), String> {
        for (_, node, _) in sim.nodes() {
            let Some(h) = node.honest() else { continue };
            let first = h.node.log_first();
            for (i, d) in h.node.log().iter().enumerate() {
                let height = first + i as u64;
                if height >= self.machine.next_height() {
                    self.decided.entry(height).or_insert_with(|| d.clone());
                }
            }
        }
        self.advance()?;
        for (id, node, _) in sim.nodes() {
            let Some(h) = node.honest() else { continue };
            let Some(m) = h.node.machine() else {
                return Err(format!("{id}: runs no machine"));
            };
            let end = h.node.log_first() + h.node.log().len() as u64;
            if m.next_height() != end {
                return Err(format!(
                    "{id}: its machine is at {} but its log ends at {end} (from {})",
                    m.next_height(),
                    h.node.log_first()
                ));
            }
            if let Some(chain) = end.checked_sub(1).and_then(|i| self.chains.get(i as usize)) {
                if m.chain() != *chain {
                    return Err(format!(
                        "{id}: its receipt chain at {end} is not the oracle's"
                    ));
                }
            }
            // Every certified checkpoint is the oracle's.
            if let Some((d, parts)) = h.node.certified_snapshot() {
                let c = d
                    .batch
                    .checkpoint()
                    .ok_or("a certified snapshot without a checkpoint")?;
                if let Some((_, address)) = self.snapshots.get(&c.height) {
                    if *address != c.snapshot || parts.address() != c.snapshot {
                        return Err(format!(
                            "{id}: the snapshot certified at {} is not the replayed machine's",
                            c.height
                        ));
                    }
                }
                // Compaction: the log holds the heights after the snapshot.
                if h.node.log_first() < c.height {
                    return Err(format!(
                        "{id}: certified snapshot at {} but the log starts at {}",
                        c.height,
                        h.node.log_first()
                    ));
                }
            }
            if snapshots().due(end) && self.compared.get(&id) != Some(&end) {
                if let Some((bytes, _)) = self.snapshots.get(&end) {
                    let mine = m.snapshot().map_err(|e| e.to_string())?;
                    if mine != *bytes {
                        return Err(format!(
                            "{id}: its state at height {end} is not the replayed machine's"
                        ));
                    }
                    self.compared.insert(id, end);
                }
            }
        }
        Ok(())
    }
}

struct Campaign {
    depth: usize,
    partitions: bool,
    crashes: bool,
    wipes: bool,
}

fn run(seed: u64, campaign: Campaign) -> Result<(), String> {
    let behaviours = [Behaviour::LyingSnapshots];
    let keys_set = {
        // The set is drawn inside the cluster: build once to read it.
        let c = Cluster::new(seed, 4, &behaviours, campaign.depth, faulty_network());
        c.set.clone()
    };
    let mut c = Cluster::with_machines(
        seed,
        4,
        &behaviours,
        campaign.depth,
        faulty_network(),
        machine(keys_set.clone()),
        snapshots(),
    );
    let oracle = Rc::new(RefCell::new(Oracle {
        machine: machine(keys_set.clone())(),
        decided: BTreeMap::new(),
        chains: Vec::new(),
        snapshots: HashMap::new(),
        compared: HashMap::new(),
        applied: HashMap::new(),
    }));
    let mut safety = support::invariant(c.set.clone());
    let o = oracle.clone();
    c.sim.set_invariant(move |sim| {
        safety(sim)?;
        o.borrow_mut().check(sim)
    });
    let mut t = 0;
    // Rounds of 1.5 s of faults then 1 s of calm (so that heights are
    // decided, snapshots certified and logs compacted between faults).
    while t < 7_500 {
        let faulty = t % 2_500 < 1_500;
        if t % 2_500 == 0 {
            c.sim.set_faults(faulty_network());
        }
        if t % 2_500 == 1_500 {
            c.calm();
        }
        for _ in 0..3 {
            if c.sim.rng().random_bool(0.5) {
                let key = c.sim.rng().random_range(0..40u32);
                let bytes = format!("k{key}={t}").into_bytes();
                let to = c.honest[c.sim.rng().random_range(0..c.honest.len())];
                let command = c.command_of(bytes);
                c.sim.with_node(to, |node, ctx| {
                    if let TestNode::Honest(h) = node {
                        let _ = h.node.submit(ctx, vec![command], true);
                    }
                });
            }
        }
        if faulty && campaign.partitions && t % 500 == 0 {
            if c.sim.rng().random_bool(0.5) {
                c.random_partition();
            } else {
                c.sim.heal();
            }
        }
        if faulty && campaign.crashes && t % 300 == 0 {
            c.random_crash_restart(0.25);
        }
        // A node wiped to nothing at the start of each faulty period after
        // the first: it must come back by state sync.
        if campaign.wipes && t > 0 && t % 2_500 == 0 {
            let id = c.honest[c.sim.rng().random_range(0..c.honest.len())];
            c.wipe(id);
        }
        t += 20;
        c.sim.run_until(t).map_err(|e| e.to_string())?;
    }
    c.calm();
    let mut fresh = Vec::new();
    for id in c.honest.clone() {
        fresh.extend(c.submit_to(id));
    }
    // Applied by every honest machine (a log compacted since no longer
    // holds the heights: the machine's height says).
    let deadline = c.sim.now() + 30_000;
    loop {
        let applied = {
            let o = oracle.borrow();
            let heights: Option<Vec<u64>> = fresh
                .iter()
                .map(|x| o.applied.get(&x.id()).copied())
                .collect();
            heights
                .and_then(|h| h.into_iter().max())
                .is_some_and(|top| {
                    (c.sim.nodes())
                        .filter_map(|(_, n, _)| n.honest())
                        .all(|h| h.node.machine().is_some_and(|m| m.next_height() > top))
                })
        };
        if applied {
            break;
        }
        if c.sim.now() >= deadline {
            let nodes: Vec<String> = (c.sim.nodes())
                .filter_map(|(id, n, _)| {
                    n.honest().map(|h| format!("{id}: {:?}", h.node.replica()))
                })
                .collect();
            return Err(format!(
                "liveness: fresh commands not applied everywhere (oracle at {})\n{}",
                oracle.borrow().machine.next_height(),
                nodes.join("\n")
            ));
        }
        let t = c.sim.now() + 50;
        c.sim.run_until(t).map_err(|e| e.to_string())?;
    }
    // Every machine agrees with the oracle, and compaction happened.
    let o = oracle.borrow();
    let height = o.machine.next_height();
    if height < 3 * INTERVAL {
        let nodes: Vec<String> = (c.sim.nodes())
            .filter_map(|(id, n, _)| n.honest().map(|h| (id, h)))
            .map(|(id, h)| {
                format!(
                    "{id}: log {}..{}",
                    h.node.log_first(),
                    h.node.log_first() + h.node.log().len() as u64
                )
            })
            .collect();
        return Err(format!(
            "only {height} heights replayed (waiting: {:?}); {}",
            o.decided.keys().next(),
            nodes.join(", ")
        ));
    }
    for (id, node, _) in c.sim.nodes() {
        let Some(h) = node.honest() else { continue };
        let m = h.node.machine().ok_or("no machine")?;
        if m.next_height() == height && m.chain() != o.machine.chain() {
            return Err(format!("{id}: disagrees with the oracle at the end"));
        }
        RESTORES.fetch_add(h.node.restores(), Ordering::Relaxed);
        let lies = (h.node.misbehaviour().iter())
            .filter(|m| {
                c.byzantine.contains(&m.node)
                    && format!("{:?}", m.offence).contains("snapshot part")
            })
            .count();
        LIES_DETECTED.fetch_add(lies as u64, Ordering::Relaxed);
        if h.node.log_first() == 0 {
            return Err(format!(
                "{id}: its log was never compacted ({height} heights)"
            ));
        }
    }
    Ok(())
}

#[test]
fn lossy_network_with_a_lying_snapshot_server() {
    check_seeds("snapshots lossy", 3, |seed| {
        run(
            seed,
            Campaign {
                depth: 1,
                partitions: false,
                crashes: false,
                wipes: true,
            },
        )
    });
    // Wiped nodes came back by state sync, and the liar was caught.
    assert!(
        RESTORES.load(Ordering::Relaxed) > 0,
        "no snapshot was restored"
    );
    assert!(
        LIES_DETECTED.load(Ordering::Relaxed) > 0,
        "no lie was detected"
    );
}

#[test]
fn partitions_crashes_and_wiped_nodes() {
    check_seeds("snapshots every fault", 4, |seed| {
        run(
            seed,
            Campaign {
                depth: 1,
                partitions: true,
                crashes: true,
                wipes: true,
            },
        )
    });
}

#[test]
fn pipelined_with_every_fault() {
    check_seeds("snapshots pipelined", 3, |seed| {
        run(
            seed,
            Campaign {
                depth: 4,
                partitions: true,
                crashes: true,
                wipes: true,
            },
        )
    });
}
