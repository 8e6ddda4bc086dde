//! Deduplicated storage in the whole-stack campaign: every node holds
//! objects for a `DeduplicationNetwork` (N = 3, majority writes) over a
//! `MemoryNetwork` with the nemesis' loss, duplication and corruption,
//! partitions and crash–restart; one holder substitutes objects and fakes
//! acknowledgements, and another holds its objects on a failing disk
//! (`FaultyStore`, seeded: write errors, torn batches, rot at rest, flips
//! and misdirected reads, acknowledged writes lost when its node crashes).
//! The client is a gateway on the first node's side.
//!
//! The `DeduplicationNetwork` client is async over a `Transport`, with no
//! simulator core: it runs on the campaign's `Executor`, on its virtual
//! clock (the network's timer is the executor's), driven step by step from
//! the campaign; latency is zero, so only a lost frame waits out the
//! client's timeout (in virtual time). The clients number their requests
//! from a seeded start, so a seed fixes every byte sent.

use super::trace::{digest, Trace};
use futures::executor::block_on;
use hologram_cam::dedup::{DedupMessage, Kept, Request, Upkeep, UpkeepPlan, UpkeepReport};
use hologram_cam::{DedupHandler, DeduplicationNetwork, HashRing, Store, StoreResult};
use hologram_cam::{DiskFaultCounts, DiskFaults, FaultyStore, MemoryStore};
use hologram_lattice::sim::Executor;
use hologram_lattice::sim::Faults;
use hologram_lattice::transport::{
    async_trait, Handler, HandlerError, MemoryNetwork, MemoryTransport, Protocol,
};
use hologram_lattice::{Address, NodeId, PeerId};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

const REPLICATION: usize = 3;
/// The virtual time a client call may take before it counts as stalled
/// (its requests time out far sooner).
const STALL: Duration = Duration::from_secs(60);

/// Acknowledges every write without storing; answers reads with other bytes.
struct Substituter(Arc<AtomicU64>);

#[async_trait]
impl Handler for Substituter {
    async fn request(
        &self,
        _: PeerId,
        _: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        let answer = match Request::decode(&payload).map(|r| r.message) {
            Ok(DedupMessage::Get(_)) => DedupMessage::Found(b"substituted".as_slice().into()),
            Ok(DedupMessage::Has(_)) => DedupMessage::HasAnswer(true),
            Ok(DedupMessage::PutMany { puts, .. }) => DedupMessage::HeldMany(
                puts.iter()
                    .map(|_| {
                        Some(Kept {
                            refs: 1,
                            before: true,
                        })
                    })
                    .collect(),
            ),
            _ => DedupMessage::Held {
                refs: 1,
                before: true,
            },
        };
        Ok(answer.encode())
    }
    async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {}
}

/// Every honest holder's disk: perfect but for the failing one's.
type Disk = FaultyStore<MemoryStore>;
type Holder = DedupHandler<Disk>;

/// The failing disk's faults.
const FAILING_DISK: DiskFaults = DiskFaults {
    write_error: 0.04,
    no_space: 0.02,
    torn_batch: 0.1,
    lost_on_crash: 0.5,
    rot_at_rest: 0.15,
    flip_on_read: 0.03,
    misdirected_read: 0.03,
    ..DiskFaults::NONE
};

/// How the honest holders keep their copies: a few objects scrubbed a tick,
/// anti-entropy with the ring neighbours every few ticks and after rot.
const UPKEEP: UpkeepPlan = UpkeepPlan {
    tick: Duration::from_millis(40),
    scrub_per_tick: 8,
    anti_entropy_every: 6,
    request_timeout: Duration::from_millis(20),
};

/// Upkeep runs on every this many workload ticks.
const UPKEEP_EVERY: u64 = 4;

/// The storage layer of the stack.
pub struct DedupNet {
    pub network: MemoryNetwork,
    holders: BTreeMap<NodeId, (Arc<Holder>, Arc<Disk>)>,
    client: DeduplicationNetwork,
    /// The same client with a generous timeout: the checks fall back to it,
    /// so a descheduled thread on a loaded machine is not a lost object.
    patient: DeduplicationNetwork,
    client_id: NodeId,
    substituter: NodeId,
    /// The holder on the failing disk.
    failing: NodeId,
    pub substituted: Arc<AtomicU64>,
    /// Each honest holder's upkeep (scrub, anti-entropy) and its endpoint.
    upkeep: BTreeMap<NodeId, (Upkeep, MemoryTransport)>,
    upkeep_calls: u64,
    /// Acknowledged objects and the references the model holds on them.
    acked: BTreeMap<Address, (Vec<u8>, u64)>,
    /// References attempted per address.
    attempted: BTreeMap<Address, u64>,
    /// Nodes crashed, and the client's partition group (None: no partition).
    crashed: BTreeSet<NodeId>,
    reachable: Option<BTreeSet<NodeId>>,
    pub stores_acked: u64,
    pub stores_failed: u64,
    pub reads_checked: u64,
    exec: Executor,
    trace: Trace,
}

