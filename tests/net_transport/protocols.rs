//! The stack's protocols over QUIC, unchanged: four nodes on 127.0.0.1,
//! each serving CAM, deduplication, broadcast and consensus through one
//! `ProtocolMux` on its `QuicTransport`.

use super::{keys, localhost, test_config};
use futures::StreamExt;
use hologram::cam::MemoryStore;
use hologram::cam::{
    CamHandler, DedupHandler, DeduplicationNetwork, DistributedCAM, HashRing, ProviderRecords,
    StoreResult,
};
use hologram::consensus::broadcast::{BroadcastConfig, BroadcastDriver, Directory};
use hologram::consensus::LatticeProtocol;
use hologram::consensus::{
    inbox, Command, Replica, ReplicaConfig, ReplicaDriver, ReplicatedStateMachine, StateMachine,
    ValidatorSet,
};
use hologram::lattice::transport::{ProtocolMux, Timer};
use hologram::lattice::Address;
use hologram::lattice::LatticeRouter;
use hologram::net::{AddressBook, QuicTransport};
use hologram::receipt::{KeyPair, Receipt};
use std::sync::{Arc, RwLock};
use std::time::Duration;

const NODES: u8 = 4;

/// Counts applied commands.
#[derive(Default)]
struct Counter(u64);

impl StateMachine for Counter {
    type Output = u64;
    fn apply(&mut self, _: &Command) -> u64 {
        self.0 += 1;
        self.0
    }
    fn state_receipt(&self) -> Receipt {
        Receipt::from_bytes(&self.0.to_le_bytes())
    }
    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(self.0.to_le_bytes().to_vec())
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.0 = u64::from_le_bytes(bytes.try_into().map_err(|_| "not 8 bytes")?);
        Ok(())
    }
}

struct Node {
    keys: KeyPair,
    transport: Arc<QuicTransport>,
    cam: DistributedCAM<MemoryStore>,
    broadcast: BroadcastDriver,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cam_dedup_consensus_and_broadcast_run_over_quic() {
    super::logs();
    let all: Vec<KeyPair> = (1..=NODES).map(keys).collect();
    let ids: Vec<_> = all.iter().map(KeyPair::node_id).collect();
    let directory = Directory::new(ids.iter().copied());
    let validators = ValidatorSet::new(ids.clone()).unwrap();
    let broadcast_config = BroadcastConfig {
        ack_threshold: (2 * (NODES as usize - 1)).div_ceil(3),
        repair_interval_ms: 20,
        ..BroadcastConfig::default()
    };
    let book = AddressBook::new();
    let mut nodes = Vec::new();
    let mut inboxes = Vec::new();
    for k in &all {
        let store = Arc::new(MemoryStore::new());
        let providers = ProviderRecords::new(1024);
        let broadcast = BroadcastDriver::new(LatticeProtocol::new(
            k.clone(),
            directory.clone(),
            broadcast_config.clone(),
            7,
        ));
        let (consensus, inbox) = inbox();
        let mux = Arc::new(ProtocolMux::new());
        mux.mount(Arc::new(CamHandler::new(
            Arc::clone(&store),
            providers.clone(),
        )))
        .mount(Arc::new(DedupHandler::new(Arc::new(MemoryStore::new()))))
        .mount(broadcast.handler())
        .mount(Arc::new(consensus));
        let transport = Arc::new(
            QuicTransport::bind(k, localhost(), mux, book.clone(), test_config()).unwrap(),
        );
        broadcast.attach(transport.clone());
        let mut router = LatticeRouter::new(k.node_id());
        for id in ids.iter().filter(|id| **id != k.node_id()) {
            router.table_mut().insert(*id);
        }
        let cam = DistributedCAM::new(
            k.node_id(),
            store,
            Arc::clone(&transport) as _,
            Arc::new(RwLock::new(router)),
            providers,
        );
        nodes.push(Node {
            keys: k.clone(),
            transport,
            cam,
            broadcast,
        });
        inboxes.push(inbox);
    }

    // CAM: node 1 stores 48 KiB; node 2 gets it over the network, verified.
    let object: Vec<u8> = (0..48 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let address = nodes[0].cam.put(object.clone()).await.unwrap();
    assert_eq!(address, Address::of(&object));
    let fetched = nodes[1].cam.get(address).await.unwrap();
    assert_eq!(fetched.data(), &object[..]);

    // Deduplication: the second copy is only counted.
    let mut ring = HashRing::new();
    for id in &ids {
        ring.add(*id);
    }
    let client =
        DeduplicationNetwork::new(nodes[0].transport.clone(), Arc::new(RwLock::new(ring)), 3);
    let first = client.store_unique(b"over quic".to_vec()).await;
    assert!(
        matches!(first, StoreResult::Stored(_, acks) if acks >= 2),
        "{first:?}"
    );
    let second = client.store_unique(b"over quic".to_vec()).await;
    assert!(matches!(second, StoreResult::Duplicate(_)), "{second:?}");
    assert_eq!(
        client.get(Address::of(b"over quic")).await.unwrap().data(),
        b"over quic"
    );

    // Consensus: four validators decide a height; certificates checked.
    let timer = Timer::new();
    let mut handles = Vec::new();
    let mut streams = Vec::new();
    for (node, inbox) in nodes.iter().zip(inboxes) {
        let replica =
            Replica::new(node.keys.clone(), ReplicaConfig::new(validators.clone())).unwrap();
        let (driver, handle, stream) =
            ReplicaDriver::new(replica, node.transport.clone(), timer.clone(), inbox);
        tokio::spawn(driver.run());
        handles.push(handle);
        streams.push(stream);
    }
    // Commands are signed by the client that issues them.
    let client = KeyPair::from_seed([0xc1; 32]);
    let commands: Vec<Command> = (0..8u32)
        .map(|i| {
            Command::sign(
                &client,
                u64::from(i),
                0,
                format!("command {i}").into_bytes(),
            )
            .unwrap()
        })
        .collect();
    handles[0].submit(commands.clone(), false).await.unwrap();
    let mut machines = Vec::new();
    for stream in &mut streams {
        let mut machine = ReplicatedStateMachine::new(Counter::default(), validators.clone());
        while machine.applied_count() < commands.len() as u64 {
            let decision = tokio::time::timeout(Duration::from_secs(20), stream.next())
                .await
                .expect("a decision within 20 s")
                .expect("a validator stopped");
            machine.apply_decision(&decision).unwrap();
        }
        machines.push(machine);
    }
    for handle in &handles {
        handle.stop();
    }
    assert!(machines.iter().all(|m| m.verify_replica(&machines[0])));
    assert_eq!(machines[0].state().0, commands.len() as u64);

    // Broadcast: node 3's message reaches all, with a delivery certificate.
    let repairs = futures::future::join_all(nodes.iter().map(|n| n.broadcast.run(&timer)));
    let sent = nodes[2].broadcast.broadcast_and_wait(
        b"signed at every hop, over QUIC",
        &timer,
        Duration::from_secs(10),
    );
    let (result, _) =
        futures::future::join(sent, timer.timeout(Duration::from_millis(300), repairs)).await;
    let certificate = result.unwrap().certificate.expect("a delivery certificate");
    certificate
        .verify(&directory, broadcast_config.ack_threshold)
        .unwrap();
    for (i, node) in nodes.iter().enumerate().filter(|(i, _)| *i != 2) {
        let delivered = node.broadcast.take_deliveries();
        assert_eq!(
            delivered.len(),
            1,
            "node {} got {} deliveries",
            i + 1,
            delivered.len()
        );
    }
}
