//! The whole stack under one nemesis: see `tests/whole_stack.rs`.

pub mod bank;
pub mod broadcast;
pub mod dedup;
pub mod group_checks;
pub mod group_gate;
pub mod group_transfers;
pub mod groups;
pub mod replicas;
pub mod routing;
pub mod tally;
pub mod trace;

use crate::consensus_cluster::byzantine::Behaviour;
use crate::consensus_cluster::Cluster;
use bank::Bank;
use broadcast::BroadcastNet;
use dedup::DedupNet;
use groups::{Runner, ShardGroups};
use hologram_lattice::sim::{Executor, Faults};
use hologram_lattice::NodeId;
use hologram_receipt::KeyPair;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use replicas::Replicas;
use routing::Routing;
use std::collections::{BTreeMap, BTreeSet};
pub use tally::Tally;
use trace::Trace;

/// Nodes of the stack. Node i has one key for every layer it serves.
pub const NODES: usize = 16;
/// Bank shards (single-replica participants): nodes 8..12.
const PARTICIPANTS: std::ops::Range<usize> = 8..12;
/// Bank coordinators: nodes 12..15.
const CLIENTS: std::ops::Range<usize> = 12..15;
/// The node that forges broadcasts and transfer decisions, and substitutes
/// objects it is asked to hold.
const BYZANTINE: usize = 15;
/// Nodes down at once at most (besides partitions).
const MAX_DOWN: usize = 3;
/// Largest one-way latency the nemesis sets (the consensus timeouts are
/// sized for it).
const MAX_LATENCY_MS: u64 = 40;
/// Virtual time the nemesis runs, and the tick of the workload.
const CHAOS_MS: u64 = 3_000;
const TICK_MS: u64 = 20;
/// A nemesis step every this many ticks.
const NEMESIS_EVERY: u64 = 5;

/// The key of node `i` (the consensus cluster derives its validators' keys
/// the same way, so validator i is node i).
pub fn node_key(seed: u64, i: usize) -> KeyPair {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(&(i as u64).to_le_bytes());
    s[31] = 0x5a;
    KeyPair::from_seed(s)
}

/// Every layer of the stack, on one node set, under one nemesis.
pub struct Stack {
    seed: u64,
    rng: ChaCha8Rng,
    /// The storage layer's own choices, so that its outcomes
    /// never shift what the simulated layers draw.
    storage_rng: ChaCha8Rng,
    ids: Vec<NodeId>,
    validators: usize,
    consensus: Cluster,
    replicas: Replicas,
    broadcast: BroadcastNet,
    bank: Bank,
    dedup: DedupNet,
    routing: Routing,
    shards: ShardGroups,
    down: BTreeSet<usize>,
    /// The partition in force, if any.
    groups: Option<Vec<Vec<NodeId>>>,
    tally: Tally,
    behaviours: Vec<Behaviour>,
    /// Runs the async layers (storage, the replicated groups) on the
    /// virtual clock, moved with the simulators' at every tick.
    exec: Executor,
    trace: Trace,
}

fn network_faults(rng: &mut ChaCha8Rng) -> Faults {
    Faults {
        loss: rng.random_range(0.0..0.12),
        duplicate: rng.random_range(0.0..0.08),
        corrupt: rng.random_range(0.0..0.02),
        latency_ms: (1, rng.random_range(5..=MAX_LATENCY_MS)),
    }
}

impl Stack {
    /// Builds the stack of `seed`: 4 or 7 validators (1 or 2 Byzantine,
    /// behaviours from the seed), broadcast on all nodes, four bank shards
    /// and three coordinators, two replicated shard groups, deduplicated
    /// storage on every node.
    pub fn new(seed: u64) -> Stack {
        Self::traced(seed, Trace::off())
    }

