//! The deduplication network under faults: message loss, duplication and
//! bit corruption, a Byzantine holder that substitutes objects and fakes
//! acknowledgements, crash-restart and partitions of one node at a time.
//! Invariants, checked after every operation: nothing returned fails to
//! match its address; every write acknowledged by a quorum, and not
//! released, stays readable while at most N − W of its owners are out;
//! reference counts never exceed the references attempted (counts are
//! sets: they cannot go below zero, and a release of a freed object finds
//! nothing). Seeds:
//! `HOLOGRAM_SEEDS` (default 4); replay one with `HOLOGRAM_SEED`.
//!
//! Then holders over redb files that crash and restart, whose reference
//! sets must survive exactly, and copies of one request delivered on two
//! threads at once, which must be applied once.

use futures::executor::block_on;
use hologram_cam::dedup::{DedupMessage, Kept, Reference, Request};
use hologram_cam::{DedupHandler, DeduplicationNetwork, HashRing, StoreResult};
use hologram_cam::{MemoryStore, RedbStore};
use hologram_lattice::sim::{check_seeds, Faults};
use hologram_lattice::transport::{async_trait, Handler, HandlerError, MemoryNetwork, Protocol};
use hologram_lattice::{Address, NodeId, PeerId};
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Acknowledges every write without storing; answers reads with other bytes.
struct Substituter;

#[async_trait]
impl Handler for Substituter {
    async fn request(
        &self,
        _: PeerId,
        _: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        let answer = match Request::decode(&payload).map(|r| r.message) {
            Ok(DedupMessage::Get(_)) => DedupMessage::Found(b"substituted".as_slice().into()),
            Ok(DedupMessage::Has(_)) => DedupMessage::HasAnswer(true),
            Ok(DedupMessage::Release(..)) => DedupMessage::Refs(0),
            Ok(DedupMessage::Free(_)) => DedupMessage::Freed(true),
            Ok(DedupMessage::Put { .. }) => DedupMessage::Held {
                refs: 1,
                before: true,
            },
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
            _ => DedupMessage::Refs(1),
        };
        Ok(answer.encode())
    }
    async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {}
}

/// A network of `seed` with these rates of loss, duplication and
/// corruption, and no latency: answers come at once, so only lost messages
/// wait out a timeout.
fn faulty_network(seed: u64, loss: f64, duplicate: f64, corrupt: f64) -> MemoryNetwork {
    let network = MemoryNetwork::new(seed);
    network.set_faults(Faults {
        loss,
        duplicate,
        corrupt,
        latency_ms: (0, 0),
    });
    network
}

