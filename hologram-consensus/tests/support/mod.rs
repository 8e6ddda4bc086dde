//! A simulated consensus cluster with Byzantine validators and the safety
//! invariants checked after every step.
#![allow(dead_code)] // each test file uses part of it

pub mod byzantine;
pub mod counting;
pub mod decided;
pub mod driven;

use byzantine::{Behaviour, Byzantine};
use hologram_consensus::Slot;
use hologram_consensus::{
    Command, ConsensusMessage, Executor, ReplicaConfig, SessionLimits, SimReplica, SnapshotConfig,
    Timeouts, Timer, ValidatorSet, Vote, VoteKind,
};
use hologram_lattice::sim::{Context, Faults, Node, Recover, Simulation};
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Receipt};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::RngExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// An honest replica plus what the test saw delivered to it: the validly
/// signed votes of Byzantine validators it processed (the oracle for
/// "every equivocation observed produces a proof").
pub struct Honest {
    pub node: SimReplica,
    pub byzantine: HashSet<NodeId>,
    pub observed: HashMap<(NodeId, Slot), Vec<Vote>>,
    /// The receipts of the proposals delivered to it by their proposer
    /// itself while their height was undecided, by (height, round).
    pub proposed: HashMap<(u64, u32), HashSet<Receipt>>,
    /// Encoded bytes of every message delivered to it, and of the proposals
    /// among them that a replica other than the proposer passed on.
    pub bytes: u64,
    pub relayed_bytes: u64,
    /// The (height, round) of the value votes (not nil) of honest
    /// validators delivered to it.
    pub value_votes: HashSet<(u64, u32)>,
    /// How many times the node was wiped ([`Cluster::wipe`]): a wiped
    /// node's log starts again.
    pub wipes: u32,
}

impl Honest {
    pub fn new(node: SimReplica, byzantine: HashSet<NodeId>) -> Self {
        Self {
            node,
            byzantine,
            observed: HashMap::new(),
            proposed: HashMap::new(),
            bytes: 0,
            relayed_bytes: 0,
            value_votes: HashSet::new(),
            wipes: 0,
        }
    }
}

/// A node of the test network.
pub enum TestNode {
    Honest(Box<Honest>),
    Byzantine(Box<Byzantine>),
}

impl Node for TestNode {
    type Message = ConsensusMessage;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Context<'_, ConsensusMessage, Timer>) {
        match self {
            TestNode::Honest(h) => h.node.on_start(ctx),
            TestNode::Byzantine(b) => b.on_start(ctx),
        }
    }

    fn on_message(
        &mut self,
        ctx: &mut Context<'_, ConsensusMessage, Timer>,
        from: NodeId,
        message: ConsensusMessage,
    ) {
        match self {
            TestNode::Honest(h) => {
                let candidate = match &message {
                    ConsensusMessage::Vote(v)
                        if h.byzantine.contains(&v.voter)
                            && h.node.replica().accepts_height(v.slot.height)
                            && v.verify_signature().is_ok() =>
                    {
                        Some(*v)
                    }
                    _ => None,
                };
                let size = message.to_wire().map_or(0, |b| b.len() as u64);
                h.bytes += size;
                if let ConsensusMessage::Proposal(p) = &message {
                    if p.header.proposer != from {
                        h.relayed_bytes += size;
                    } else if h.node.replica().accepts_height(p.header.height) {
                        let key = (p.header.height, p.header.round);
                        h.proposed.entry(key).or_default().insert(p.header.value);
                    }
                }
                if let ConsensusMessage::Vote(v) = &message {
                    if v.value.is_some() && !h.byzantine.contains(&v.voter) {
                        h.value_votes.insert((v.slot.height, v.slot.round));
                    }
                }
                let refused = h.node.replica().vote_checks().refused;
                h.node.on_message(ctx, from, message);
                // A vote the replica refused unverified was not processed
                // (e.g. a conflict of an equivocation already proven).
                if let Some(v) = candidate {
                    if h.node.replica().vote_checks().refused == refused {
                        let seen = h.observed.entry((v.voter, v.slot)).or_default();
                        if !seen.contains(&v) {
                            seen.push(v);
                        }
                    }
                }
            }
            TestNode::Byzantine(b) => b.on_message(ctx, from, message),
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, ConsensusMessage, Timer>, timer: Timer) {
        match self {
            TestNode::Honest(h) => h.node.on_timer(ctx, timer),
            TestNode::Byzantine(b) => b.on_timer(ctx, timer),
        }
    }
}

