//! Exercise 5 driven by a workload: access-driven migrations of CAM objects
//! between nodes of a faulty network while they are being read.
//!
//! Six nodes serve objects from their `MemoryStore`s over the CAM protocol
//! on a seeded `MemoryNetwork` (loss, duplication). Every object
//! starts on one of two nodes; reads follow a skewed distribution, each read
//! goes to the `LoadBalancer`'s read targets in order and is verified
//! against the object's address, and every verified read is recorded as the
//! receipt it is. At the end of each epoch the balancer plans migrations,
//! which are carried out over the same network: the new node fetches the
//! object from the old one (verified) and stores it, reads switch, and only
//! one step later does the old node drop its copy. Fetches lost on the way
//! are retried in the next step; a node sometimes crashes for a step, and
//! moves to or from it wait.
//!
//! Invariants after every step: every object is held, re-hashing to its
//! address, by one of its read targets (so it is never unreadable, whatever
//! the network did); no object is on a node the balancer does not name as a
//! target (nothing is left behind once a move finished). At the end: the
//! node loads settled (no migration planned in the last epochs and the
//! hottest node within the balancer's `high` of the mean, or no move that
//! would help), and no object moved more often than its cooldown allows.

use futures::executor::block_on;
use hologram::cam::CamMessage;
use hologram::cam::{CamHandler, MemoryStore, Object, ProviderRecords, Store};
use hologram::lattice::sim::{check_seeds, Faults};
use hologram::lattice::transport::{MemoryNetwork, MemoryTransport, Transport};
use hologram::lattice::{Address, NodeId};
use hologram::receipt::Receipt;
use hologram::txn::{BalancerConfig, LoadBalancer, MovePhase};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const NODES: u8 = 6;
const OBJECTS: usize = 60;
const EPOCHS: u64 = 24;
const STEPS_PER_EPOCH: u64 = 4;
const READS_PER_STEP: usize = 80;

struct Cluster {
    network: MemoryNetwork,
    ids: Vec<NodeId>,
    stores: Vec<Arc<MemoryStore>>,
    /// Each node's transport (the one it fetches with).
    transports: Vec<MemoryTransport>,
    /// A client's transport, for the reads.
    client: MemoryTransport,
}

impl Cluster {
    fn new(seed: u64) -> Self {
        let network = MemoryNetwork::new(seed);
        let ids: Vec<NodeId> = (1..=NODES).map(|i| NodeId::from_bytes([i; 32])).collect();
        let stores: Vec<Arc<MemoryStore>> = ids.iter().map(|_| Arc::default()).collect();
        let transports = ids
            .iter()
            .zip(&stores)
            .map(|(id, store)| network.join(*id, Self::handler(store)))
            .collect();
        let client = network.join(NodeId::from_bytes([99; 32]), Self::handler(&Arc::default()));
        Cluster {
            network,
            ids,
            stores,
            transports,
            client,
        }
    }

    fn handler(store: &Arc<MemoryStore>) -> Arc<CamHandler<MemoryStore>> {
        Arc::new(CamHandler::new(Arc::clone(store), ProviderRecords::new(16)))
    }

    fn index(&self, id: &NodeId) -> usize {
        self.ids.iter().position(|i| i == id).expect("a node")
    }

    /// Asks `holder` for `address` from `transport`; the object if it
    /// arrived and re-hashes to its address.
    fn fetch(transport: &MemoryTransport, holder: NodeId, address: Address) -> Option<Object> {
        let request = CamMessage::Get(address).encode();
        let answer = block_on(transport.request(
            holder,
            hologram::cam::CAM_PROTOCOL,
            request,
            Duration::from_millis(1),
        ))
        .ok()?;
        match CamMessage::decode_owned(answer).ok()? {
            CamMessage::Found(data) => Object::verify(address, data).ok(),
            _ => None,
        }
    }

    fn holds(&self, node: usize, address: &Address) -> bool {
        block_on(self.stores[node].get(address))
            .ok()
            .flatten()
            .is_some_and(|o| Address::of(o.data()) == *address)
    }
}

/// Object `i`'s share of the reads: a few hot objects, a long cold tail.
fn weight(i: usize) -> f64 {
    1.0 / (1.0 + i as f64).powf(1.1)
}

