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

use futures::executor::block_on;
use hologram_cam::dedup::{DedupMessage, Request};
use hologram_cam::store::MemoryStore;
use hologram_cam::{DedupHandler, DeduplicationNetwork, HashRing, StoreResult};
use hologram_lattice::sim::{check_seeds, Faults};
use hologram_lattice::transport::{async_trait, Handler, HandlerError, MemoryNetwork, Protocol};
use hologram_lattice::{Address, NodeId, PeerId};
use rand::{Rng, SeedableRng};
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
            Ok(DedupMessage::Get(_)) => DedupMessage::Found(b"substituted".to_vec()),
            Ok(DedupMessage::Has(_)) => DedupMessage::HasAnswer(true),
            Ok(DedupMessage::Release(..)) => DedupMessage::Refs(0),
            Ok(DedupMessage::Free(_)) => DedupMessage::Freed(true),
            _ => DedupMessage::Refs(1),
        };
        Ok(answer.encode())
    }
    async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {}
}

fn run(seed: u64) -> Result<(), String> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let network = MemoryNetwork::new(seed);
    network.set_faults(Faults {
        loss: 0.05,
        duplicate: 0.05,
        corrupt: 0.02,
        // No latency: answers come at once, so only lost messages wait out a timeout.
        latency_ms: (0, 0),
    });
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
        match rng.gen_range(0..10) {
            0..=3 => {
                let data = format!("seed {seed} object {}", rng.gen_range(0..40)).into_bytes();
                let address = Address::of(&data);
                *attempted.entry(address).or_default() += 1;
                match block_on(client.store_unique(data.clone())) {
                    StoreResult::Stored(a, _) | StoreResult::Duplicate(a) if a == address => {
                        acked.entry(address).or_insert((data, 0)).1 += 1;
                    }
                    StoreResult::Failed(_) => {}
                    other => return Err(format!("step {step}: store_unique answered {other:?}")),
                }
            }
            4 => {
                // Release one reference. Whatever the acknowledgements say, the
                // model counts it as done: a holder applies each release at most
                // once, so no holder can count fewer references than the model.
                let Some((&address, _)) = acked.iter().nth(rng.gen_range(0..acked.len().max(1)))
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
                    let node = honest[rng.gen_range(0..honest.len())];
                    crashed = rng.gen_bool(0.5);
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
                    acked.iter().nth(rng.gen_range(0..acked.len().max(1)))
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
                .filter_map(|_| acked.keys().nth(rng.gen_range(0..acked.len())).copied())
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
                    let counted = block_on(holder.refs(address));
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