impl DedupNet {
    /// Every node of `ids` holds; the one at `substituter` lies, the next
    /// one's disk fails. Runs on
    /// `exec`; `trace` records every frame and outcome.
    pub fn new(
        seed: u64,
        ids: &[NodeId],
        substituter: usize,
        exec: &Executor,
        trace: &Trace,
    ) -> DedupNet {
        let network = MemoryNetwork::with_timer(seed, exec.timer().clone());
        let substituted = Arc::new(AtomicU64::new(0));
        let mut ring = HashRing::new();
        for &id in ids {
            ring.add(id);
        }
        let ring = Arc::new(RwLock::new(ring));
        let mut holders = BTreeMap::new();
        let mut upkeep = BTreeMap::new();
        let failing = (substituter + 1) % ids.len();
        for (i, &id) in ids.iter().enumerate() {
            if i == substituter {
                let liar = Arc::new(Substituter(Arc::clone(&substituted)));
                network.join(id, trace.handler(exec, id, liar));
            } else {
                let faults = match i == failing {
                    true => FAILING_DISK,
                    false => DiskFaults::NONE,
                };
                let store = Arc::new(FaultyStore::new(
                    MemoryStore::new(),
                    seed ^ 0xd15c ^ i as u64,
                    faults,
                ));
                let holder = Arc::new(
                    DedupHandler::new(Arc::clone(&store))
                        .with_ring(id, Arc::clone(&ring), REPLICATION)
                        .with_first_op(seed.rotate_left(29) ^ ((i as u64) << 48)),
                );
                let endpoint = network.join(id, trace.handler(exec, id, Arc::clone(&holder) as _));
                upkeep.insert(id, (Upkeep::new(UPKEEP), endpoint));
                holders.insert(id, (holder, store));
            }
        }
        let client_id = NodeId::from_bytes(*blake3::hash(&seed.to_le_bytes()).as_bytes());
        let transport = Arc::new(network.join(
            client_id,
            Arc::new(Substituter(Arc::new(AtomicU64::new(0)))),
        ));
        // Seeded request numbers, the patient client's far from the other's.
        let first_op = seed.rotate_left(17) ^ 0x6f70_7300;
        let client = DeduplicationNetwork::new(transport.clone(), Arc::clone(&ring), REPLICATION)
            .with_timeout(Duration::from_millis(5))
            .with_first_op(first_op);
        let patient = DeduplicationNetwork::new(transport, ring, REPLICATION)
            .with_timeout(Duration::from_millis(250))
            .with_first_op(first_op ^ (1 << 63));
        DedupNet {
            network,
            holders,
            client,
            patient,
            client_id,
            substituter: ids[substituter],
            failing: ids[failing],
            substituted,
            upkeep,
            upkeep_calls: 0,
            acked: BTreeMap::new(),
            attempted: BTreeMap::new(),
            crashed: BTreeSet::new(),
            reachable: None,
            stores_acked: 0,
            stores_failed: 0,
            reads_checked: 0,
            exec: exec.clone(),
            trace: trace.clone(),
        }
    }

    /// Runs a client call on the executor (its clock moves as the call
    /// waits).
    fn wait<F: Future>(&self, call: F) -> Result<F::Output, String> {
        self.exec
            .block_on(call, STALL)
            .ok_or_else(|| format!("dedup: a call made no progress in {STALL:?}"))
    }

    /// The nemesis' network faults, without latency (this layer is real time).
    pub fn set_faults(&self, faults: &Faults) {
        self.network.set_faults(Faults {
            latency_ms: (0, 0),
            ..faults.clone()
        });
    }

    pub fn crash(&mut self, id: NodeId) {
        if self.network.crash(id) {
            self.crashed.insert(id);
            // Its disk loses what it had not flushed.
            if let Some((_, disk)) = self.holders.get(&id) {
                let lost = block_on(disk.crash()).expect("a memory store does not fail");
                self.trace
                    .record(|| format!("crash {id}: {lost} writes lost"));
            }
        }
    }

