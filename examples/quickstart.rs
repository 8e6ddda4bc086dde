//! The hologram quickstart: a 16-node network on the embedded defaults.
//!
//! Run it with `cargo run --release --example quickstart`.
//!
//! Sixteen nodes join one in-memory network; each serves every protocol on
//! one transport through a shared `ProtocolMux`, on which each step mounts
//! the services it needs (`mux.mount(service)`, also after the transport
//! started). In a few seconds the example:
//!
//! 1. places the nodes on the 12,288-site lattice by their ids;
//! 2. stores objects with perfect deduplication (`DeduplicationNetwork`, N = 3
//!    copies on a consistent-hash ring, majority writes), routes to each
//!    object's nearest nodes on the lattice (`LatticeRouter`), and fetches an
//!    object one node put from another node over the network (`DistributedCAM`);
//! 3. runs BFT consensus (Tendermint family) among four validators on a
//!    replicated log, and checks every commit certificate; then the
//!    request/response form: a proposer asks four other nodes' validators
//!    over the network (`ReceiptConsensus` with `RemoteValidator`s), and a
//!    validator that never proposes follows the decided heights;
//! 4. broadcasts an authenticated message to all sixteen and collects a
//!    delivery certificate;
//! 5. moves money between two shards on other nodes with a two-phase commit
//!    on receipts over the network (`RemoteParticipant`s).
//!
//! Every step checks what it prints; the process fails if a check does.

use futures::future::{join, join_all};
use futures::StreamExt;
use hologram::cam::MemoryStore;
use hologram::cam::{
    CamHandler, DedupHandler, DeduplicationNetwork, DistributedCAM, HashRing, ProviderRecords,
    Store, StoreResult,
};
use hologram::consensus::broadcast::{BroadcastConfig, BroadcastDriver, Directory};
use hologram::consensus::LatticeProtocol;
use hologram::consensus::{
    inbox, Batch, ClientSession, Command, ConsensusResult, LocalValidator, ReceiptConsensus,
    RemoteValidator, Replica, ReplicaConfig, ReplicaDriver, ReplicatedStateMachine, StateMachine,
    ValidatorHandler, ValidatorSet,
};
use hologram::lattice::routing::RoutingTable;
use hologram::lattice::transport::{MemoryNetwork, MemoryTransport, ProtocolMux, Timer};
use hologram::lattice::LatticeRouter;
use hologram::lattice::{Address, NodeId};
use hologram::receipt::KeyPair;
use hologram::txn::{
    DistributedTransaction, Key, LocalParticipant, Op, Participant, ParticipantConfig,
    ParticipantCore, ParticipantService, RemoteParticipant, ShardMap, TxnId,
};
use std::error::Error;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const NODES: u8 = 16;
const VALIDATORS: usize = 4;
const REPLICATION: usize = 3;

/// The replicated state of step 3: how many commands were applied.
#[derive(Default)]
struct Counter(u64);

impl StateMachine for Counter {
    type Output = u64;
    fn apply(&mut self, _: &Command) -> u64 {
        self.0 += 1;
        self.0
    }
    fn state_receipt(&self) -> hologram::receipt::Receipt {
        hologram::receipt::Receipt::from_bytes(&self.0.to_le_bytes())
    }
    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(self.0.to_le_bytes().to_vec())
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.0 = u64::from_le_bytes(bytes.try_into().map_err(|_| "not 8 bytes")?);
        Ok(())
    }
}

/// A node of the example: its keys, its transport, the mux its services are
/// mounted on, and its broadcast driver.
struct Node {
    keys: KeyPair,
    transport: Arc<MemoryTransport>,
    mux: Arc<ProtocolMux>,
    broadcast: BroadcastDriver,
}

/// A lattice router of `me` knowing every node of `ids`.
fn router_of(me: NodeId, ids: &[NodeId]) -> LatticeRouter {
    let others = ids.iter().filter(|id| **id != me);
    LatticeRouter::with_table(
        me,
        RoutingTable::from_sites(others.map(|id| (*id, id.coord()))),
    )
}

