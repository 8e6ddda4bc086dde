//! `DeduplicationNetwork` over the in-memory network: majority writes,
//! duplicates counted as references, frees at zero and never below, quorum
//! reads that repair. Driven by `futures::executor::block_on`: no runtime.

use futures::executor::block_on;
use hologram_cam::store::MemoryStore;
use hologram_cam::{DedupHandler, DeduplicationNetwork, HashRing, Store, StoreResult};
use hologram_lattice::transport::{MemoryNetwork, MemoryTransport};
use hologram_lattice::{Address, NodeId};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

struct Net {
    network: MemoryNetwork,
    stores: HashMap<NodeId, Arc<MemoryStore>>,
    holders: HashMap<NodeId, Arc<DedupHandler<MemoryStore>>>,
    client: DeduplicationNetwork<MemoryTransport>,
}

fn network(nodes: u8) -> Net {
    let network = MemoryNetwork::new(3);
    let mut ring = HashRing::new();
    let mut stores = HashMap::new();
    let mut holders = HashMap::new();
    for i in 0..nodes {
        let id = NodeId::from_bytes(*blake3::hash(&[i]).as_bytes());
        let store = Arc::new(MemoryStore::new());
        let holder = Arc::new(DedupHandler::new(Arc::clone(&store)));
        network.join(id, Arc::clone(&holder) as _);
        ring.add(id);
        stores.insert(id, store);
        holders.insert(id, holder);
    }
    let client_id = NodeId::from_bytes([0xc1; 32]);
    let transport = Arc::new(network.join(
        client_id,
        Arc::new(DedupHandler::new(Arc::new(MemoryStore::new()))),
    ));
    let client = DeduplicationNetwork::new(transport, Arc::new(RwLock::new(ring)), 3);
    Net {
        network,
        stores,
        holders,
        client,
    }
}

fn held(net: &Net, address: &Address) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = net
        .stores
        .iter()
        .filter(|(_, s)| block_on(s.contains(address)).unwrap())
        .map(|(id, _)| *id)
        .collect();
    ids.sort();
    ids
}

#[test]
fn duplicates_count_references_and_frees_happen_at_zero() {
    let net = network(5);
    assert_eq!(
        (net.client.write_quorum(), net.client.read_quorum()),
        (2, 2)
    );
    let data = b"stored once, referenced twice".to_vec();
    let address = Address::of(&data);
    assert_eq!(
        block_on(net.client.store_unique(data.clone())),
        StoreResult::Stored(address, 3)
    );
    let mut owners = net.client.owners(&address);
    owners.sort();
    assert_eq!(held(&net, &address), owners, "exactly the N owners hold it");
    assert_eq!(
        block_on(net.client.store_unique(data.clone())),
        StoreResult::Duplicate(address)
    );
    for o in &owners {
        assert_eq!(block_on(net.holders[o].refs(&address)), 2);
    }
    assert_eq!(block_on(net.client.release(address)), 3);
    assert_eq!(
        held(&net, &address),
        owners,
        "one reference left: still held"
    );
    assert_eq!(block_on(net.client.release(address)), 3);
    assert!(held(&net, &address).is_empty(), "freed at zero");
    // Never below zero: a further release is refused everywhere.
    assert_eq!(block_on(net.client.release(address)), 0);
    for o in &owners {
        assert_eq!(block_on(net.holders[o].refs(&address)), 0);
    }
}

#[test]
fn writes_need_a_majority_of_owners() {
    let net = network(5);
    let data = b"quorum".to_vec();
    let address = Address::of(&data);
    let owners = net.client.owners(&address);
    net.network.crash(owners[0]);
    assert_eq!(
        block_on(net.client.store_unique(data.clone())),
        StoreResult::Stored(address, 2)
    );
    // Readable with one of its holders down.
    assert_eq!(block_on(net.client.get(address)).unwrap().data(), &data[..]);
    let other = b"no quorum".to_vec();
    let other_owners = net.client.owners(&Address::of(&other));
    for o in &other_owners[..2] {
        net.network.crash(*o);
    }
    assert_eq!(
        block_on(net.client.store_unique(other.clone())),
        StoreResult::Failed(Address::of(&other))
    );
}

#[test]
fn reads_repair_owners_that_lost_the_object() {
    let net = network(5);
    let data = b"repair me".to_vec();
    let address = Address::of(&data);
    assert!(matches!(
        block_on(net.client.store_unique(data.clone())),
        StoreResult::Stored(_, 3)
    ));
    let owners = net.client.owners(&address);
    assert!(block_on(net.stores[&owners[0]].remove(&address)).unwrap());
    assert_eq!(block_on(net.client.get(address)).unwrap().data(), &data[..]);
    assert!(
        block_on(net.stores[&owners[0]].contains(&address)).unwrap(),
        "the primary was repaired"
    );
    assert!(block_on(net.client.get(Address::of(b"absent"))).is_err());
}