impl Recover for TestNode {
    fn recover(&self) -> Self {
        match self {
            TestNode::Honest(h) => {
                let mut node = Honest::new(h.node.recover(), h.byzantine.clone());
                node.wipes = h.wipes;
                TestNode::Honest(Box::new(node))
            }
            TestNode::Byzantine(b) => TestNode::Byzantine(Box::new(b.recover())),
        }
    }
}

impl TestNode {
    pub fn honest(&self) -> Option<&Honest> {
        match self {
            TestNode::Honest(h) => Some(h),
            TestNode::Byzantine(_) => None,
        }
    }
}

/// The fault campaigns' network: loss, duplication, corruption, reordering.
pub fn faulty_network() -> Faults {
    Faults {
        loss: 0.05,
        duplicate: 0.05,
        corrupt: 0.01,
        latency_ms: (1, 30),
    }
}

/// Session limits for a machine fed a [`Cluster`]'s commands: the
/// cluster's client never claims an answer, so its window is unbounded.
pub fn unbounded_window() -> SessionLimits {
    SessionLimits {
        window: u64::MAX,
        ..SessionLimits::default()
    }
}

/// Fast timeouts for tests on a network of `latency` ms at most.
pub fn test_config(set: ValidatorSet, depth: usize, max_latency: u64) -> ReplicaConfig {
    let mut config = ReplicaConfig::new(set);
    config.max_batch = 16;
    config.max_pipeline_depth = depth;
    config.timeouts = Timeouts {
        propose_ms: 3 * max_latency + 20,
        prevote_ms: 2 * max_latency + 10,
        precommit_ms: 2 * max_latency + 10,
        round_increase_ms: max_latency + 10,
        resend_ms: 2 * max_latency + 20,
    };
    config
}

/// Makes a replicated state machine in its initial state.
pub type MachineFactory = Arc<dyn Fn() -> Box<dyn Executor> + Send + Sync>;

/// A cluster of `n` validators, `f` of them Byzantine.
pub struct Cluster {
    /// Every validator's keys, in the set's order.
    pub keys: Vec<KeyPair>,
    /// The replicas' configuration.
    pub config: ReplicaConfig,
    /// The machine honest nodes run, if any ([`Cluster::with_machines`]).
    pub machine: Option<(MachineFactory, SnapshotConfig)>,
    pub sim: Simulation<TestNode>,
    pub set: ValidatorSet,
    pub ids: Vec<NodeId>,
    pub honest: Vec<NodeId>,
    pub byzantine: Vec<NodeId>,
    next_command: u64,
    /// The client that signs the commands of [`Cluster::command`].
    pub client: KeyPair,
}

impl Cluster {
    /// `behaviours` (one per Byzantine validator, which are chosen at random).
    pub fn new(
        seed: u64,
        n: usize,
        behaviours: &[Behaviour],
        depth: usize,
        faults: Faults,
    ) -> Cluster {
        Self::build(seed, n, behaviours, depth, faults, None)
    }

    /// [`new`](Self::new), every honest node running the machine `factory`
    /// makes, snapshotted as `snapshots` says.
    pub fn with_machines(
        seed: u64,
        n: usize,
        behaviours: &[Behaviour],
        depth: usize,
        faults: Faults,
        factory: MachineFactory,
        snapshots: SnapshotConfig,
    ) -> Cluster {
        Self::build(
            seed,
            n,
            behaviours,
            depth,
            faults,
            Some((factory, snapshots)),
        )
    }