fn short(id: &NodeId) -> String {
    id.to_string()[..6].to_string()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let started = Instant::now();
    println!("hologram quickstart: {NODES} nodes on one in-memory network\n");

    // --- 1. Identities and lattice sites ------------------------------------
    let keys: Vec<KeyPair> = (1..=NODES).map(|i| KeyPair::from_seed([i; 32])).collect();
    let ids: Vec<NodeId> = keys.iter().map(KeyPair::node_id).collect();
    let directory = Directory::new(ids.iter().copied());
    let validators = ValidatorSet::new(ids[..VALIDATORS].to_vec())?;

    // Every node serves deduplication, broadcast and (the validators)
    // consensus over one transport, told apart by protocol tags.
    let network = MemoryNetwork::new(2026);
    let broadcast_config = BroadcastConfig {
        ack_threshold: (2 * (NODES as usize - 1)).div_ceil(3),
        repair_interval_ms: 20,
        ..BroadcastConfig::default()
    };
    let mut nodes = Vec::new();
    let mut consensus_inboxes = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let core = LatticeProtocol::new(k.clone(), directory.clone(), broadcast_config.clone(), 7);
        let broadcast = BroadcastDriver::new(core);
        let mux = Arc::new(ProtocolMux::new());
        let transport = Arc::new(network.join(k.node_id(), mux.clone()));
        mux.mount(Arc::new(DedupHandler::new(Arc::new(MemoryStore::new()))))
            .mount(broadcast.handler());
        if i < VALIDATORS {
            let (handler, inbox) = inbox();
            mux.mount(Arc::new(handler));
            consensus_inboxes.push(inbox);
        }
        broadcast.attach(transport.clone());
        nodes.push(Node {
            keys: k.clone(),
            transport,
            mux,
            broadcast,
        });
    }
    println!("1. nodes and their lattice sites (page.byte):");
    let sites: Vec<String> = ids
        .iter()
        .map(|id| format!("{}@{}.{}", short(id), id.coord().page(), id.coord().byte()))
        .collect();
    for row in sites.chunks(4) {
        println!("   {}", row.join("  "));
    }

    // --- 2. Deduplicated storage and lattice routing ------------------------
    let mut ring = HashRing::new();
    for id in &ids {
        ring.add(*id);
    }
    let ring = Arc::new(RwLock::new(ring));
    let client = DeduplicationNetwork::new(nodes[0].transport.clone(), ring, REPLICATION);
    let router = router_of(ids[0], &ids);
    println!(
        "\n2. deduplicated storage (N = {REPLICATION}, writes need {}) and lattice routes:",
        client.write_quorum()
    );
    let files: [&[u8]; 5] = [
        b"HELLO WORLD",
        b"the lattice has 12,288 sites",
        b"HELLO WORLD",
        b"receipts bind the exact bytes",
        b"the lattice has 12,288 sites",
    ];
    let (mut stored, mut duplicates) = (0, 0);
    for file in files {
        let address = Address::of(file);
        let result = client.store_unique(file.to_vec()).await;
        let what = match result {
            StoreResult::Stored(_, acks) => {
                stored += 1;
                format!("stored, {acks} copies acknowledged")
            }
            StoreResult::Duplicate(_) => {
                duplicates += 1;
                "duplicate: one more reference, no new copy".to_string()
            }
            StoreResult::Failed(_) => return Err(format!("storing {address} failed").into()),
        };
        let route: Vec<String> = router
            .route_to_address(&address)
            .iter()
            .map(short)
            .collect();
        println!(
            "   {:<31} {}…  {:<44} nearest on the lattice: {}",
            format!("{:?}", String::from_utf8_lossy(file)),
            &address.to_string()[..8],
            what,
            route.join(" ")
        );
    }
    let back = client.get(Address::of(b"HELLO WORLD")).await?;
    assert_eq!(back.data(), b"HELLO WORLD");
    assert_eq!((stored, duplicates), (3, 2));
    println!("   {stored} objects stored once each, {duplicates} duplicates only counted; reads verify every byte against its address");

    // Content-addressed storage across the network: every node mounts a CAM
    // service (now, on its running transport); node 9 puts an object, node
    // 0 fetches it from whoever the lattice routes it to.
    let mut cams = Vec::new();
    for node in &nodes {
        let (store, providers) = (Arc::new(MemoryStore::new()), ProviderRecords::new(1024));
        node.mux
            .mount(Arc::new(CamHandler::new(store.clone(), providers.clone())));
        let me = node.keys.node_id();
        let router = Arc::new(RwLock::new(router_of(me, &ids)));
        cams.push(DistributedCAM::new(
            me,
            store,
            node.transport.clone(),
            router,
            providers,
        ));
    }
    let put = cams[9].put(b"fetched over the network".to_vec()).await?;
    let fetched = cams[0].get(put).await?;
    assert_eq!(fetched.data(), b"fetched over the network");
    assert!(cams[0].store().contains(&put).await?, "verified and cached");
    println!(
        "   DistributedCAM: {} put {}…, {} fetched it over the network, verified against its address",
        short(&ids[9]),
        &put.to_string()[..8],
        short(&ids[0])
    );

    // --- 3. BFT consensus on a replicated log -------------------------------
    let timer = Timer::new();
    let mut handles = Vec::new();
    let mut decisions = Vec::new();
    for (node, inbox) in nodes.iter().zip(consensus_inboxes) {
        let mut config = ReplicaConfig::new(validators.clone());
        config.max_batch = 256;
        let replica = Replica::new(node.keys.clone(), config)?;
        let (driver, handle, stream) =
            ReplicaDriver::new(replica, node.transport.clone(), timer.clone(), inbox);
        tokio::spawn(driver.run());
        handles.push(handle);
        decisions.push(stream);
    }
    // Each command is signed by the client that issues it; every replica
    // verifies the signature before taking it.
    // Each command is numbered in the client's session: the same bytes
    // under another number would be another command.
    let mut client = ClientSession::new(KeyPair::from_seed([0xc1; 32]));
    let commands: Vec<Command> = (0..1_000u32)
        .map(|i| client.command(format!("set counter {i}").into_bytes()))
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    for handle in &handles {
        handle.submit(commands.clone(), false).await?;
    }
    // Each validator applies what it decided to its own replicated state
    // machine: a counter of applied commands, its transitions chained.
    let mut machines: Vec<ReplicatedStateMachine<Counter>> = (0..VALIDATORS)
        .map(|_| ReplicatedStateMachine::new(Counter::default(), validators.clone()))
        .collect();
    for (machine, stream) in machines.iter_mut().zip(decisions.iter_mut()) {
        while machine.applied_count() < commands.len() as u64 {
            let decision = stream.next().await.ok_or("a validator stopped")?;
            machine.apply_decision(&decision)?; // verifies the commit certificate
        }
    }
    for handle in &handles {
        handle.stop();
    }
    let agree = machines.iter().all(|m| m.verify_replica(&machines[0]));
    assert!(agree, "validators diverged");
    println!(
        "\n3. consensus: {} validators (tolerating {} Byzantine) committed {} commands in {} heights in {:.0?};",
        VALIDATORS,
        validators.max_faulty(),
        machines[0].state().0,
        machines[0].next_height(),
        start.elapsed()
    );
    println!(
        "   every height's certificate of ≥ {} signatures checked; all {VALIDATORS} replicated state machines have chain head {}…",
        validators.quorum(),
        &machines[0].receipt_chain().head().to_string()[..8]
    );

    // The request/response form: nodes 8 to 11 serve a validator each (a
    // ValidatorHandler mounted on their running mux); node 8 proposes,
    // asking all four over the network; node 11 never proposes and follows
    // the decided heights.
    let remote_set = ValidatorSet::new(ids[8..12].to_vec())?;
    let mut locals = Vec::new();
    for node in &nodes[8..12] {
        let local = Arc::new(LocalValidator::new(node.keys.clone(), remote_set.clone()));
        node.mux
            .mount(Arc::new(ValidatorHandler::new(local.clone())));
        locals.push(local);
    }
    let mut following = locals[3].subscribe(0);
    let remotes: Vec<RemoteValidator> = ids[8..12]
        .iter()
        .map(|id| RemoteValidator::new(*id, nodes[8].transport.clone(), Duration::from_secs(2)))
        .collect();
    let mut proposer = ReceiptConsensus::new(nodes[8].keys.clone(), remote_set, remotes, 0)?;
    let mut receipts = Vec::new();
    // Commands are signed and numbered by their client.
    let mut client = ClientSession::new(KeyPair::from_seed([0xc2; 32]));
    for i in 0..3 {
        let batch = Batch::new(vec![client.command(format!("remote {i}").into_bytes())?])?;
        match proposer.achieve_consensus(batch.clone()).await {
            ConsensusResult::Committed(receipt) if receipt == batch.receipt() => {
                receipts.push(receipt)
            }
            other => return Err(format!("remote consensus: {other:?}").into()),
        }
    }
    for receipt in &receipts {
        let decided = following.next().await.ok_or("the follower ended")??;
        assert_eq!(
            &decided.batch.receipt(),
            receipt,
            "followed in height order"
        );
    }
    println!(
        "   ReceiptConsensus over the network: {} committed {} heights with 4 RemoteValidators; {} followed all {} without proposing",
        short(&ids[8]),
        receipts.len(),
        short(&ids[11]),
        receipts.len()
    );

    // --- 4. Authenticated broadcast with a delivery certificate -------------
    let net_timer = network.timer().clone();
    let repairs = join_all(nodes.iter().map(|n| n.broadcast.run(&net_timer)));
    let sender = &nodes[5];
    let ((result, took), _) = join(
        async {
            let start = Instant::now();
            let result = sender
                .broadcast
                .broadcast_and_wait(
                    b"lattice gossip, signed at every hop",
                    &net_timer,
                    Duration::from_secs(5),
                )
                .await;
            (result, start.elapsed())
        },
        net_timer.timeout(Duration::from_millis(300), repairs),
    )
    .await;
    let result = result?;
    let certificate = result.certificate.ok_or("no delivery certificate")?;
    certificate.verify(&directory, broadcast_config.ack_threshold)?;
    let delivered = nodes
        .iter()
        .filter(|n| !n.broadcast.take_deliveries().is_empty())
        .count();
    println!(
        "\n4. broadcast from {}: delivered at {delivered} of {} nodes; delivery certificate of {} signed receipts in {took:.0?}, verified",
        short(&sender.keys.node_id()),
        NODES - 1,
        certificate.acks().len()
    );

    // --- 5. A cross-shard transfer ------------------------------------------
    let shard_keys = [nodes[6].keys.clone(), nodes[7].keys.clone()];
    let map = ShardMap::even(&[shard_keys[0].node_id(), shard_keys[1].node_id()]);
    // Each shard runs on its own node, which mounts a ParticipantService;
    // node 0 coordinates, reaching them as RemoteParticipants.
    let shards: Vec<Arc<LocalParticipant<MemoryStore>>> = shard_keys
        .iter()
        .map(|k| {
            let core = ParticipantCore::new(k.clone(), ParticipantConfig::default(), map.clone())?;
            Ok(Arc::new(LocalParticipant::new(
                core,
                Arc::new(MemoryStore::new()),
            )))
        })
        .collect::<Result<_, hologram::txn::TxnError>>()?;
    for (node, shard) in nodes[6..8].iter().zip(&shards) {
        node.mux
            .mount(Arc::new(ParticipantService::new(shard.clone())));
    }
    let remote: Vec<RemoteParticipant> = shard_keys
        .iter()
        .map(|k| {
            let id = k.node_id();
            RemoteParticipant::new(id, id, nodes[0].transport.clone(), Duration::from_secs(2))
        })
        .collect();
    let over_network = |k: &Key| {
        remote
            .iter()
            .find(|r| Some(r.id()) == map.node_of(k))
            .ok_or("no shard owns the key")
    };
    let shard = |k: &Key| {
        shards
            .iter()
            .find(|s| Some(s.id()) == map.node_of(k))
            .ok_or("no shard owns the key")
    };
    // Two accounts that live on different shards.
    let names: Vec<Key> = (0..64u8)
        .map(|i| Key::new(format!("account-{i}").into_bytes()))
        .collect::<Result<_, _>>()?;
    let alice = names[0].clone();
    let bob = names
        .iter()
        .find(|k| map.node_of(k) != map.node_of(&alice))
        .ok_or("all accounts on one shard")?
        .clone();
    shard(&alice)?
        .with_core(|c| c.load(alice.clone(), 100i64.to_le_bytes().to_vec()))
        .await??;
    let writes = [
        (
            over_network(&alice)?,
            vec![Op::Add {
                key: alice.clone(),
                delta: -30,
            }],
        ),
        (
            over_network(&bob)?,
            vec![Op::Add {
                key: bob.clone(),
                delta: 30,
            }],
        ),
    ];
    let receipt = DistributedTransaction::new(TxnId([1; 16]), map.version(), writes)
        .execute()
        .await?;
    let balance = |k: &Key| {
        let k = k.clone();
        async move {
            let bytes = shard(&k)?
                .with_core(|c| c.value(&k).map(<[u8]>::to_vec))
                .await?
                .unwrap_or_default();
            let bytes: [u8; 8] = bytes.try_into().map_err(|_| "not a balance")?;
            Ok::<i64, Box<dyn Error>>(i64::from_le_bytes(bytes))
        }
    };
    let (a, b) = (balance(&alice).await?, balance(&bob).await?);
    assert_eq!((a, b), (70, 30));
    println!(
        "\n5. cross-shard transfer of 30 from shard {} to shard {}, coordinated by {} over the network: committed with receipt {}…; balances {a} + {b} = 100",
        short(&shard(&alice)?.id()),
        short(&shard(&bob)?.id()),
        short(&ids[0]),
        &receipt.content.to_string()[..8],
    );

    println!("\nall checks passed in {:.1?}", started.elapsed());
    Ok(())
}
