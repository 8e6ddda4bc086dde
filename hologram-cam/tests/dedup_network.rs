//! `DeduplicationNetwork` over the in-memory network: majority writes,
//! duplicates counted as references, frees at zero and never below, quorum
//! reads that repair. Driven by `futures::executor::block_on`: no runtime.

use futures::executor::block_on;
use hologram_cam::MemoryStore;
use hologram_cam::{DedupHandler, DeduplicationNetwork, HashRing, Store, StoreResult};
use hologram_lattice::transport::{MemoryNetwork, MemoryTransport};
use hologram_lattice::{Address, NodeId};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

struct Net {
    network: MemoryNetwork,
    ring: Arc<RwLock<HashRing>>,
    transports: HashMap<NodeId, MemoryTransport>,
    stores: HashMap<NodeId, Arc<MemoryStore>>,
    holders: HashMap<NodeId, Arc<DedupHandler<MemoryStore>>>,
    client: DeduplicationNetwork,
}

fn network(nodes: u8) -> Net {
    let network = MemoryNetwork::new(3);
    let mut ring = HashRing::new();
    let mut stores = HashMap::new();
    let mut holders = HashMap::new();
    let mut transports = HashMap::new();
    for i in 0..nodes {
        let id = NodeId::from_bytes(*blake3::hash(&[i]).as_bytes());
        let store = Arc::new(MemoryStore::new());
        let holder = Arc::new(DedupHandler::new(Arc::clone(&store)));
        transports.insert(id, network.join(id, Arc::clone(&holder) as _));
        ring.add(id);
        stores.insert(id, store);
        holders.insert(id, holder);
    }
    let client_id = NodeId::from_bytes([0xc1; 32]);
    let transport = Arc::new(network.join(
        client_id,
        Arc::new(DedupHandler::new(Arc::new(MemoryStore::new()))),
    ));
    let ring = Arc::new(RwLock::new(ring));
    let client = DeduplicationNetwork::new(transport, Arc::clone(&ring), 3);
    Net {
        network,
        ring,
        transports,
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
        assert_eq!(block_on(net.holders[o].refs(&address)), Ok(2));
    }
    let first = block_on(net.client.release(address));
    assert_eq!((first.acknowledged, first.freed), (3, false));
    assert_eq!(
        held(&net, &address),
        owners,
        "one reference left: still held"
    );
    let second = block_on(net.client.release(address));
    assert_eq!((second.acknowledged, second.freed), (3, true));
    assert!(held(&net, &address).is_empty(), "freed at zero");
    // Never below zero: a further release finds nothing anywhere.
    assert_eq!(block_on(net.client.release(address)).acknowledged, 0);
    for o in &owners {
        assert_eq!(block_on(net.holders[o].refs(&address)), Ok(0));
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

/// Every holder hands off for the ring change `before -> after`.
fn hand_off_all(net: &Net, before: &HashRing, after: &HashRing) -> (usize, usize) {
    let (mut copied, mut moved) = (0, 0);
    for (id, holder) in &net.holders {
        let Some(transport) = net.transports.get(id) else {
            continue;
        };
        let report =
            block_on(holder.hand_off(*id, transport, before, after, 3, Duration::from_secs(1)))
                .unwrap();
        assert_eq!(report.pending, 0);
        copied += report.copied;
        moved += report.moved;
    }
    (copied, moved)
}

#[test]
fn joins_and_leaves_move_only_changed_keys_and_their_data() {
    let mut net = network(5);
    let objects: Vec<Vec<u8>> = (0..300u32)
        .map(|i| format!("object {i}").into_bytes())
        .collect();
    for o in &objects {
        assert!(matches!(
            block_on(net.client.store_unique(o.clone())),
            StoreResult::Stored(_, 3)
        ));
    }
    let before = net.ring.read().unwrap().clone();

    // A sixth node joins.
    let newcomer = NodeId::from_bytes(*blake3::hash(b"newcomer").as_bytes());
    let store = Arc::new(MemoryStore::new());
    let holder = Arc::new(DedupHandler::new(Arc::clone(&store)));
    net.transports.insert(
        newcomer,
        net.network.join(newcomer, Arc::clone(&holder) as _),
    );
    net.stores.insert(newcomer, store);
    net.holders.insert(newcomer, holder);
    let mut after = before.clone();
    after.add(newcomer);
    let changed = objects
        .iter()
        .filter(|o| before.owners(&Address::of(o), 3) != after.owners(&Address::of(o), 3))
        .count();
    let (copied, moved) = hand_off_all(&net, &before, &after);
    *net.ring.write().unwrap() = after.clone();
    // One copy per changed key, to the newcomer; about 3/6 of the keys.
    assert_eq!(copied, changed);
    assert_eq!(moved, changed);
    assert!(
        changed > 300 / 4 && changed < 300 * 3 / 4,
        "{changed} of 300 keys changed owners"
    );
    for o in &objects {
        let address = Address::of(o);
        let mut owners = after.owners(&address, 3);
        owners.sort();
        assert_eq!(
            held(&net, &address),
            owners,
            "held exactly by the new owners"
        );
        assert_eq!(block_on(net.client.get(address)).unwrap().data(), &o[..]);
    }

    // Now an old node leaves gracefully.
    let leaver = before.nodes().next().unwrap();
    let mut without = after.clone();
    without.remove(&leaver);
    let (copied, moved) = hand_off_all(&net, &after, &without);
    let changed = objects
        .iter()
        .filter(|o| after.owners(&Address::of(o), 3) != without.owners(&Address::of(o), 3))
        .count();
    assert_eq!((copied, moved), (changed, changed));
    *net.ring.write().unwrap() = without.clone();
    net.network.crash(leaver);
    for o in &objects {
        let address = Address::of(o);
        let mut owners = without.owners(&address, 3);
        owners.sort();
        let mut holding = held(&net, &address);
        holding.retain(|h| *h != leaver);
        assert_eq!(holding, owners);
        assert!(
            !block_on(net.stores[&leaver].contains(&address)).unwrap(),
            "the leaver handed everything off"
        );
    }
}

#[test]
fn a_replica_that_missed_a_reference_cannot_free_what_others_count() {
    let net = network(5);
    let data = b"two references, one missed".to_vec();
    let address = Address::of(&data);
    let owners = net.client.owners(&address);
    assert!(matches!(
        block_on(net.client.store_unique(data.clone())),
        StoreResult::Stored(_, 3)
    ));
    // The second reference misses one owner (it is down), yet reaches W.
    net.network.crash(owners[2]);
    assert_eq!(
        block_on(net.client.store_unique(data.clone())),
        StoreResult::Duplicate(address)
    );
    net.network
        .restart(owners[2], Arc::clone(&net.holders[&owners[2]]) as _);
    assert_eq!(block_on(net.holders[&owners[2]].refs(&address)), Ok(1));
    // One release: owners[2] now counts none, the others one each.
    let r = block_on(net.client.release(address));
    assert_eq!((r.acknowledged, r.freed), (3, false));
    assert_eq!(
        held(&net, &address).len(),
        3,
        "nobody freed it: a reference remains"
    );
    assert_eq!(block_on(net.client.get(address)).unwrap().data(), &data[..]);
    // The second release frees it everywhere.
    assert!(block_on(net.client.release(address)).freed);
    assert!(held(&net, &address).is_empty());
}

#[test]
fn a_hand_off_carries_releases_so_a_late_copy_is_not_counted_again() {
    use hologram_cam::dedup::{DedupMessage, Reference, Request};
    use hologram_lattice::transport::Transport;
    let network = MemoryNetwork::new(5);
    let (a, b) = (
        NodeId::from_bytes([0xa0; 32]),
        NodeId::from_bytes([0xb0; 32]),
    );
    let holder_a = Arc::new(DedupHandler::new(Arc::new(MemoryStore::new())));
    let holder_b = Arc::new(DedupHandler::new(Arc::new(MemoryStore::new())));
    let transport_a = network.join(a, Arc::clone(&holder_a) as _);
    network.join(b, Arc::clone(&holder_b) as _);
    let client_id = NodeId::from_bytes([0xc2; 32]);
    let client = network.join(
        client_id,
        Arc::new(DedupHandler::new(Arc::new(MemoryStore::new()))),
    );
    let data: hologram_cam::SharedBytes = b"handed off with its releases".as_slice().into();
    let address = Address::of(&data);
    let reference = |op| Reference {
        client: client_id,
        op,
    };
    let ask = |to, op, message| {
        let request = Request { op, message }.encode();
        let answer = block_on(client.request(
            to,
            hologram_cam::DEDUP_PROTOCOL,
            request,
            Duration::from_secs(1),
        ));
        DedupMessage::decode(&answer.unwrap()).unwrap()
    };
    for op in [1, 2] {
        let put = DedupMessage::Put {
            address,
            reference: Some(reference(op)),
            data: data.clone(),
        };
        assert!(matches!(ask(a, op, put), DedupMessage::Held { .. }));
    }
    assert_eq!(
        ask(a, 3, DedupMessage::Release(address, reference(2))),
        DedupMessage::Refs(1)
    );
    let (mut before, mut after) = (HashRing::new(), HashRing::new());
    before.add(a);
    after.add(b);
    let report =
        block_on(holder_a.hand_off(a, &transport_a, &before, &after, 1, Duration::from_secs(1)))
            .unwrap();
    assert_eq!((report.copied, report.moved), (1, 1));
    assert_eq!(block_on(holder_b.refs(&address)), Ok(1));
    // A late copy of the released reference reaches the new holder.
    assert_eq!(
        ask(b, 4, DedupMessage::AddRef(address, reference(2))),
        DedupMessage::Refs(1)
    );
    assert_eq!(block_on(holder_a.refs(&address)), Ok(0));
}

#[test]
fn store_many_answers_as_store_unique_would() {
    let net = network(5);
    let mut objects: Vec<Vec<u8>> = (0..300u32)
        .map(|i| format!("batched object {i}").into_bytes())
        .collect();
    objects.push(objects[7].clone()); // twice in one batch
    objects.push(vec![0x42; 100 << 10]); // over the direct-put size
    let results = block_on(net.client.store_many(objects.clone()));
    assert_eq!(results.len(), objects.len());
    for (i, (o, r)) in objects.iter().zip(&results).enumerate() {
        let address = Address::of(o);
        let expected = if i == 300 {
            StoreResult::Duplicate(address)
        } else {
            StoreResult::Stored(address, 3)
        };
        assert_eq!(*r, expected, "object {i}");
        let mut owners = net.client.owners(&address);
        owners.sort();
        assert_eq!(held(&net, &address), owners, "object {i}");
    }
    // Again: all duplicates; object 7, twice in each batch, now has four
    // references everywhere.
    for (o, r) in objects
        .iter()
        .zip(block_on(net.client.store_many(objects.clone())))
    {
        assert_eq!(r, StoreResult::Duplicate(Address::of(o)));
    }
    let seven = Address::of(&objects[7]);
    for o in net.client.owners(&seven) {
        assert_eq!(block_on(net.holders[&o].refs(&seven)), Ok(4));
    }
    // With one owner of each object down, writes still reach W = 2; with
    // two down, they fail.
    let down = net.client.owners(&Address::of(b"fresh 0"))[..2].to_vec();
    net.network.crash(down[0]);
    let fresh: Vec<Vec<u8>> = (0..50u32)
        .map(|i| format!("fresh {i}").into_bytes())
        .collect();
    for (o, r) in fresh
        .iter()
        .zip(block_on(net.client.store_many(fresh.clone())))
    {
        let address = Address::of(o);
        let out = net.client.owners(&address).contains(&down[0]);
        let expected = StoreResult::Stored(address, if out { 2 } else { 3 });
        assert_eq!(r, expected);
    }
    net.network.crash(down[1]);
    assert_eq!(
        block_on(net.client.store_many(vec![b"fresh 0".to_vec()])),
        vec![StoreResult::Failed(Address::of(b"fresh 0"))]
    );
}

#[test]
fn a_batch_that_does_not_add_up_is_refused_and_a_bad_object_only_fails_itself() {
    use hologram_cam::dedup::{BatchedPut, DedupMessage, Kept, Request};
    use hologram_lattice::transport::Handler;
    let holder = DedupHandler::new(Arc::new(MemoryStore::new()));
    let from = NodeId::from_bytes([0xc3; 32]);
    let (good, bad) = (b"good".to_vec(), b"bad!".to_vec());
    let put = |op, address, len| BatchedPut {
        op,
        address,
        reference: None,
        len,
    };
    let send = |puts: Vec<BatchedPut>, data: Vec<u8>| {
        let request = Request {
            op: 1,
            message: DedupMessage::PutMany {
                puts,
                data: data.into(),
            },
        }
        .encode();
        block_on(holder.request(from, hologram_cam::DEDUP_PROTOCOL, request))
    };
    // Lengths that add up to more than the data: refused, nothing stored.
    assert!(send(vec![put(10, Address::of(&good), 40)], good.clone()).is_err());
    assert_eq!(block_on(holder.refs(&Address::of(&good))), Ok(0));
    // The second object's bytes do not match its address: only it fails.
    let answer = send(
        vec![
            put(11, Address::of(&good), 4),
            put(12, Address::of(b"not these"), 4),
        ],
        [good.clone(), bad].concat(),
    )
    .unwrap();
    assert_eq!(
        DedupMessage::decode(&answer).unwrap(),
        DedupMessage::HeldMany(vec![
            Some(Kept {
                refs: 0,
                before: false
            }),
            None
        ])
    );
}