    /// An honest node of `keys`: a fresh replica, running the cluster's
    /// machine if it has one.
    pub fn honest_node(&self, keys: &KeyPair) -> SimReplica {
        let node = SimReplica::new(keys.clone(), self.config.clone()).expect("config");
        match &self.machine {
            Some((factory, snapshots)) => {
                let factory = factory.clone();
                node.with_machine(move || factory(), *snapshots)
            }
            None => node,
        }
    }

    /// Wipes honest node `id`: it restarts empty (no log, no voting record,
    /// no snapshot), as a new machine with the same key would.
    pub fn wipe(&mut self, id: NodeId) {
        let Some(i) = self.ids.iter().position(|v| *v == id) else {
            return;
        };
        if self.byzantine.contains(&id) {
            return;
        }
        self.sim.restart(id);
        let fresh = self.honest_node(&self.keys[i]);
        let byzantine: HashSet<NodeId> = self.byzantine.iter().copied().collect();
        self.sim.with_node(id, |node, _| {
            let mut honest = Honest::new(fresh, byzantine);
            honest.wipes = node.honest().map_or(0, |h| h.wipes + 1);
            *node = TestNode::Honest(Box::new(honest));
        });
        // Its timers and messages in flight belong to the wiped node.
        self.sim.crash(id);
        self.sim.restart(id);
    }

