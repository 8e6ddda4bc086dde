//! `DistributedCAM` under faults: message loss, duplication and bit
//! corruption, two peers that answer with substituted bytes, crash-restart
//! and partitions of one node at a time. Invariants, after every operation:
//! no honest store holds, and no `get` returns, bytes that do not hash to
//! their address; an object is readable from another node whenever its
//! holder is up and reachable and the network is quiet. Seeds:
//! `HOLOGRAM_SEEDS` (default 4); replay one with `HOLOGRAM_SEED`.

use futures::executor::block_on;
use hologram_cam::CamMessage;
use hologram_cam::MemoryStore;
use hologram_cam::{CamHandler, DistributedCAM, ProviderRecords, Store};
use hologram_lattice::sim::{check_seeds, Faults};
use hologram_lattice::transport::{
    async_trait, Handler, HandlerError, MemoryNetwork, MemoryTransport, Protocol,
};
use hologram_lattice::LatticeRouter;
use hologram_lattice::{Address, NodeId, PeerId};
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

type Cam = DistributedCAM<MemoryStore>;

/// Answers every `Get` with substituted bytes.
struct Substituter;

#[async_trait]
impl Handler for Substituter {
    async fn request(&self, _: PeerId, _: Protocol, _: Vec<u8>) -> Result<Vec<u8>, HandlerError> {
        Ok(CamMessage::Found(b"substituted".as_slice().into()).encode())
    }
    async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {}
}

const HOSTILE: Faults = Faults {
    loss: 0.05,
    duplicate: 0.05,
    corrupt: 0.02,
    latency_ms: (0, 0),
};

fn run(seed: u64) -> Result<(), String> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let network = MemoryNetwork::new(seed);
    network.set_faults(HOSTILE);
    let ids: Vec<NodeId> = (0..8u8)
        .map(|i| NodeId::from_bytes(*blake3::hash(&[i, 7, seed as u8]).as_bytes()))
        .collect();
    let liars = [ids[6], ids[7]];
    let mut cams: BTreeMap<NodeId, Cam> = BTreeMap::new();
    let mut handlers: BTreeMap<NodeId, Arc<CamHandler<MemoryStore>>> = BTreeMap::new();
    let mut parts: BTreeMap<NodeId, (Arc<MemoryStore>, ProviderRecords)> = BTreeMap::new();
    // A node's CAM over a transport (rebuilt after a restart, which closes the old one).
    let make_cam = |id: NodeId,
                    store: Arc<MemoryStore>,
                    providers: ProviderRecords,
                    transport: MemoryTransport|
     -> Cam {
        let mut router = LatticeRouter::new(id).with_k(8);
        for &other in &ids {
            if other != id {
                router.table_mut().insert(other);
            }
        }
        DistributedCAM::new(
            id,
            store,
            Arc::new(transport),
            Arc::new(RwLock::new(router)),
            providers,
        )
        .with_timeout(Duration::from_millis(5))
    };
    for &id in &ids {
        if liars.contains(&id) {
            network.join(id, Arc::new(Substituter));
            continue;
        }
        let store = Arc::new(MemoryStore::new());
        let providers = ProviderRecords::new(1_000);
        let handler = Arc::new(CamHandler::new(Arc::clone(&store), providers.clone()));
        let transport = network.join(id, Arc::clone(&handler) as _);
        cams.insert(
            id,
            make_cam(id, Arc::clone(&store), providers.clone(), transport),
        );
        parts.insert(id, (store, providers));
        handlers.insert(id, handler);
    }
    let honest: Vec<NodeId> = cams.keys().copied().collect();
    let mut written: BTreeMap<Address, (NodeId, Vec<u8>)> = BTreeMap::new();
    let mut out: Option<(NodeId, bool)> = None;
    for step in 0..120 {
        match rng.random_range(0..10) {
            0..=3 => {
                let at = honest[rng.random_range(0..honest.len())];
                if out.is_some_and(|(n, crashed)| n == at && crashed) {
                    continue;
                }
                let data = format!("seed {seed} step {step}").into_bytes();
                let address = block_on(cams[&at].put(data.clone())).map_err(|e| e.to_string())?;
                written.insert(address, (at, data));
            }
            4..=5 => {
                if let Some((node, crashed)) = out.take() {
                    if crashed {
                        let transport = network.restart(node, Arc::clone(&handlers[&node]) as _);
                        let (store, providers) = parts[&node].clone();
                        cams.insert(node, make_cam(node, store, providers, transport));
                    } else {
                        network.heal();
                    }
                } else {
                    let node = honest[rng.random_range(0..honest.len())];
                    let crashed = rng.random_bool(0.5);
                    if crashed {
                        network.crash(node);
                    } else {
                        let rest: Vec<PeerId> =
                            ids.iter().copied().filter(|&p| p != node).collect();
                        network.partition(&[&[node], &rest]);
                    }
                    out = Some((node, crashed));
                }
            }
            _ => {
                let Some((&address, (_, data))) = written
                    .iter()
                    .nth(rng.random_range(0..written.len().max(1)))
                else {
                    continue;
                };
                let at = honest[rng.random_range(0..honest.len())];
                if let Ok(object) = block_on(cams[&at].get(address)) {
                    if object.data() != &data[..] {
                        return Err(format!(
                            "step {step}: get of {address} returned other bytes"
                        ));
                    }
                }
            }
        }
        // Nothing unverified in any honest store.
        for (id, cam) in &cams {
            for address in
                block_on(cam.store().scan(None, usize::MAX)).map_err(|e| e.to_string())?
            {
                let object = block_on(cam.store().get(&address)).map_err(|e| e.to_string())?;
                if object.is_none_or(|o| Address::of(o.data()) != address) {
                    return Err(format!(
                        "step {step}: {id} holds unverified bytes under {address}"
                    ));
                }
            }
        }
    }
    // Quiet network, everyone up: every object is readable from every honest
    // node. No latency either: the 5 ms timeouts are real time, and a
    // loaded machine can stretch a 1 ms + 1 ms round trip past them.
    network.set_faults(Faults {
        latency_ms: (0, 0),
        ..Faults::NONE
    });
    network.heal();
    if let Some((node, true)) = out {
        let transport = network.restart(node, Arc::clone(&handlers[&node]) as _);
        let (store, providers) = parts[&node].clone();
        cams.insert(node, make_cam(node, store, providers, transport));
    }
    for (address, (_, data)) in &written {
        for (id, cam) in &cams {
            match block_on(cam.get(*address)) {
                Ok(object) if object.data() == &data[..] => {}
                other => {
                    return Err(format!(
                        "quiet network: {id} could not read {address}: {other:?}"
                    ))
                }
            }
        }
    }
    Ok(())
}

#[test]
fn the_distributed_cam_survives_faults() {
    check_seeds("DistributedCAM under faults", 4, run);
}
