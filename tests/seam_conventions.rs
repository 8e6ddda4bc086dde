//! The common cases at each seam need no casts (README, "How the seams are
//! held"): a `DistributedCAM` over an `Arc<dyn Store>` and an
//! `Arc<MemoryTransport>`, `Arc`s passed where a generic store or transport
//! is asked for, and a two-phase commit over participants of one type given
//! as they are.

use futures::executor::block_on;
use hologram::cam::{DistributedCAM, MemoryStore, ProviderRecords, Store};
use hologram::lattice::transport::{MemoryNetwork, ProtocolMux, Transport};
use hologram::lattice::LatticeRouter;
use hologram::lattice::PeerId;
use hologram::receipt::KeyPair;
use hologram::txn::{
    DistributedTransaction, Key, LocalParticipant, Op, ParticipantConfig, ParticipantCore,
    ShardMap, TxnId,
};
use std::sync::{Arc, RwLock};

/// Code generic over a transport and a store, as a user writes it.
async fn round_trip<T: Transport, S: Store>(transport: &T, store: &S) -> PeerId {
    let object = hologram::cam::Object::new(b"generic".to_vec());
    store.put(object.clone()).await.expect("put");
    assert!(store.contains(&object.address()).await.expect("contains"));
    transport.local_id()
}

#[test]
fn a_cam_takes_a_dyn_store_and_a_concrete_transport_as_they_are() {
    let network = MemoryNetwork::new(11);
    let id = PeerId::from_bytes([1; 32]);
    let transport = Arc::new(network.join(id, Arc::new(ProtocolMux::new())));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let router = Arc::new(RwLock::new(LatticeRouter::new(id)));
    let cam = DistributedCAM::new(
        id,
        store.clone(),
        transport.clone(),
        router,
        ProviderRecords::new(16),
    );
    let address = block_on(cam.put(b"held behind dyn Store".to_vec())).expect("put");
    assert_eq!(
        block_on(cam.get(address)).expect("get").data(),
        b"held behind dyn Store"
    );
    // `Arc<T>` is a transport and a store, `Arc<dyn Store>` included.
    assert_eq!(block_on(round_trip(&transport, &store)), id);
}

#[test]
fn a_transaction_over_participants_of_one_type_needs_no_casts() {
    let keys = [KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32])];
    let map = ShardMap::even(&[keys[0].node_id(), keys[1].node_id()]);
    let shards: Vec<Arc<LocalParticipant<dyn Store>>> = keys
        .iter()
        .map(|k| {
            let core = ParticipantCore::new(k.clone(), ParticipantConfig::default(), map.clone())
                .expect("core");
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
            Arc::new(LocalParticipant::new(core, store))
        })
        .collect();
    let owner = |k: &Key| {
        shards
            .iter()
            .find(|s| Some(hologram::txn::Participant::id(s.as_ref())) == map.node_of(k))
            .expect("an owner")
    };
    let accounts: Vec<Key> = (0..32u8)
        .map(|i| Key::new(vec![b'k', i]).expect("key"))
        .collect();
    let a = accounts[0].clone();
    let b = accounts
        .iter()
        .find(|k| map.node_of(k) != map.node_of(&a))
        .expect("two shards")
        .clone();
    block_on(owner(&a).with_core(|c| c.load(a.clone(), 10i64.to_le_bytes().to_vec())))
        .expect("core")
        .expect("load");
    // `&Arc<LocalParticipant<_>>`, given as it is.
    let writes = [
        (
            owner(&a),
            vec![Op::Add {
                key: a.clone(),
                delta: -4,
            }],
        ),
        (
            owner(&b),
            vec![Op::Add {
                key: b.clone(),
                delta: 4,
            }],
        ),
    ];
    let receipt =
        block_on(DistributedTransaction::new(TxnId([3; 16]), map.version(), writes).execute())
            .expect("committed");
    assert!(receipt.phi_roundtrip);
    let value = block_on(owner(&b).with_core(|c| c.value(&b).map(<[u8]>::to_vec))).expect("core");
    assert_eq!(value, Some(4i64.to_le_bytes().to_vec()));
}

/// Each crate owns its protocol tags; together they must stay distinct, or
/// two services would claim one tag on a node's mux.
#[test]
fn protocol_tags_owned_by_each_crate_are_distinct() {
    use hologram::lattice::transport::Protocol;
    let tags = [
        Protocol::DISCOVERY,
        Protocol::PING,
        hologram::cam::CAM_PROTOCOL,
        hologram::cam::DEDUP_PROTOCOL,
        hologram::consensus::CONSENSUS_PROTOCOL,
        hologram::consensus::BROADCAST_PROTOCOL,
        hologram::consensus::VALIDATOR_PROTOCOL,
        hologram::txn::TXN_PROTOCOL,
        hologram::txn::TXN_CALL_PROTOCOL,
    ];
    let distinct: std::collections::BTreeSet<_> = tags.iter().collect();
    assert_eq!(distinct.len(), tags.len(), "{tags:?}");
    assert!(
        tags.iter().all(|t| t.0 < 256),
        "user protocols start at 256"
    );
}