    /// [`new`](Self::new), recording into `trace`.
    pub fn traced(seed: u64, trace: Trace) -> Stack {
        let exec = Executor::new();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5741_434b);
        let f = rng.random_range(1..=2usize);
        let validators = 3 * f + 1;
        let behaviours: Vec<Behaviour> = (0..f)
            .map(|_| *Behaviour::ALL.choose(&mut rng).expect("behaviours"))
            .collect();
        let keys: Vec<KeyPair> = (0..NODES).map(|i| node_key(seed, i)).collect();
        let ids: Vec<NodeId> = keys.iter().map(KeyPair::node_id).collect();
        let faults = network_faults(&mut rng);
        let consensus = Cluster::new(
            seed,
            validators,
            &behaviours,
            1,
            Faults {
                latency_ms: (1, MAX_LATENCY_MS),
                ..faults.clone()
            },
        );
        debug_assert_eq!(consensus.ids[..], ids[..validators]);
        let replicas = Replicas::new(consensus.set.clone());
        let broadcast = BroadcastNet::new(seed, &keys, BYZANTINE, faults.clone());
        let clients: Vec<NodeId> = ids[CLIENTS].to_vec();
        let bank = Bank::new(
            seed,
            &keys[PARTICIPANTS],
            &clients,
            keys[BYZANTINE].clone(),
            faults.clone(),
        );
        let wrap: groups::Wrap = {
            let (exec, trace) = (exec.clone(), trace.clone());
            std::sync::Arc::new(move |id, handler| trace.handler(&exec, id, handler))
        };
        let runner = Runner::Sim(exec.clone(), wrap);
        let shards = ShardGroups::new(seed, &faults, runner, &trace);
        let dedup = DedupNet::new(seed, &ids, BYZANTINE, &exec, &trace);
        dedup.set_faults(&faults);
        let tally = Tally {
            seeds: 1,
            byzantine_validators: f as u64,
            ..Tally::default()
        };
        Stack {
            routing: Routing::new(&ids),
            seed,
            rng,
            storage_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x000d_3d0b),
            ids,
            validators,
            consensus,
            replicas,
            broadcast,
            bank,
            dedup,
            shards,
            down: BTreeSet::new(),
            groups: None,
            tally,
            behaviours,
            exec,
            trace,
        }
    }

    fn set_faults(&mut self, faults: Faults) {
        self.consensus.sim.set_faults(faults.clone());
        self.broadcast.sim.set_faults(faults.clone());
        self.bank.sim.set_faults(faults.clone());
        self.dedup.set_faults(&faults);
        self.shards.set_faults(&faults);
    }

    fn crash(&mut self, i: usize) {
        let id = self.ids[i];
        if i < self.validators {
            self.consensus.sim.crash(id);
        }
        self.broadcast.sim.crash(id);
        if PARTICIPANTS.contains(&i) || CLIENTS.contains(&i) {
            self.bank.sim.crash(id);
            self.bank.crashed(id);
        }
        self.dedup.crash(id);
        self.shards.crash(id);
        self.down.insert(i);
        self.tally.crashes += 1;
    }

    fn restart(&mut self, i: usize) {
        let id = self.ids[i];
        self.consensus.sim.restart(id);
        self.broadcast.sim.restart(id);
        self.bank.sim.restart(id);
        self.dedup.restart(id);
        self.shards.restart(id);
        self.down.remove(&i);
        self.tally.restarts += 1;
    }

    fn partition(&mut self) {
        let mut order = self.ids.clone();
        order.shuffle(&mut self.rng);
        let cut = self.rng.random_range(1..=NODES / 2);
        let groups = vec![order[cut..].to_vec(), order[..cut].to_vec()];
        let parts: Vec<&[NodeId]> = groups.iter().map(Vec::as_slice).collect();
        self.consensus.sim.partition(&parts);
        self.broadcast.sim.partition(&parts);
        self.bank.sim.partition(&parts);
        self.dedup.partition(&groups);
        self.shards.partition(&groups);
        self.groups = Some(groups);
        self.tally.partitions += 1;
    }

    fn heal(&mut self) {
        self.consensus.sim.heal();
        self.broadcast.sim.heal();
        self.bank.sim.heal();
        self.dedup.heal();
        self.shards.heal();
        self.groups = None;
        self.tally.heals += 1;
    }

    /// One step of the nemesis, drawn from the seed.
    fn nemesis(&mut self) {
        match self.rng.random_range(0..6) {
            0 => {
                let faults = network_faults(&mut self.rng);
                self.set_faults(faults);
                self.tally.fault_changes += 1;
            }
            1 if self.groups.is_none() => self.partition(),
            1 | 2 if self.groups.is_some() => self.heal(),
            3 if self.down.len() < MAX_DOWN => {
                let i = self.rng.random_range(0..NODES);
                if !self.down.contains(&i) {
                    self.crash(i);
                }
            }
            4 => {
                let down: Vec<usize> = self.down.iter().copied().collect();
                if let Some(&i) = down.choose(&mut self.rng) {
                    self.restart(i);
                }
            }
            _ => {
                self.bank.forge();
                self.shards.forge();
            }
        }
    }

    /// The workload of one tick.
    fn workload(&mut self, now: u64) -> Result<(), String> {
        if self.rng.random_bool(0.3) {
            self.consensus.submit_random();
        }
        self.bank.collect();
        if self.rng.random_bool(0.4) {
            self.bank.submit_random();
        }
        self.shards.step();
        if self.rng.random_bool(0.05) {
            let origin = *self
                .broadcast
                .honest
                .choose(&mut self.rng)
                .ok_or("no honest node")?;
            self.broadcast
                .broadcast(origin, format!("seed {} at {now}", self.seed).as_bytes());
        }
        if self.rng.random_bool(0.5) {
            // Storage and consensus compose: every acknowledged object's
            // address goes into the replicated index.
            let to = *self
                .consensus
                .honest
                .choose(&mut self.rng)
                .ok_or("no honest validator")?;
            if let Some(address) = self.dedup.step(&mut self.storage_rng, self.seed)? {
                if self.replicas.index_object(&mut self.consensus, to, address) {
                    self.tally.indexed += 1;
                }
            }
        }
        Ok(())
    }

    fn run_until(&mut self, t: u64) -> Result<(), String> {
        self.consensus
            .sim
            .run_until(t)
            .map_err(|e| format!("consensus: {e}"))?;
        self.broadcast.sim.run_until(t).map_err(|e| e.to_string())?;
        self.bank.sim.run_until(t).map_err(|e| e.to_string())?;
        // The async layers' clock follows; the calls between ticks may have
        // moved it past `t` already (they wait in virtual time while the
        // simulators stand still), then this only runs what is ready.
        self.exec.run_until(t);
        self.trace.record(|| {
            let heights: Vec<u64> = self
                .consensus
                .sim
                .nodes()
                .filter_map(|(_, node, _)| node.honest().map(|h| h.node.log().len() as u64))
                .collect();
            format!(
                "tick {t} (async clock {}): consensus {:?} heights {heights:?}; broadcast {:?}; bank {:?}",
                self.exec.now(),
                self.consensus.sim.stats(),
                self.broadcast.sim.stats(),
                self.bank.sim.stats()
            )
        });
        Ok(())
    }

    /// The nodes that are up.
    fn up(&self) -> BTreeSet<NodeId> {
        (0..NODES)
            .filter(|i| !self.down.contains(i))
            .map(|i| self.ids[i])
            .collect()
    }

    /// What each node can reach: the nodes up on its side of any partition.
    fn reachable(&self) -> BTreeMap<NodeId, BTreeSet<NodeId>> {
        let up = self.up();
        self.ids
            .iter()
            .map(|&me| {
                let side: BTreeSet<NodeId> = match &self.groups {
                    Some(groups) => groups
                        .iter()
                        .find(|g| g.contains(&me))
                        .map(|g| g.iter().filter(|p| up.contains(p)).copied().collect())
                        .unwrap_or_default(),
                    None => up.clone(),
                };
                (me, side)
            })
            .collect()
    }

    /// The invariants that are not checked inside a simulator's steps.
    fn check(&mut self, sample: Option<usize>) -> Result<(), String> {
        self.replicas.update(&self.consensus)?;
        let addresses = self.dedup.sample(&mut self.storage_rng, 2);
        let (up, view) = (self.up(), self.reachable());
        let reachable = |me: NodeId| view.get(&me).cloned().unwrap_or_default();
        self.routing.refresh(reachable)?;
        self.routing.check(&up, reachable, &addresses)?;
        self.broadcast.check_certificates()?;
        self.dedup.check(&mut self.storage_rng, sample)?;
        self.shards.check()?;
        self.tally.checks += 1;
        Ok(())
    }

    /// Phase 1: the nemesis runs for `CHAOS_MS` with the workload; every
    /// invariant is checked after every step of every simulator and, for
    /// the rest, after every tick (so after every nemesis step).
    pub fn chaos(&mut self) -> Result<(), String> {
        let mut t = 0;
        let mut tick = 0u64;
        while t < CHAOS_MS {
            tick += 1;
            if tick.is_multiple_of(NEMESIS_EVERY) {
                self.nemesis();
            }
            self.workload(t)?;
            t += TICK_MS;
            self.run_until(t)?;
            self.check(Some(2))?;
        }
        self.check(None)
    }

    /// Phase 2: the nemesis stops (heal, restart everyone, a clean network);
    /// new commands commit, a new broadcast delivers everywhere with a
    /// certificate, new transfers commit, new objects store.
    pub fn liveness(&mut self) -> Result<(), String> {
        for i in self.down.clone() {
            self.restart(i);
        }
        if self.groups.is_some() {
            self.heal();
        }
        let calm = Faults {
            latency_ms: (1, 20),
            ..Faults::NONE
        };
        self.set_faults(calm);
        self.consensus.calm();
        // Consensus: fresh commands at every honest validator commit.
        let mut fresh = Vec::new();
        for id in self.consensus.honest.clone() {
            fresh.extend(self.consensus.submit_to(id));
        }
        let deadline = self.consensus.sim.now() + 30_000;
        self.consensus
            .run_until_committed(&fresh, deadline)
            .map_err(|e| format!("consensus liveness ({:?}): {e}", self.behaviours))?;
        // Broadcast: delivered at every honest node, and certified.
        let origin = self.broadcast.honest[0];
        let id = self
            .broadcast
            .broadcast(origin, b"after the nemesis")
            .ok_or("broadcast: the origin is down after the restart")?;
        let mut t = self.broadcast.sim.now();
        let end = t + 30_000;
        while (self.broadcast.missing(origin, id) > 0 || !self.broadcast.certified(origin, id))
            && t < end
        {
            t += 50;
            self.broadcast.sim.run_until(t).map_err(|e| e.to_string())?;
        }
        if self.broadcast.missing(origin, id) > 0 || !self.broadcast.certified(origin, id) {
            return Err(format!(
                "broadcast liveness: {} honest nodes missing, certified: {}",
                self.broadcast.missing(origin, id),
                self.broadcast.certified(origin, id)
            ));
        }
        // Bank: the network goes quiet, nothing is left half done, new
        // transfers commit.
        let quiet_by = self.bank.sim.now() + 60_000;
        if !self
            .bank
            .sim
            .run_until_quiet(quiet_by)
            .map_err(|e| e.to_string())?
        {
            return Err("bank: the network never went quiet after faults stopped".into());
        }
        self.bank.collect();
        self.bank.check_settled()?;
        let mut committed = 0;
        let end = self.bank.sim.now() + 60_000;
        let mut pending = None;
        while committed < 3 && self.bank.sim.now() < end {
            match pending {
                None => pending = self.bank.submit_random(),
                Some(txn) if self.bank.committed(&txn) => {
                    committed += 1;
                    pending = None;
                }
                Some(txn) if self.bank.reported_err(&txn) => pending = None,
                Some(_) => {}
            }
            let t = self.bank.sim.now() + 10;
            self.bank.sim.run_until(t).map_err(|e| e.to_string())?;
            self.bank.collect();
        }
        if committed < 3 {
            return Err(format!(
                "bank liveness: {committed} of 3 new transfers committed"
            ));
        }
        self.shards.liveness()?;
        // Storage: a new object is stored and every acknowledged one reads
        // back; so does every object of the replicated index still held.
        self.dedup.check_live(self.seed)?;
        self.check(None)?;
        for address in self.replicas.indexed() {
            if self.dedup.read_indexed(address)? {
                self.tally.index_reads += 1;
            }
        }
        Ok(())
    }

    /// What this run injected and checked.
    pub fn tally(&self) -> Tally {
        let mut t = self.tally.clone();
        t.network(self.consensus.sim.stats());
        t.network(self.broadcast.sim.stats());
        t.network(self.bank.sim.stats());
        t.forged_broadcasts = self.broadcast.forged_sent();
        t.forged_decisions = self.bank.forged_sent;
        t.substituted_answers = self
            .dedup
            .substituted
            .load(std::sync::atomic::Ordering::Relaxed);
        t.commits = self.replicas.heights() as u64;
        t.broadcasts_certified = self.broadcast.check_certificates().unwrap_or(0) as u64;
        t.transfers_committed = self.bank.committed_count() as u64;
        t.objects_acked = self.dedup.stores_acked;
        t.objects_failed = self.dedup.stores_failed;
        t.routes_checked = self.routing.routes_checked;
        t.reads_checked = self.dedup.reads_checked;
        self.shards.tally(&mut t);
        t
    }

    /// The Byzantine validators' behaviours.
    pub fn behaviours(&self) -> &[Behaviour] {
        &self.behaviours
    }
}