    fn build(
        seed: u64,
        n: usize,
        behaviours: &[Behaviour],
        depth: usize,
        faults: Faults,
        machine: Option<(MachineFactory, SnapshotConfig)>,
    ) -> Cluster {
        let keys: Vec<KeyPair> = (0..n)
            .map(|i| {
                let mut s = [0u8; 32];
                s[..8].copy_from_slice(&seed.to_le_bytes());
                s[8..16].copy_from_slice(&(i as u64).to_le_bytes());
                s[31] = 0x5a;
                KeyPair::from_seed(s)
            })
            .collect();
        let ids: Vec<NodeId> = keys.iter().map(KeyPair::node_id).collect();
        let set = ValidatorSet::new(ids.clone()).expect("distinct keys");
        let config = test_config(set.clone(), depth, faults.latency_ms.1.max(1));
        // Choose the Byzantine validators from the seed.
        let mut order: Vec<usize> = (0..n).collect();
        let mut pick = rand_chacha::ChaCha8Rng::from_seed_u64(seed);
        order.shuffle(&mut pick);
        let byz_idx: Vec<usize> = order[..behaviours.len()].to_vec();
        let byzantine: Vec<NodeId> = byz_idx.iter().map(|&i| ids[i]).collect();
        let byz_set: HashSet<NodeId> = byzantine.iter().copied().collect();
        let nodes: Vec<(NodeId, TestNode)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let node = match byz_idx.iter().position(|&b| b == i) {
                    Some(j) => TestNode::Byzantine(Box::new(Byzantine::new(
                        k.clone(),
                        config.clone(),
                        behaviours[j],
                    ))),
                    None => {
                        let node = SimReplica::new(k.clone(), config.clone()).expect("config");
                        let node = match &machine {
                            Some((factory, snapshots)) => {
                                let factory = factory.clone();
                                node.with_machine(move || factory(), *snapshots)
                            }
                            None => node,
                        };
                        TestNode::Honest(Box::new(Honest::new(node, byz_set.clone())))
                    }
                };
                (k.node_id(), node)
            })
            .collect();
        let honest = ids
            .iter()
            .copied()
            .filter(|i| !byz_set.contains(i))
            .collect();
        let mut sim = Simulation::new(seed, faults, nodes);
        sim.set_invariant(invariant(set.clone()));
        Cluster {
            keys,
            config,
            machine,
            sim,
            set,
            ids,
            honest,
            byzantine,
            next_command: 0,
            client: KeyPair::from_seed([0xc1; 32]),
        }
    }

    /// A fresh command (unique in this cluster).
    pub fn command(&mut self) -> Command {
        let mut bytes = b"cmd ".to_vec();
        bytes.extend_from_slice(&(self.next_command + 1).to_le_bytes());
        self.command_of(bytes)
    }

    /// A fresh command of `bytes`: the cluster's client numbers its
    /// commands 1, 2, ... and never claims an answer (first unanswered 0),
    /// so a machine applying them all needs a window as large as their
    /// count ([`unbounded_window`]).
    pub fn command_of(&mut self, bytes: Vec<u8>) -> Command {
        self.next_command += 1;
        Command::sign(&self.client, self.next_command, 0, bytes).expect("small")
    }

    /// Submits a new command to `to`; returns it if `to` was up and took it.
    pub fn submit_to(&mut self, to: NodeId) -> Option<Command> {
        let c = self.command();
        let cc = c.clone();
        let taken = self.sim.with_node(to, |node, ctx| match node {
            TestNode::Honest(h) => matches!(h.node.submit(ctx, vec![cc], true), Ok(1)),
            TestNode::Byzantine(_) => false,
        });
        (taken == Some(true)).then_some(c)
    }

    /// Submits a command to a random honest node; returns it if it was taken.
    pub fn submit_random(&mut self) -> Option<Command> {
        let to = *self.honest.choose(self.sim.rng()).expect("honest nodes");
        self.submit_to(to)
    }

    /// Every honest node's log, up or down.
    pub fn honest_logs(
        &self,
    ) -> Vec<(NodeId, Vec<Receipt>, HashSet<hologram_consensus::CommandId>)> {
        self.sim
            .nodes()
            .filter_map(|(id, n, _)| n.honest().map(|h| (id, h)))
            .map(|(id, h)| {
                let receipts = h.node.log().iter().map(|d| d.certificate.value).collect();
                let commands = h
                    .node
                    .log()
                    .iter()
                    .flat_map(|d| d.batch.commands().iter().map(Command::id))
                    .collect();
                (id, receipts, commands)
            })
            .collect()
    }

    /// Runs until every honest node (all up) has committed every command of
    /// `wanted`, or `deadline`.
    pub fn run_until_committed(&mut self, wanted: &[Command], deadline: u64) -> Result<(), String> {
        let ids: Vec<_> = wanted.iter().map(Command::id).collect();
        let mut t = self.sim.now();
        loop {
            let logs = self.honest_logs();
            let missing: Vec<_> = logs
                .iter()
                .filter(|(_, _, cmds)| ids.iter().any(|id| !cmds.contains(id)))
                .map(|(id, r, _)| (*id, r.len()))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if t >= deadline {
                let states: Vec<String> = self
                    .sim
                    .nodes()
                    .map(|(id, n, up)| match n {
                        TestNode::Honest(h) => format!("{id} up={up} {:?}", h.node.replica()),
                        TestNode::Byzantine(_) => format!("{id} byzantine"),
                    })
                    .collect();
                return Err(format!(
                    "liveness: at {t} ms, {} honest nodes still miss commands (node, log length): {missing:?}\n{}",
                    missing.len(),
                    states.join("\n")
                ));
            }
            t += 50;
            self.sim.run_until(t).map_err(|e| e.to_string())?;
        }
    }

    /// Crashes and restarts honest nodes at random (at most `f` down at once
    /// besides the Byzantine ones is not required for safety; for liveness
    /// everything restarts before the end).
    pub fn random_crash_restart(&mut self, p: f64) {
        let ids = self.honest.clone();
        for id in ids {
            let roll: f64 = self.sim.rng().random();
            if roll < p {
                if self.sim.is_up(id) {
                    self.sim.crash(id);
                } else {
                    self.sim.restart(id);
                }
            }
        }
    }

    /// A random partition of all nodes into 2 or 3 groups.
    pub fn random_partition(&mut self) {
        let mut ids = self.ids.clone();
        ids.shuffle(self.sim.rng());
        let groups = self.sim.rng().random_range(2..=3usize);
        let mut cuts: Vec<usize> = (0..groups - 1)
            .map(|_| self.sim.rng().random_range(0..=ids.len()))
            .collect();
        cuts.sort_unstable();
        let mut parts: Vec<&[NodeId]> = Vec::new();
        let mut start = 0;
        for c in cuts {
            parts.push(&ids[start..c]);
            start = c;
        }
        parts.push(&ids[start..]);
        self.sim.partition(&parts);
    }

    /// Ends every fault: heal, restart everyone, perfect network.
    pub fn calm(&mut self) {
        self.sim.heal();
        for id in self.ids.clone() {
            self.sim.restart(id);
        }
        self.sim.set_faults(Faults {
            latency_ms: (1, 20),
            ..Faults::NONE
        });
    }
}

