//! Deduplicated storage in the whole-stack campaign: every node holds
//! objects for a `DeduplicationNetwork` (N = 3, majority writes) over a
//! `MemoryNetwork` with the nemesis' loss, duplication and corruption,
//! partitions and crash–restart; one holder substitutes objects and fakes
//! acknowledgements. The client is a gateway on the first node's side.
//!
//! The `DeduplicationNetwork` client is async over a `Transport`, with no
//! simulator core: it runs on the campaign's `Executor`, on its virtual
//! clock (the network's timer is the executor's), driven step by step from
//! the campaign; latency is zero, so only a lost frame waits out the
//! client's timeout (in virtual time). The clients number their requests
//! from a seeded start, so a seed fixes every byte sent.

use super::trace::{digest, Trace};
use futures::executor::block_on;
use hologram_cam::dedup::{DedupMessage, Kept, Request};
use hologram_cam::MemoryStore;
use hologram_cam::{DedupHandler, DeduplicationNetwork, HashRing, Store, StoreResult};
use hologram_lattice::sim::Executor;
use hologram_lattice::sim::Faults;
use hologram_lattice::transport::{async_trait, Handler, HandlerError, MemoryNetwork, Protocol};
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

type Holder = DedupHandler<MemoryStore>;

/// The storage layer of the stack.
pub struct DedupNet {
    pub network: MemoryNetwork,
    holders: BTreeMap<NodeId, (Arc<Holder>, Arc<MemoryStore>)>,
    client: DeduplicationNetwork,
    /// The same client with a generous timeout: the checks fall back to it,
    /// so a descheduled thread on a loaded machine is not a lost object.
    patient: DeduplicationNetwork,
    client_id: NodeId,
    substituter: NodeId,
    pub substituted: Arc<AtomicU64>,
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
    /// Every node of `ids` holds; the one at `substituter` lies. Runs on
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
        let mut holders = BTreeMap::new();
        for (i, &id) in ids.iter().enumerate() {
            ring.add(id);
            if i == substituter {
                let liar = Arc::new(Substituter(Arc::clone(&substituted)));
                network.join(id, trace.handler(exec, id, liar));
            } else {
                let store = Arc::new(MemoryStore::new());
                let holder = Arc::new(DedupHandler::new(Arc::clone(&store)));
                network.join(id, trace.handler(exec, id, Arc::clone(&holder) as _));
                holders.insert(id, (holder, store));
            }
        }
        let client_id = NodeId::from_bytes(*blake3::hash(&seed.to_le_bytes()).as_bytes());
        let transport = Arc::new(network.join(
            client_id,
            Arc::new(Substituter(Arc::new(AtomicU64::new(0)))),
        ));
        let ring = Arc::new(RwLock::new(ring));
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
            substituted,
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
        }
    }

    pub fn restart(&mut self, id: NodeId) {
        if !self.crashed.remove(&id) {
            return;
        }
        let handler: Arc<dyn Handler> = match self.holders.get(&id) {
            Some((holder, _)) => Arc::clone(holder) as _,
            None => Arc::new(Substituter(Arc::clone(&self.substituted))),
        };
        self.network
            .restart(id, self.trace.handler(&self.exec, id, handler));
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

    /// Owners of `address` the client cannot count on: crashed, cut off, or
    /// the substituter.
    fn out(&self, owner: &NodeId) -> bool {
        *owner == self.substituter
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

    /// Every object every honest holder stores re-hashes to its address.
    fn check_stores(&self) -> Result<(), String> {
        for (id, (_, store)) in &self.holders {
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