    /// The faults the holders' disks injected.
    pub fn disk_faults(&self) -> DiskFaultCounts {
        let mut total = DiskFaultCounts::default();
        for (_, disk) in self.holders.values() {
            let c = disk.counts();
            total.write_errors += c.write_errors;
            total.no_space += c.no_space;
            total.torn += c.torn;
            total.lost += c.lost;
            total.rotted += c.rotted;
            total.rotten_reads += c.rotten_reads;
            total.misdirected += c.misdirected;
            total.stale += c.stale;
        }
        total
    }

    pub fn restart(&mut self, id: NodeId) {
        if !self.crashed.remove(&id) {
            return;
        }
        let handler: Arc<dyn Handler> = match self.holders.get(&id) {
            Some((holder, _)) => Arc::clone(holder) as _,
            None => Arc::new(Substituter(Arc::clone(&self.substituted))),
        };
        let endpoint = self
            .network
            .restart(id, self.trace.handler(&self.exec, id, handler));
        if let Some((_, old)) = self.upkeep.get_mut(&id) {
            *old = endpoint;
        }
    }

    /// Every [`UPKEEP_EVERY`]th call, one upkeep tick on every honest
    /// holder that is up: a scrub step (a rotten copy is dropped), then
    /// anti-entropy with its ring neighbours when due (rot was found, or
    /// periodically), which fetches back what the holder lacks.
    pub fn upkeep(&mut self) -> Result<(), String> {
        self.upkeep_calls += 1;
        if !self.upkeep_calls.is_multiple_of(UPKEEP_EVERY) {
            return Ok(());
        }
        for (id, (upkeep, endpoint)) in &mut self.upkeep {
            let Some((holder, _)) = self.holders.get(id) else {
                continue;
            };
            if self.crashed.contains(id) {
                continue;
            }
            self.exec
                .block_on(upkeep.tick(holder, endpoint), STALL)
                .ok_or_else(|| format!("dedup: {id}'s upkeep made no progress in {STALL:?}"))?;
            let r = upkeep.report();
            self.trace.record(|| {
                format!(
                    "upkeep {id}: {} scrubbed, {} rotten, {} fetched, {} merged, {} refused",
                    r.scrubbed,
                    r.rotten,
                    r.anti_entropy.fetched,
                    r.anti_entropy.merged,
                    r.anti_entropy.refused
                )
            });
        }
        Ok(())
    }

