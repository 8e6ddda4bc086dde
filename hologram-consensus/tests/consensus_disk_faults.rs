//! Consensus on a bad disk: four validators run by drivers over a lossy,
//! duplicating, corrupting `MemoryNetwork` that cuts one of them off in
//! half the cycles, one of them (`f = 1`) keeping its durable log in a
//! `FaultyStore`: write errors and `ENOSPC`, torn batches, rot at rest,
//! bit flips and misdirected reads. It is crashed and restarted from that
//! store again and again; a failed write also stops it (and it restarts).
//!
//! After every step: the four logs agree height by height (certified
//! decisions are equal wherever two nodes hold the same height), and the
//! faulty validator never signed two different votes for one slot, or two
//! different proposals for one height and round, across all its restarts
//! (it re-sends what its record holds, and abstains where its record was
//! lost). Afterwards, with the faults healed: every command is committed
//! by all four, the faulty one included, which re-fetched from its peers
//! whatever its log lost.
//!
//! What the disk may not do here: lose writes it acknowledged (a
//! `FaultyStore`'s `lost_on_crash`) or return a record's previous value
//! on every read. Both break the `Store` contract the durable log rests on
//! (see `Recovered::restart_record`); no local check can tell such a disk's
//! old record from the newest one.
//!
//! Everything runs on one `sim::Executor`: the drivers, the network and
//! its faults on the executor's virtual clock, the disk's faults from the
//! seed; so `HOLOGRAM_SEED=n` replays a seed exactly, disk faults
//! included, and `a_seed_replays_exactly` checks it (every frame sent,
//! every decision delivered and every restart, compared between two runs).
//!
//! `HOLOGRAM_SEEDS=N cargo test --release -p hologram-consensus --test
//! consensus_disk_faults` runs more seeds (default 2; the seed is printed
//! on failure, `HOLOGRAM_SEED=n` replays one).

mod support;

use async_trait::async_trait;
use futures::StreamExt;
use hologram_cam::{DiskFaults, FaultyStore, MemoryStore, Store};
use hologram_consensus::{
    inbox, Command, ConsensusMessage, Decision, DriverHandle, DurableLog, ReplicaConfig,
    ReplicaDriver, ValidatorSet,
};
use hologram_lattice::sim::{check_seeds, Executor, Faults};
use hologram_lattice::transport::{MemoryNetwork, Protocol, Transport, TransportError};
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId as PeerId;
use hologram_receipt::{KeyPair, Receipt};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use support::decided::{commands, validators};

/// What the faulty validator signed: its vote per slot and its proposal
/// per (height, round), over all its lives.
#[derive(Default)]
struct Signed {
    votes: BTreeMap<(u64, u32, u8), Option<Receipt>>,
    proposals: BTreeMap<(u64, u32), Receipt>,
    /// A second, different signature for a slot: the violation.
    conflict: Option<String>,
    sent: u64,
}

/// The longest any one call waits on the executor (virtual time).
const STALL: Duration = Duration::from_secs(60);

/// Every event of a run, in order, for the replay test: each frame sent
/// (virtual time, sender, receiver, a digest of its bytes), each decision
/// delivered, each restart.
type Trace = Arc<Mutex<Vec<String>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A height's decisions held by one validator.
type Log = Arc<Mutex<BTreeMap<u64, Decision>>>;

/// A validator's transport: sends through the network and writes each
/// frame to the trace; the faulty validator's also records every vote and
/// proposal it signed.
struct Recording {
    inner: Arc<dyn Transport>,
    me: PeerId,
    signed: Option<Arc<Mutex<Signed>>>,
    trace: Trace,
    exec: Executor,
}