fn run(seed: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cluster = Cluster::new(seed);
    let config = BalancerConfig::default();
    let mut balancer = LoadBalancer::new(config);
    for id in &cluster.ids {
        balancer.add_node(*id);
    }
    let objects: Vec<Object> = (0..OBJECTS)
        .map(|i| Object::new(format!("object {i} of seed {seed}").into_bytes()))
        .collect();
    for (i, object) in objects.iter().enumerate() {
        let home = i % 2;
        block_on(cluster.stores[home].put(object.clone())).map_err(|e| e.to_string())?;
        balancer.place(object.address(), cluster.ids[home]);
    }
    cluster.network.set_faults(Faults {
        loss: 0.08,
        duplicate: 0.05,
        latency_ms: (0, 0),
        ..Faults::NONE
    });
    let total: f64 = (0..OBJECTS).map(weight).sum();
    let mut moves: BTreeMap<Address, u64> = BTreeMap::new();
    let mut planned = Vec::new();
    let (mut reads, mut failed_reads, mut crashes) = (0u64, 0u64, 0u64);
    for epoch in 0..EPOCHS {
        for step in 0..STEPS_PER_EPOCH {
            // Now and then a node is down for the step.
            let down = rng
                .random_bool(0.15)
                .then(|| rng.random_range(0..NODES as usize));
            if let Some(d) = down {
                cluster.network.crash(cluster.ids[d]);
                crashes += 1;
            }
            for _ in 0..READS_PER_STEP {
                let mut pick = rng.random_range(0.0..total);
                let i = (0..OBJECTS)
                    .find(|&i| {
                        pick -= weight(i);
                        pick < 0.0
                    })
                    .unwrap_or(OBJECTS - 1);
                let address = objects[i].address();
                let read = balancer
                    .read_targets(&address)
                    .into_iter()
                    .find_map(|node| Cluster::fetch(&cluster.client, node, address));
                reads += 1;
                match read {
                    Some(object) => balancer.record(&Receipt::from_bytes(object.data())),
                    None => failed_reads += 1,
                }
            }
            // Carry out the moves in flight: copy where still copying (the
            // new node pulls, verified), drop the old copy where switched.
            let inflight: Vec<_> = balancer.migrations().copied().collect();
            for m in inflight {
                let (from, to) = (cluster.index(&m.from), cluster.index(&m.to));
                match m.phase {
                    MovePhase::Copying => {
                        if let Some(object) =
                            Cluster::fetch(&cluster.transports[to], m.from, m.object)
                        {
                            if Some(to) != down {
                                block_on(cluster.stores[to].put(object))
                                    .map_err(|e| e.to_string())?;
                                balancer.copied(&m.object);
                            }
                        }
                    }
                    MovePhase::Switched => {
                        if Some(from) != down {
                            block_on(cluster.stores[from].remove(&m.object))
                                .map_err(|e| e.to_string())?;
                            balancer.finished(&m.object);
                            *moves.entry(m.object).or_default() += 1;
                        }
                    }
                }
            }
            if let Some(d) = down {
                let id = cluster.ids[d];
                let handler = Cluster::handler(&cluster.stores[d]);
                cluster.transports[d] = cluster.network.restart(id, handler);
            }
            check(&cluster, &balancer, &objects)
                .map_err(|e| format!("epoch {epoch} step {step}: {e}"))?;
        }
        planned.push(balancer.end_epoch().len());
    }
    // Let the last moves finish without faults, then check the placement.
    cluster.network.set_faults(Faults::NONE);
    for _ in 0..4 {
        let inflight: Vec<_> = balancer.migrations().copied().collect();
        for m in inflight {
            let (from, to) = (cluster.index(&m.from), cluster.index(&m.to));
            if m.phase == MovePhase::Copying {
                let object = Cluster::fetch(&cluster.transports[to], m.from, m.object)
                    .ok_or("a fetch failed without faults")?;
                block_on(cluster.stores[to].put(object)).map_err(|e| e.to_string())?;
                balancer.copied(&m.object);
            } else {
                block_on(cluster.stores[from].remove(&m.object)).map_err(|e| e.to_string())?;
                balancer.finished(&m.object);
                *moves.entry(m.object).or_default() += 1;
            }
        }
        check(&cluster, &balancer, &objects)?;
    }
    if balancer.migrations().next().is_some() {
        return Err("moves still in flight after the faults stopped".into());
    }
    let loads: Vec<f64> = cluster.ids.iter().map(|n| balancer.node_load(n)).collect();
    let mean = loads.iter().sum::<f64>() / loads.len() as f64;
    let max = loads.iter().copied().fold(0.0, f64::max);
    let hottest = objects
        .iter()
        .map(|o| balancer.object_load(&o.address()))
        .fold(0.0, f64::max);
    // Converging, not oscillating: the last third of the epochs plans a
    // small fraction of the moves the first third did.
    let third = planned.len() / 3;
    let (early, late) = (
        planned[..third].iter().sum::<usize>(),
        planned[planned.len() - third..].iter().sum::<usize>(),
    );
    if late * 4 > early {
        return Err(format!("moves planned per epoch {planned:?} do not settle"));
    }
    // Balanced, or the excess is a single object too hot to move usefully.
    if max > config.high * mean && max - hottest > config.high * mean {
        return Err(format!("loads {loads:.1?} (mean {mean:.1}) did not settle"));
    }
    let allowed = EPOCHS / config.cooldown_epochs + 1;
    if let Some((object, n)) = moves.iter().find(|(_, n)| **n > allowed) {
        return Err(format!("{object} moved {n} times (at most {allowed})"));
    }
    if moves.is_empty() {
        return Err("nothing moved: the test proves nothing".into());
    }
    eprintln!(
        "seed {seed}: {reads} reads ({failed_reads} lost to the network), {} moves of {} objects, {crashes} node crashes, moves planned per epoch {planned:?}, loads {loads:.0?}",
        moves.values().sum::<u64>(),
        moves.len()
    );
    Ok(())
}

/// Every object held, re-hashing, by one of its read targets; none held by
/// a node that is not a target.
fn check(cluster: &Cluster, balancer: &LoadBalancer, objects: &[Object]) -> Result<(), String> {
    for object in objects {
        let address = object.address();
        let targets: Vec<usize> = balancer
            .read_targets(&address)
            .iter()
            .map(|t| cluster.index(t))
            .collect();
        if !targets.iter().any(|&t| cluster.holds(t, &address)) {
            return Err(format!("{address} is held by none of its read targets"));
        }
        for node in 0..cluster.ids.len() {
            let target = targets.contains(&node)
                || balancer
                    .migrations()
                    .any(|m| m.object == address && cluster.index(&m.to) == node);
            if !target && cluster.holds(node, &address) {
                return Err(format!("{address} left behind on node {node}"));
            }
        }
    }
    Ok(())
}

#[test]
fn objects_migrate_under_a_skewed_workload_and_stay_readable() {
    check_seeds("load balancing in a workload", 3, run);
}