trait FromSeed {
    fn from_seed_u64(seed: u64) -> Self;
}

impl FromSeed for rand_chacha::ChaCha8Rng {
    fn from_seed_u64(seed: u64) -> Self {
        rand::SeedableRng::seed_from_u64(seed ^ 0x00c0_ffee)
    }
}

/// The safety invariants, checked after every step:
/// - no two different values committed at one height (so every honest log is
///   a prefix of every longer one);
/// - every command of a committed batch carries its client's valid signature;
/// - every committed entry carries a commit certificate of at least 2f + 1
///   distinct valid signatures for its batch's receipt at its height;
/// - every equivocation an honest replica processed produced a proof, and
///   every proof it holds verifies.
pub fn invariant(
    set: ValidatorSet,
) -> impl FnMut(&Simulation<TestNode>) -> Result<(), String> + 'static {
    let mut checked: HashMap<(NodeId, u32), usize> = HashMap::new();
    let mut proofs_checked: HashSet<(NodeId, NodeId, Slot)> = HashSet::new();
    let mut canon: BTreeMap<u64, Receipt> = BTreeMap::new();
    move |sim| {
        for (id, node, _up) in sim.nodes() {
            let Some(h) = node.honest() else { continue };
            let log = h.node.log();
            // A log compacted to a certified snapshot starts later; the
            // heights below it are in the snapshot (checked by the tests
            // that run machines).
            let first = h.node.log_first() as usize;
            let end = first + log.len();
            let done = checked.entry((id, h.wipes)).or_insert(0);
            if end < *done {
                return Err(format!("{id}: its log shrank from {} to {end}", *done));
            }
            let skip = (*done).saturating_sub(first);
            for (i, d) in log.iter().enumerate().skip(skip) {
                let height = (first + i) as u64;
                let cert = &d.certificate;
                if cert.height() != height || cert.slot.kind != VoteKind::Precommit {
                    return Err(format!(
                        "{id}: entry {height} has a certificate for {:?}",
                        cert.slot
                    ));
                }
                cert.verify_kind(VoteKind::Precommit, &set)
                    .map_err(|e| format!("{id}: entry {height}: certificate invalid: {e}"))?;
                if cert.signatures.len() < set.quorum() {
                    return Err(format!("{id}: entry {height}: too few signatures"));
                }
                hologram_consensus::verify_commands(d.batch.commands()).map_err(|e| {
                    format!("{id}: entry {height}: a forged command was committed: {e}")
                })?;
                if d.batch.receipt() != cert.value {
                    return Err(format!(
                        "{id}: entry {height}: batch is not the certified one"
                    ));
                }
                match canon.get(&height) {
                    Some(v) if *v != cert.value => {
                        return Err(format!(
                            "agreement violated at height {height}: {} vs {}",
                            v.content, cert.value.content
                        ))
                    }
                    Some(_) => {}
                    None => {
                        canon.insert(height, cert.value);
                    }
                }
            }
            *done = end;
            let detector = h.node.replica().detector();
            for ((voter, slot), votes) in &h.observed {
                if votes.len() < 2 {
                    continue;
                }
                let Some(proof) = detector.proof(voter, slot) else {
                    return Err(format!(
                        "{id}: equivocation of {voter} at {slot:?} without a proof"
                    ));
                };
                let key = (id, *voter, *slot);
                if proofs_checked.insert(key) {
                    let who = proof
                        .verify()
                        .map_err(|e| format!("{id}: a proof does not verify: {e}"))?;
                    if who != *voter {
                        return Err(format!("{id}: the proof of {voter} names {who}"));
                    }
                }
            }
        }
        Ok(())
    }
}