impl Recording {
    fn record(&self, payload: &[u8]) {
        let Some(signed) = &self.signed else {
            return;
        };
        let Ok(message) = ConsensusMessage::from_wire(payload) else {
            return;
        };
        let mut s = lock(signed);
        match message {
            ConsensusMessage::Vote(v) if v.voter == self.me => {
                s.sent += 1;
                let kind = v.slot.kind as u8;
                let key = (v.slot.height, v.slot.round, kind);
                match s.votes.get(&key) {
                    Some(before) if *before != v.value => {
                        s.conflict =
                            Some(format!("two votes at {key:?}: {before:?}, {:?}", v.value));
                    }
                    _ => {
                        s.votes.insert(key, v.value);
                    }
                }
            }
            ConsensusMessage::Proposal(p) if p.header.proposer == self.me => {
                s.sent += 1;
                let key = (p.header.height, p.header.round);
                match s.proposals.get(&key) {
                    Some(before) if *before != p.header.value => {
                        s.conflict = Some(format!("two proposals at {key:?}"));
                    }
                    _ => {
                        s.proposals.insert(key, p.header.value);
                    }
                }
            }
            _ => {}
        }
    }
}

#[async_trait]
impl Transport for Recording {
    fn local_id(&self) -> PeerId {
        self.me
    }
    fn max_frame(&self) -> usize {
        self.inner.max_frame()
    }
    async fn request(
        &self,
        peer: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        self.inner.request(peer, protocol, payload, timeout).await
    }
    async fn send(
        &self,
        peer: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        self.record(&payload);
        lock(&self.trace).push(format!(
            "{} {} -> {} {}",
            self.exec.now(),
            self.me,
            peer,
            blake3::hash(&payload).to_hex()
        ));
        self.inner.send(peer, protocol, payload).await
    }
}

/// One running validator.
struct Node {
    handle: DriverHandle,
    /// Resolves when its driver has ended.
    ended: futures::channel::oneshot::Receiver<()>,
}

/// What every validator of a run shares.
struct World {
    exec: Executor,
    network: MemoryNetwork,
    config: ReplicaConfig,
    trace: Trace,
}

impl World {
    /// Runs `future` on the executor, at most [`STALL`] of virtual time.
    fn wait<F: std::future::Future>(&self, future: F) -> Result<F::Output, String> {
        self.exec
            .block_on(future, STALL)
            .ok_or_else(|| format!("a call made no progress in {STALL:?}"))
    }

    /// Runs everything for `ms` virtual milliseconds.
    fn run_for(&self, ms: u64) {
        self.exec.run_until(self.exec.now() + ms);
    }
}

/// Starts validator `keys` from `store`; decisions it recovers or delivers
/// go into `log`. The faulty one's transport records what it signs.
fn start(
    world: &World,
    keys: &KeyPair,
    store: Arc<dyn Store>,
    log: Log,
    recording: Option<Arc<Mutex<Signed>>>,
) -> Result<(Node, usize, bool), String> {
    let config = world.config.clone();
    let set = config.validators.clone();
    let (durable, recovered) = world
        .wait(DurableLog::open(store, set))?
        .map_err(|e| format!("open: {e}"))?;
    let rejected = recovered.rejected.len();
    let replica = (recovered.replica(keys.clone(), config)).map_err(|e| format!("restart: {e}"))?;
    let abstains = replica.abstains_below() > recovered.next_height();
    {
        let mut log = lock(&log);
        for d in &recovered.decisions {
            log.insert(d.height(), d.clone());
        }
    }
    let me = keys.node_id();
    lock(&world.trace).push(format!(
        "{} start {me}: {} decisions recovered, {rejected} rejected, abstains {abstains}",
        world.exec.now(),
        recovered.decisions.len()
    ));
    let (handler, inbox) = inbox();
    let transport: Arc<dyn Transport> = Arc::new(Recording {
        inner: Arc::new(world.network.join(me, Arc::new(handler))),
        me,
        signed: recording,
        trace: Arc::clone(&world.trace),
        exec: world.exec.clone(),
    });
    let (driver, handle, mut decisions) =
        ReplicaDriver::new(replica, transport, world.exec.timer().clone(), inbox);
    let driver = driver.with_log(durable);
    let (tx, ended) = futures::channel::oneshot::channel();
    world.exec.spawn(async move {
        let _ = driver.try_run().await;
        let _ = tx.send(());
    });
    let (trace, exec) = (Arc::clone(&world.trace), world.exec.clone());
    world.exec.spawn(async move {
        while let Some(d) = decisions.next().await {
            lock(&trace).push(format!(
                "{} {me} delivers {} {}",
                exec.now(),
                d.height(),
                &blake3::hash(format!("{:?}", d.certificate.value).as_bytes()).to_hex()[..16]
            ));
            lock(&log).insert(d.height(), d);
        }
    });
    Ok((Node { handle, ended }, rejected, abstains))
}