    /// After the faults (every node up, the network healed): the failing
    /// disk heals too; every honest holder scrubs its whole store and runs
    /// anti-entropy with its ring neighbours until a round changes nothing
    /// (at most a few); then every object the model still holds a
    /// reference to is held, with its bytes, by every honest owner (but
    /// for objects owned by both faulty holders, past the fault budget):
    /// the replication the substituter allows is restored without a re-put.
    pub fn heal_replicas(&mut self) -> Result<(), String> {
        if let Some((_, disk)) = self.holders.get(&self.failing) {
            disk.set_faults(DiskFaults::NONE);
        }
        for (id, (holder, _)) in &self.holders {
            let step = block_on(holder.scrub(usize::MAX))
                .map_err(|e| format!("dedup: {id}'s scrub after the faults: {e}"))?;
            self.trace
                .record(|| format!("final scrub {id}: {} rotten", step.corrupt.len()));
        }
        for round in 0..4 {
            let mut changed = 0;
            for (id, (_, endpoint)) in &self.upkeep {
                let Some((holder, _)) = self.holders.get(id) else {
                    continue;
                };
                let done = self
                    .exec
                    .block_on(
                        holder.anti_entropy_round(endpoint, UPKEEP.request_timeout * 10),
                        STALL,
                    )
                    .ok_or_else(|| format!("dedup: {id}'s anti-entropy made no progress"))?
                    .map_err(|e| format!("dedup: {id}'s anti-entropy: {e}"))?;
                // The substituter never answers: a request to it fails
                // every round, so failures do not count as changes.
                changed += done.fetched + done.merged;
                self.trace.record(|| {
                    format!(
                        "final anti-entropy {round} {id}: {} fetched, {} failed",
                        done.fetched, done.failed
                    )
                });
            }
            if changed == 0 {
                break;
            }
        }
        for (address, (data, _)) in &self.acked {
            let owners = self.client.owners(address);
            // As in `read_indexed`: with both faulty holders among its
            // owners, an object may have been acknowledged by the
            // substituter's fake acknowledgement and a write the failing
            // disk then lost, past what N = 3 with W = 2 tolerates.
            if owners.contains(&self.substituter) && owners.contains(&self.failing) {
                continue;
            }
            for owner in owners {
                let Some((_, disk)) = self.holders.get(&owner) else {
                    continue;
                };
                let held = block_on(disk.get(address))
                    .map_err(|e| format!("dedup: {owner} reading {address}: {e}"))?;
                match held {
                    Some(object) if object.data() == &data[..] => {}
                    Some(_) => {
                        return Err(format!("dedup: {owner} holds {address} with other bytes"))
                    }
                    None => {
                        return Err(format!(
                            "dedup: {owner} lacks {address} after anti-entropy (under-replicated)"
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// What the holders' upkeep did, summed.
    pub fn upkeep_report(&self) -> UpkeepReport {
        let mut total = UpkeepReport::default();
        for (upkeep, _) in self.upkeep.values() {
            let r = upkeep.report();
            total.ticks += r.ticks;
            total.scrubbed += r.scrubbed;
            total.rotten += r.rotten;
            total.rounds += r.rounds;
            total.errors += r.errors;
            total.anti_entropy.fetched += r.anti_entropy.fetched;
            total.anti_entropy.merged += r.anti_entropy.merged;
            total.anti_entropy.refused += r.anti_entropy.refused;
        }
        total
    }

    /// Partitions the holders; the client joins the first group.
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        let mut with_client: Vec<Vec<PeerId>> = groups.to_vec();
        if let Some(first) = with_client.first_mut() {
            first.push(self.client_id);
        }
        let parts: Vec<&[PeerId]> = with_client.iter().map(Vec::as_slice).collect();
        self.network.partition(&parts);
        self.reachable = groups.first().map(|g| g.iter().copied().collect());
    }

    pub fn heal(&mut self) {
        self.network.heal();
        self.reachable = None;
    }

    /// One workload operation: store, release or read. Returns the address
    /// of an object whose store was acknowledged.
    pub fn step(&mut self, rng: &mut ChaCha8Rng, seed: u64) -> Result<Option<Address>, String> {
        match rng.random_range(0..10) {
            0..=4 => {
                let data = format!("seed {seed} object {}", rng.random_range(0..30)).into_bytes();
                let address = Address::of(&data);
                *self.attempted.entry(address).or_default() += 1;
                let stored = self.wait(self.client.store_unique(data.clone()))?;
                self.trace
                    .record(|| format!("store {}: {stored:?}", digest(&data)));
                match stored {
                    StoreResult::Stored(a, _) | StoreResult::Duplicate(a) if a == address => {
                        self.stores_acked += 1;
                        self.acked.entry(address).or_insert((data, 0)).1 += 1;
                        return Ok(Some(address));
                    }
                    StoreResult::Failed(a) if a == address => self.stores_failed += 1,
                    other => return Err(format!("dedup: a store answered {other:?}")),
                }
            }
            5 => {
                // A holder applies each release at most once, so the model
                // counts it as done whatever the acknowledgements say.
                let pick = rng.random_range(0..self.acked.len().max(1));
                let Some(&address) = self.acked.keys().nth(pick) else {
                    return Ok(None);
                };
                let released = self.wait(self.client.release(address))?;
                self.trace
                    .record(|| format!("release {address}: {released:?}"));
                if let Some(entry) = self.acked.get_mut(&address) {
                    entry.1 -= 1;
                    if entry.1 == 0 {
                        self.acked.remove(&address);
                    }
                }
            }
            _ => {
                let pick = rng.random_range(0..self.acked.len().max(1));
                let Some((&address, (data, _))) = self.acked.iter().nth(pick) else {
                    return Ok(None);
                };
                let got = self.wait(self.client.get(address))?;
                self.trace.record(|| match &got {
                    Ok(object) => format!("get {address}: {}", digest(object.data())),
                    Err(e) => format!("get {address}: {e}"),
                });
                if let Ok(object) = got {
                    self.reads_checked += 1;
                    if object.data() != &data[..] {
                        return Err(format!("dedup: get returned wrong bytes for {address}"));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Reads an object the replicated index records: if the model still
    /// holds a reference to it, it must read back with bytes that re-hash
    /// to its address (with every node up). Returns whether it was read.
    pub fn read_indexed(&mut self, address: Address) -> Result<bool, String> {
        if !self.acked.contains_key(&address) {
            return Ok(false);
        }
        // Two faulty owners of three (the substituter and the failing disk)
        // are past what N = 3 with majority writes tolerates.
        let owners = self.client.owners(&address);
        if owners.contains(&self.substituter) && owners.contains(&self.failing) {
            return Ok(false);
        }
        let mut read = None;
        for _ in 0..3 {
            read = self.wait(self.patient.get(address))?.ok();
            if read.is_some() {
                break;
            }
        }
        self.trace
            .record(|| format!("indexed {address}: {}", read.is_some()));
        match read {
            Some(object) if Address::of(object.data()) == address => Ok(true),
            Some(_) => Err(format!("dedup: indexed {address} read back other bytes")),
            None => Err(format!("dedup: indexed {address} is unreadable")),
        }
    }

    /// Up to `k` acknowledged addresses, drawn with `rng`.
    pub fn sample(&self, rng: &mut ChaCha8Rng, k: usize) -> Vec<Address> {
        if self.acked.is_empty() {
            return Vec::new();
        }
        (0..k)
            .filter_map(|_| self.acked.keys().nth(rng.random_range(0..self.acked.len())))
            .copied()
            .collect()
    }

    /// Owners of `address` the client cannot count on: crashed, cut off,
    /// the substituter, or the holder on the failing disk.
    fn out(&self, owner: &NodeId) -> bool {
        *owner == self.substituter
            || *owner == self.failing
            || self.crashed.contains(owner)
            || self.reachable.as_ref().is_some_and(|r| !r.contains(owner))
    }

    /// The invariants, on `sample` acknowledged objects (all when `None`):
    /// readable with the right bytes while at most N − W owners are out;
    /// no holder counts more references than were attempted; everything an
    /// honest holder stores re-hashes to its address.
    pub fn check(&mut self, rng: &mut ChaCha8Rng, sample: Option<usize>) -> Result<(), String> {
        let slack = REPLICATION - self.client.write_quorum();
        let addresses: Vec<Address> = match sample {
            Some(k) if self.acked.len() > k => self.sample(rng, k),
            _ => self.acked.keys().copied().collect(),
        };
        for address in addresses {
            let Some((data, _)) = self.acked.get(&address) else {
                continue;
            };
            let owners = self.client.owners(&address);
            let down = owners.iter().filter(|o| self.out(o)).count();
            if down <= slack {
                let mut read = None;
                for patient in [false; 6].into_iter().chain([true; 3]) {
                    let client = if patient { &self.patient } else { &self.client };
                    read = self.wait(client.get(address))?.ok();
                    if read.is_some() {
                        break;
                    }
                }
                self.trace
                    .record(|| format!("check {address}: {}", read.is_some()));
                match read {
                    Some(object) if object.data() == &data[..] => self.reads_checked += 1,
                    Some(_) => return Err(format!("dedup: {address} read back wrong")),
                    None => {
                        return Err(format!(
                            "dedup: acknowledged {address} unreadable with {down} of its owners out"
                        ))
                    }
                }
            }
            let taken = self.attempted.get(&address).copied().unwrap_or(0);
            for owner in &owners {
                if let Some((holder, _)) = self.holders.get(owner) {
                    let counted = block_on(holder.refs(&address))
                        .map_err(|e| format!("dedup: {owner} cannot count: {e}"))?;
                    if counted > taken {
                        return Err(format!(
                            "dedup: {owner} counts {counted} references to {address}, {taken} attempted"
                        ));
                    }
                }
            }
        }
        if sample.is_none() {
            self.check_stores()?;
        }
        Ok(())
    }

    /// Every object every honest holder stores re-hashes to its address
    /// (asked of the disk under the faults: what the holder wrote, not what
    /// a faulty read returns).
    fn check_stores(&self) -> Result<(), String> {
        for (id, (_, disk)) in &self.holders {
            let store = disk.inner();
            let mut after = None;
            loop {
                let page = block_on(store.scan(after, 256)).map_err(|e| e.to_string())?;
                for address in &page {
                    if let Some(object) = block_on(store.get(address)).map_err(|e| e.to_string())? {
                        if Address::of(object.data()) != *address {
                            return Err(format!("dedup: {id} stores {address} with other bytes"));
                        }
                    }
                }
                match page.last() {
                    Some(last) if page.len() == 256 => after = Some(*last),
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// Liveness once faults stop: a new object is stored on every owner and
    /// reads back.
    pub fn check_live(&mut self, seed: u64) -> Result<(), String> {
        let data = format!("seed {seed} after the faults").into_bytes();
        let address = Address::of(&data);
        *self.attempted.entry(address).or_default() += 1;
        let stored = self.wait(self.patient.store_unique(data.clone()))?;
        self.trace.record(|| format!("store after: {stored:?}"));
        match stored {
            StoreResult::Stored(a, _) | StoreResult::Duplicate(a) if a == address => {
                self.acked.entry(address).or_insert((data, 0)).1 += 1;
                self.check(
                    &mut <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed),
                    None,
                )
            }
            other => Err(format!("dedup: storing after the faults gave {other:?}")),
        }
    }
}