fn run(seed: u64) -> Result<(), String> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let network = faulty_network(seed, 0.05, 0.05, 0.02);
    let ids: Vec<NodeId> = (0..7u8)
        .map(|i| NodeId::from_bytes(*blake3::hash(&[i, seed as u8]).as_bytes()))
        .collect();
    let byzantine = ids[6];
    let mut ring = HashRing::new();
    let mut holders = BTreeMap::new();
    for &id in &ids {
        ring.add(id);
        if id == byzantine {
            network.join(id, Arc::new(Substituter));
        } else {
            let holder = Arc::new(DedupHandler::new(Arc::new(MemoryStore::new())));
            network.join(id, Arc::clone(&holder) as _);
            holders.insert(id, holder);
        }
    }
    let client_id = NodeId::from_bytes([0xcc; 32]);
    let transport = Arc::new(network.join(client_id, Arc::new(Substituter)));
    let client = DeduplicationNetwork::new(transport, Arc::new(RwLock::new(ring)), 3)
        .with_timeout(Duration::from_millis(5));
    let slack = 3 - client.write_quorum(); // N − W

    // Objects acknowledged and the references taken on them.
    let mut acked: BTreeMap<Address, (Vec<u8>, u64)> = BTreeMap::new();
    // References attempted per address (a failed write may still count at some holders).
    let mut attempted: BTreeMap<Address, u64> = BTreeMap::new();
    let mut out: Option<NodeId> = None; // the one honest node crashed or cut off
    let mut crashed = false;
    for step in 0..150 {
        match rng.random_range(0..10) {
            0..=3 => {
                // One object with store_unique, or a few with store_many.
                let count = if rng.random_bool(0.7) {
                    1
                } else {
                    rng.random_range(2..6)
                };
                let batch: Vec<Vec<u8>> = (0..count)
                    .map(|_| format!("seed {seed} object {}", rng.random_range(0..40)).into_bytes())
                    .collect();
                let results = if count == 1 {
                    vec![block_on(client.store_unique(batch[0].clone()))]
                } else {
                    block_on(client.store_many(batch.clone()))
                };
                if results.len() != batch.len() {
                    return Err(format!(
                        "step {step}: {} results for {count} objects",
                        results.len()
                    ));
                }
                for (data, result) in batch.into_iter().zip(results) {
                    let address = Address::of(&data);
                    *attempted.entry(address).or_default() += 1;
                    match result {
                        StoreResult::Stored(a, _) | StoreResult::Duplicate(a) if a == address => {
                            acked.entry(address).or_insert((data, 0)).1 += 1;
                        }
                        StoreResult::Failed(a) if a == address => {}
                        other => return Err(format!("step {step}: a store answered {other:?}")),
                    }
                }
            }
            4 => {
                // Release one reference. Whatever the acknowledgements say, the
                // model counts it as done: a holder applies each release at most
                // once, so no holder can count fewer references than the model.
                let Some((&address, _)) = acked.iter().nth(rng.random_range(0..acked.len().max(1)))
                else {
                    continue;
                };
                block_on(client.release(address));
                if let Some(entry) = acked.get_mut(&address) {
                    entry.1 -= 1;
                    if entry.1 == 0 {
                        acked.remove(&address);
                    }
                }
            }
            5..=6 => {
                // One honest node out at a time: crash it or cut it off.
                if let Some(node) = out.take() {
                    if crashed {
                        network.restart(node, Arc::clone(&holders[&node]) as _);
                    } else {
                        network.heal();
                    }
                } else {
                    let honest: Vec<NodeId> = holders.keys().copied().collect();
                    let node = honest[rng.random_range(0..honest.len())];
                    crashed = rng.random_bool(0.5);
                    if crashed {
                        network.crash(node);
                    } else {
                        let rest: Vec<PeerId> = ids
                            .iter()
                            .copied()
                            .chain([client_id])
                            .filter(|&p| p != node)
                            .collect();
                        network.partition(&[&[node], &rest]);
                    }
                    out = Some(node);
                }
            }
            _ => {
                let Some((&address, (data, _))) =
                    acked.iter().nth(rng.random_range(0..acked.len().max(1)))
                else {
                    continue;
                };
                if let Ok(object) = block_on(client.get(address)) {
                    if object.data() != &data[..] {
                        return Err(format!(
                            "step {step}: get returned wrong bytes for {address}"
                        ));
                    }
                }
            }
        }
        // Invariants after every step: on three acknowledged objects, and on
        // all of them every 25 steps and at the end.
        let all = step % 25 == 24 || step == 149;
        let sample: Vec<Address> = if all || acked.len() <= 3 {
            acked.keys().copied().collect()
        } else {
            (0..3)
                .filter_map(|_| acked.keys().nth(rng.random_range(0..acked.len())).copied())
                .collect()
        };
        for address in &sample {
            let Some((data, _)) = acked.get(address) else {
                continue;
            };
            let owners = client.owners(address);
            let down = owners
                .iter()
                .filter(|o| Some(**o) == out || **o == byzantine)
                .count();
            if down <= slack {
                let read = (0..6).find_map(|_| block_on(client.get(*address)).ok());
                match read {
                    Some(object) if object.data() == &data[..] => {}
                    Some(_) => return Err(format!("step {step}: {address} read back wrong")),
                    None => {
                        return Err(format!(
                            "step {step}: acknowledged {address} unreadable with {down} owners out"
                        ))
                    }
                }
            }
            for owner in &owners {
                if let Some(holder) = holders.get(owner) {
                    let counted = block_on(holder.refs(address))
                        .map_err(|e| format!("step {step}: {owner} cannot count: {e}"))?;
                    let taken = attempted.get(address).copied().unwrap_or(0);
                    if counted > taken {
                        return Err(format!(
                            "step {step}: {owner} counts {counted} references to {address}, {taken} attempted"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn the_deduplication_network_survives_faults() {
    check_seeds("deduplication network under faults", 4, run);
}

/// A temp directory for one test's redb files, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("hologram-dedup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn file(&self, id: &NodeId) -> std::path::PathBuf {
        self.0.join(format!("{id}.redb"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

type Durable = DedupHandler<RedbStore, RedbStore>;

/// Holders over redb files crash and restart (their memory lost, their file
/// reopened) between operations, under loss and duplication. Invariants,
/// after every restart: the restarted holder counts exactly the references
/// it counted before the crash, for every object it holds (with reference
/// sets in memory it would count one unknown reference instead); at every
/// step, no holder counts more references than were attempted. At the end,
/// on a quiet network, releasing every reference frees every object.
fn durable_run(seed: u64) -> Result<(), String> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let dir = TempDir::new(&format!("restart-{seed}"));
    let network = faulty_network(seed, 0.03, 0.1, 0.0);
    let ids: Vec<NodeId> = (0..4u8)
        .map(|i| NodeId::from_bytes(*blake3::hash(&[i, seed as u8, 0xd0]).as_bytes()))
        .collect();
    let open = |id: &NodeId| -> Result<Arc<Durable>, String> {
        let store = RedbStore::create(dir.file(id)).map_err(|e| e.to_string())?;
        Ok(Arc::new(DedupHandler::durable(Arc::new(store))))
    };
    let mut ring = HashRing::new();
    let mut holders: BTreeMap<NodeId, Arc<Durable>> = BTreeMap::new();
    for id in &ids {
        let holder = open(id)?;
        network.join(*id, Arc::clone(&holder) as _);
        holders.insert(*id, holder);
        ring.add(*id);
    }
    let client_id = NodeId::from_bytes([0xcd; 32]);
    let transport = Arc::new(network.join(client_id, Arc::new(Substituter)));
    let client = DeduplicationNetwork::new(transport, Arc::new(RwLock::new(ring)), 3)
        .with_timeout(Duration::from_millis(20));
    let objects: Vec<Vec<u8>> = (0..6)
        .map(|i| format!("seed {seed} durable object {i}").into_bytes())
        .collect();
    let mut attempted: BTreeMap<Address, u64> = BTreeMap::new();
    for step in 0..40 {
        match rng.random_range(0..6) {
            0..=2 => {
                let data = objects[rng.random_range(0..objects.len())].clone();
                *attempted.entry(Address::of(&data)).or_default() += 1;
                block_on(client.store_unique(data));
            }
            3 => {
                let address = Address::of(&objects[rng.random_range(0..objects.len())]);
                block_on(client.release(address));
            }
            _ => {
                let id = ids[rng.random_range(0..ids.len())];
                let counts = |holder: &Durable| -> Result<Vec<u64>, String> {
                    objects
                        .iter()
                        .map(|o| block_on(holder.refs(&Address::of(o))).map_err(|e| e.to_string()))
                        .collect()
                };
                let before = counts(&holders[&id])?;
                // The crash: the network drops the handler, and so do we;
                // only the file is left.
                network.crash(id);
                holders.remove(&id);
                let holder = open(&id)?;
                network.restart(id, Arc::clone(&holder) as _);
                let after = counts(&holder)?;
                holders.insert(id, holder);
                if before != after {
                    return Err(format!(
                        "step {step}: {id} counted {before:?} before a restart, {after:?} after"
                    ));
                }
            }
        }
        for (id, holder) in &holders {
            for (address, &taken) in &attempted {
                let counted = block_on(holder.refs(address)).map_err(|e| e.to_string())?;
                if counted > taken {
                    return Err(format!(
                        "step {step}: {id} counts {counted} references to {address}, {taken} attempted"
                    ));
                }
            }
        }
    }
    // Quiet network: release everything this client holds; all is freed.
    network.set_faults(Faults {
        latency_ms: (0, 0),
        ..Faults::NONE
    });
    for o in &objects {
        let address = Address::of(o);
        while block_on(client.release(address)).acknowledged > 0 {}
        // References whose store failed (no write quorum) may still be
        // counted where they arrived, and the client does not hold them:
        // such an object may leak, so only objects every owner counts none
        // of must be gone.
        let owners = client.owners(&address);
        let counted: u64 = owners
            .iter()
            .map(|o| block_on(holders[o].refs(&address)).unwrap_or(1))
            .sum();
        let held = owners
            .iter()
            .filter(|o| block_on(holders[o].refs(&address)).unwrap_or(1) > 0)
            .count();
        if counted == 0 && held != 0 {
            return Err(format!("{address} counted by none but still held"));
        }
    }
    Ok(())
}

#[test]
fn durable_references_survive_crash_and_restart() {
    check_seeds("durable references across restarts", 2, durable_run);
}

#[test]
fn a_restarted_durable_holder_counts_exactly_and_frees_at_zero() {
    let dir = TempDir::new("exact");
    let network = MemoryNetwork::new(9);
    let ids: Vec<NodeId> = (0..3u8)
        .map(|i| NodeId::from_bytes([0x40 + i; 32]))
        .collect();
    let mut ring = HashRing::new();
    let mut holders: BTreeMap<NodeId, Arc<Durable>> = BTreeMap::new();
    for id in &ids {
        let holder = Arc::new(DedupHandler::durable(Arc::new(
            RedbStore::create(dir.file(id)).unwrap(),
        )));
        network.join(*id, Arc::clone(&holder) as _);
        holders.insert(*id, holder);
        ring.add(*id);
    }
    let transport = Arc::new(network.join(NodeId::from_bytes([0xce; 32]), Arc::new(Substituter)));
    let client = DeduplicationNetwork::new(transport, Arc::new(RwLock::new(ring)), 3);
    let data = b"referenced twice, then every holder restarts".to_vec();
    let address = Address::of(&data);
    assert_eq!(
        block_on(client.store_unique(data.clone())),
        StoreResult::Stored(address, 3)
    );
    assert_eq!(
        block_on(client.store_unique(data.clone())),
        StoreResult::Duplicate(address)
    );
    for id in &ids {
        network.crash(*id);
        holders.remove(id);
        let holder = Arc::new(DedupHandler::durable(Arc::new(
            RedbStore::open(dir.file(id)).unwrap(),
        )));
        network.restart(*id, Arc::clone(&holder) as _);
        assert_eq!(block_on(holder.refs(&address)), Ok(2), "{id} after restart");
        holders.insert(*id, holder);
    }
    let first = block_on(client.release(address));
    assert_eq!((first.acknowledged, first.freed), (3, false));
    assert_eq!(block_on(client.get(address)).unwrap().data(), &data[..]);
    let second = block_on(client.release(address));
    assert_eq!((second.acknowledged, second.freed), (3, true));
    for holder in holders.values() {
        assert_eq!(block_on(holder.refs(&address)), Ok(0));
    }
}

#[test]
fn copies_of_one_request_delivered_at_once_are_applied_once() {
    let holder = Arc::new(DedupHandler::new(Arc::new(MemoryStore::new())));
    let client = NodeId::from_bytes([0xcf; 32]);
    let barrier = std::sync::Barrier::new(2);
    for i in 0..500u64 {
        let data: hologram_cam::SharedBytes = format!("raced object {i}").into_bytes().into();
        let reference = Reference { client, op: i };
        let payload = Request {
            op: i,
            message: DedupMessage::Put {
                address: Address::of(&data),
                reference: Some(reference),
                data,
            },
        }
        .encode();
        let answers: Vec<DedupMessage> = std::thread::scope(|s| {
            let copies: Vec<_> = (0..2)
                .map(|_| {
                    let (holder, payload, barrier) = (&holder, payload.clone(), &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let answer =
                            block_on(holder.request(client, hologram_cam::DEDUP_PROTOCOL, payload))
                                .unwrap();
                        DedupMessage::decode(&answer).unwrap()
                    })
                })
                .collect();
            copies.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let first = DedupMessage::Held {
            refs: 1,
            before: false,
        };
        assert_eq!(answers, vec![first.clone(), first], "copy {i}");
    }
}