/// Agreement: wherever two logs hold a height, they hold one value.
fn check_agreement(logs: &[Log]) -> Result<(), String> {
    let mut seen: BTreeMap<u64, Receipt> = BTreeMap::new();
    for (i, log) in logs.iter().enumerate() {
        for (h, d) in lock(log).iter() {
            match seen.get(h) {
                Some(v) if *v != d.certificate.value => {
                    return Err(format!("agreement violated at height {h} (node {i})"));
                }
                Some(_) => {}
                None => {
                    seen.insert(*h, d.certificate.value);
                }
            }
        }
    }
    Ok(())
}

/// Whether every command of `wanted` is in `log`.
fn holds(log: &Log, wanted: &[Command]) -> bool {
    let log = lock(log);
    wanted
        .iter()
        .all(|c| log.values().any(|d| d.batch.commands().contains(c)))
}

fn disk(rng: &mut ChaCha8Rng) -> DiskFaults {
    DiskFaults {
        write_error: rng.random_range(0.0..0.02),
        no_space: rng.random_range(0.0..0.02),
        torn_batch: rng.random_range(0.0..0.05),
        rot_at_rest: rng.random_range(0.0..0.05),
        flip_on_read: rng.random_range(0.0..0.05),
        misdirected_read: rng.random_range(0.0..0.02),
        ..DiskFaults::NONE
    }
}

/// What the restarts of the validator on the bad disk found.
#[derive(Default)]
struct Restarts {
    count: u32,
    /// Stored entries its recoveries refused.
    rejected: usize,
    /// Restarts that began abstaining.
    abstained: u32,
    /// Decisions it had delivered that its disk did not give back.
    refetched: u64,
}

/// The campaign's figures (README, issue 22), per seed and in total.
#[derive(Debug, Default)]
struct Figures {
    restarts: u64,
    /// Cycles with one validator cut off.
    partitions: u64,
    /// Decisions the faulty validator had delivered that its disk did not
    /// give back at a restart: re-fetched from its peers (its log ends
    /// complete).
    refetched: u64,
    /// Stored entries its recovery refused (damaged or unverifiable).
    rejected: u64,
    /// Writes and syncs that failed (`EIO`, `ENOSPC`) and batches torn.
    writes_failed: u64,
    /// Copies and records that rotted at rest, and reads that returned
    /// rotten or another key's bytes.
    rotted: u64,
    bad_reads: u64,
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.restarts += o.restarts;
        self.partitions += o.partitions;
        self.refetched += o.refetched;
        self.rejected += o.rejected;
        self.writes_failed += o.writes_failed;
        self.rotted += o.rotted;
        self.bad_reads += o.bad_reads;
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} restarts of the validator on the bad disk, {} partitions, {} writes failed or torn, {} records rotted, \
             {} reads rotten or misdirected, {} stored entries rejected on recovery, {} decisions \
             re-fetched from peers",
            self.restarts, self.partitions, self.writes_failed, self.rotted, self.bad_reads, self.rejected, self.refetched
        )
    }
}

/// One seed's campaign; returns its trace.
fn run(seed: u64, total: &Mutex<Figures>) -> Result<Vec<String>, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (keys, set): (Vec<KeyPair>, ValidatorSet) = validators();
    let exec = Executor::new();
    let network = MemoryNetwork::with_timer(seed, exec.timer().clone());
    network.set_faults(Faults {
        loss: 0.05,
        duplicate: 0.05,
        corrupt: 0.01,
        latency_ms: (1, 5),
    });
    let mut config = ReplicaConfig::new(set.clone());
    config.max_batch = 8;
    config.max_pipeline_depth = 2;
    let world = World {
        exec,
        network,
        config,
        trace: Trace::default(),
    };
    let network = &world.network;
    let faulty = FaultyStore::new(MemoryStore::new(), seed, disk(&mut rng));
    let faulty = Arc::new(faulty);
    let signed = Arc::new(Mutex::new(Signed::default()));
    let logs: Vec<Log> = (0..4).map(|_| Log::default()).collect();
    let mut nodes = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let (store, recording): (Arc<dyn Store>, _) = if i == 3 {
            (faulty.clone(), Some(signed.clone()))
        } else {
            (Arc::new(MemoryStore::new()), None)
        };
        let (node, _, _) = start(&world, k, store, logs[i].clone(), recording)?;
        nodes.push(node);
    }
    let check = |signed: &Arc<Mutex<Signed>>| -> Result<(), String> {
        check_agreement(&logs)?;
        let s = lock(signed);
        match &s.conflict {
            Some(c) => Err(format!("the validator on the bad disk equivocated: {c}")),
            None => Ok(()),
        }
    };
    let mut all: Vec<Command> = Vec::new();
    let mut restarts = Restarts::default();
    // Restarts the validator on the bad disk from it: its log is what the
    // disk gives back, then what it re-fetches from its peers.
    let restart = |tally: &mut Restarts| -> Result<Node, String> {
        let held = lock(&logs[3]).len();
        lock(&logs[3]).clear();
        let (node, rejected, abstains) = start(
            &world,
            &keys[3],
            faulty.clone(),
            logs[3].clone(),
            Some(signed.clone()),
        )?;
        tally.count += 1;
        tally.rejected += rejected;
        tally.abstained += u32::from(abstains);
        tally.refetched += held.saturating_sub(lock(&logs[3]).len()) as u64;
        Ok(node)
    };
    let mut partitions = 0u64;
    for cycle in 0..6 {
        let batch = commands(&format!("s{seed}c{cycle}"), 12);
        for n in &nodes {
            let _ = world.wait(n.handle.submit(batch.clone(), false))?;
        }
        all.extend(batch);
        // Half the cycles cut one validator off (any of the four: with the
        // one on the bad disk, that is more than f out for a while), until
        // the crash below.
        if rng.random_bool(0.5) {
            let cut = keys[rng.random_range(0..4)].node_id();
            let rest: Vec<PeerId> = keys
                .iter()
                .map(KeyPair::node_id)
                .filter(|&k| k != cut)
                .collect();
            network.partition(&[&[cut], &rest]);
            partitions += 1;
            lock(&world.trace).push(format!("{} partition {cut}", world.exec.now()));
        }
        // Run a while, checking after each slice.
        let slices = rng.random_range(2..8);
        for _ in 0..slices {
            world.run_for(50);
            check(&signed)?;
        }
        network.heal();
        // Crash the validator on the bad disk, and restart it from it.
        nodes[3].handle.stop();
        let ended = &mut nodes[3].ended;
        if world
            .exec
            .block_on(ended, Duration::from_secs(10))
            .is_none()
        {
            return Err("the stopped driver did not end".into());
        }
        world
            .wait(faulty.crash())?
            .map_err(|e| format!("crash: {e}"))?;
        nodes[3] = restart(&mut restarts)?;
        check(&signed)?;
    }
    // Heal: a good disk and a quiet network; everyone commits everything.
    faulty.set_faults(DiskFaults::NONE);
    network.set_faults(Faults::NONE);
    let last = commands(&format!("s{seed}last"), 4);
    for n in &nodes {
        let _ = world.wait(n.handle.submit(last.clone(), false))?;
    }
    all.extend(last);
    let mut waited = 0;
    while !logs.iter().all(|l| holds(l, &all)) {
        if waited >= 600 {
            let have: Vec<usize> = logs.iter().map(|l| lock(l).len()).collect();
            return Err(format!(
                "liveness: not every command committed everywhere (heights held {have:?}; \
                 {} restarts, {} stored entries rejected, {} abstaining)",
                restarts.count, restarts.rejected, restarts.abstained
            ));
        }
        world.run_for(50);
        check(&signed)?;
        waited += 1;
        // A validator with nothing in flight that missed every message of
        // the group's last heights cannot know it is behind while the group
        // is idle (a node process asks its peers on a timer): a client's
        // next command, every 2 s, is the traffic that shows it.
        if waited % 40 == 0 {
            let nudge = commands(&format!("s{seed}nudge{waited}"), 1);
            for n in &nodes {
                let _ = world.wait(n.handle.submit(nudge.clone(), false))?;
            }
            all.extend(nudge);
        }
        // A write that failed before the heal stopped it: its operator
        // restarts it (on the disk that no longer fails).
        if matches!(nodes[3].ended.try_recv(), Ok(Some(()))) {
            nodes[3] = restart(&mut restarts)?;
        }
    }
    // Logs are gap-free from 0 on every node (the faulty one re-fetched).
    for (i, l) in logs.iter().enumerate() {
        let l = lock(l);
        let end = l.keys().next_back().copied().unwrap_or(0);
        if (0..=end).any(|h| !l.contains_key(&h)) {
            return Err(format!("node {i}'s log has a gap"));
        }
    }
    for n in &nodes {
        n.handle.stop();
    }
    world.exec.run_ready();
    let s = lock(&signed);
    if s.sent == 0 {
        return Err("the validator on the bad disk never signed anything".into());
    }
    let counts = faulty.counts();
    let figures = Figures {
        restarts: u64::from(restarts.count),
        partitions,
        refetched: restarts.refetched,
        rejected: restarts.rejected as u64,
        writes_failed: counts.write_errors + counts.no_space + counts.torn,
        rotted: counts.rotted,
        bad_reads: counts.rotten_reads + counts.misdirected,
    };
    eprintln!(
        "seed {seed}: {figures}; {} restarts abstaining; disk: {counts:?}; {} votes and \
         proposals signed",
        restarts.abstained, s.sent
    );
    lock(total).add(&figures);
    let trace = std::mem::take(&mut *lock(&world.trace));
    Ok(trace)
}

#[test]
fn a_validator_on_a_bad_disk_never_equivocates_and_heals_from_its_peers() {
    let total = Mutex::new(Figures::default());
    check_seeds("consensus disk faults", 2, |seed| {
        run(seed, &total).map(drop)
    });
    eprintln!("consensus disk faults, every seed: {}", lock(&total));
}

/// A seed replays exactly, disk faults included: two runs of it give the
/// same trace, event for event (every frame sent with its virtual time and
/// a digest of its bytes, every decision delivered, every restart).
#[test]
fn a_seed_replays_exactly() {
    let total = Mutex::new(Figures::default());
    check_seeds("consensus disk faults replay", 1, |seed| {
        let first = run(seed, &total)?;
        let second = run(seed, &total)?;
        if let Some(i) = (0..first.len().max(second.len())).find(|&i| first.get(i) != second.get(i))
        {
            return Err(format!(
                "the runs part at event {i} of {} and {}: {:?} vs {:?}",
                first.len(),
                second.len(),
                first.get(i),
                second.get(i)
            ));
        }
        eprintln!("seed {seed}: {} events replayed exactly", first.len());
        Ok(())
    });
}
