//! Transactions across shards, three ways (the chapter's
//! `DistributedTransaction` and exercise 3).
//!
//! 1. Four single-replica shards as nodes of a network: each runs a
//!    `ParticipantDriver` (durable writes to its store before it sends,
//!    recovery timers), a `CoordinatorDriver` runs two-phase commit, and a
//!    `TxnClient` asks it for transfers. The network loses and duplicates
//!    messages; the cores resend.
//! 2. A coordinator that stops halfway: the participants' recovery timers
//!    settle what it left (the primary decides, the others ask it), so
//!    nobody waits forever and nothing is half applied.
//! 3. Shards as replicated groups of four members, one of them down: each
//!    member is a consensus replica, every step is ordered by the group's
//!    consensus, and a group's receipts carry the signatures of f + 1 of
//!    its members.
//!
//! Run: `cargo run --release --example transactions`

use futures::executor::block_on;
use hologram::cam::MemoryStore;
use hologram::consensus::ReplicaConfig;
use hologram::lattice::sim::Faults;
use hologram::lattice::transport::{MemoryNetwork, Timer};
use hologram::lattice::NodeId;
use hologram::receipt::KeyPair;
use hologram::txn::counter;
use hologram::txn::Proof;
use hologram::txn::{inbox, StopHandle};
use hologram::txn::{
    CoordinatorConfig, CoordinatorCore, CoordinatorDriver, DistributedTransaction, Key, Op,
    Participant, ParticipantConfig, ParticipantCore, ParticipantDriver, ReplicatedParticipant,
    ShardMap, TxnError, TxnId,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

type Running = (StopHandle, JoinHandle<ParticipantCore>);

fn main() -> Result<(), TxnError> {
    over_a_network()?;
    replicated_groups()?;
    Ok(())
}

/// An account key owned by `owner` in `map` (the first free one).
fn account_of(map: &ShardMap, owner: NodeId, skip: usize) -> Key {
    (0..)
        .filter_map(|i| Key::new(format!("account-{i}").into_bytes()).ok())
        .filter(|k| map.node_of(k) == Some(owner))
        .nth(skip)
        .expect("every shard owns keys")
}

fn add(key: &Key, delta: i64) -> Vec<Op> {
    vec![Op::Add {
        key: key.clone(),
        delta,
    }]
}

fn over_a_network() -> Result<(), TxnError> {
    println!("1. four single-replica shards over a lossy network");
    let network = MemoryNetwork::new(7);
    let keys: Vec<KeyPair> = (1..=4u8).map(|i| KeyPair::from_seed([i; 32])).collect();
    let ids: Vec<NodeId> = keys.iter().map(KeyPair::node_id).collect();
    let map = ShardMap::even(&ids);
    let config = ParticipantConfig {
        decide_timeout_ms: 100,
        resolve_after_ms: 150,
        ..ParticipantConfig::default()
    };
    let (alice, bob) = (account_of(&map, ids[0], 0), account_of(&map, ids[1], 0));
    // Each shard: its core (with opening balances), its store, its driver.
    let mut shards: Vec<Running> = Vec::new();
    for k in &keys {
        let mut core = ParticipantCore::new(k.clone(), config, map.clone())?;
        for account in [&alice, &bob] {
            if map.node_of(account) == Some(k.node_id()) {
                core.load(account.clone(), 100i64.to_le_bytes().to_vec())?;
            }
        }
        let (handler, queue) = inbox();
        let transport = network.join(k.node_id(), Arc::new(handler));
        let store = Arc::new(MemoryStore::new());
        let driver = ParticipantDriver::new(core, store, Arc::new(transport), Timer::new(), queue);
        let stop = driver.stop_handle();
        shards.push((stop, std::thread::spawn(move || block_on(driver.run()).0)));
    }
    network.set_faults(Faults {
        loss: 0.1,
        duplicate: 0.05,
        latency_ms: (0, 2),
        ..Faults::NONE
    });
    let coordinator = |n: u8| {
        let (handler, queue) = inbox();
        let transport = network.join(NodeId::from_bytes([200 + n; 32]), Arc::new(handler));
        let core = CoordinatorCore::new(CoordinatorConfig {
            retry_ms: 20,
            ..CoordinatorConfig::default()
        });
        CoordinatorDriver::new(core, Arc::new(transport), Timer::new(), queue)
    };
    let transfer = |amount: i64| {
        let mut writes = BTreeMap::new();
        writes.insert(ids[0], add(&alice, -amount));
        writes.insert(ids[1], add(&bob, amount));
        writes
    };

    let driver = coordinator(0);
    let (client, stop) = (driver.client(), driver.stop_handle());
    let running = std::thread::spawn(move || block_on(driver.run()));
    let receipt = block_on(client.execute(TxnId([1; 16]), map.version(), transfer(30)))?;
    println!(
        "   alice -> bob 30: committed, commit receipt {} (the composition of both prepare receipts)",
        receipt.content
    );
    match block_on(client.execute(TxnId([2; 16]), map.version(), transfer(500))) {
        Ok(_) => println!("   alice -> bob 500: committed?!"),
        Err(e) => println!("   alice -> bob 500: aborted everywhere ({e})"),
    }
    stop.stop();
    let _ = running.join();

    // A coordinator that stops right after it began: the transfer may be
    // prepared somewhere, and the participants' timers settle it.
    let driver = coordinator(1);
    let (client, stop) = (driver.client(), driver.stop_handle());
    let running = std::thread::spawn(move || block_on(driver.run()));
    let (version, writes) = (map.version(), transfer(5));
    let pending =
        std::thread::spawn(move || block_on(client.execute(TxnId([3; 16]), version, writes)));
    std::thread::sleep(Duration::from_millis(3));
    stop.stop();
    let _ = running.join();
    let seen = pending
        .join()
        .map_err(|_| TxnError::Transport("client panicked".into()))?;
    println!(
        "2. a coordinator stopped mid-transaction: its client heard {}",
        match seen {
            Ok(_) => "commit".to_string(),
            Err(e) => format!("\"{e}\""),
        }
    );
    network.set_faults(Faults::NONE);
    std::thread::sleep(Duration::from_millis(800));
    let cores: Vec<ParticipantCore> = shards
        .into_iter()
        .map(|(stop, thread)| {
            stop.stop();
            thread.join().expect("participant thread")
        })
        .collect();
    let balance = |k: &Key| {
        cores
            .iter()
            .find_map(|c| c.value(k))
            .and_then(|v| counter(Some(v)))
            .unwrap_or(0)
    };
    let prepared: usize = cores.iter().map(|c| c.prepared().count()).sum();
    let decided = cores
        .iter()
        .find(|c| c.id() == ids[0])
        .and_then(|c| c.outcome(&TxnId([3; 16])))
        .map(|d| if d.is_commit() { "commit" } else { "abort" });
    println!(
        "   after the recovery timers: primary decided {}, {prepared} transactions left prepared, alice {} + bob {} = {}",
        decided.unwrap_or("nothing (never prepared)"),
        balance(&alice),
        balance(&bob),
        balance(&alice) + balance(&bob)
    );
    Ok(())
}

fn replicated_groups() -> Result<(), TxnError> {
    println!("3. two shards, each a replicated group of 4 members with one down");
    let members = |base: u8| -> Vec<KeyPair> {
        (0..4u8)
            .map(|i| KeyPair::from_seed([base + i; 32]))
            .collect()
    };
    let (a_keys, b_keys) = (members(10), members(20));
    let (a_group, b_group) = (
        ReplicatedParticipant::group_of(&a_keys)?,
        ReplicatedParticipant::group_of(&b_keys)?,
    );
    let map = ShardMap::even(&[a_group.id(), b_group.id()]);
    let (carol, dave) = (
        account_of(&map, a_group.id(), 0),
        account_of(&map, b_group.id(), 0),
    );
    let group = |keys: Vec<KeyPair>, signer, account: &Key| {
        let mut core = ParticipantCore::new(signer, ParticipantConfig::default(), map.clone())?;
        core.load(account.clone(), 100i64.to_le_bytes().to_vec())?;
        let group = ReplicatedParticipant::in_process(&core, &keys, ReplicaConfig::new)?;
        // The last member stops: 3 of 4 replicas still decide (2f + 1) and
        // f + 1 = 2 members still endorse every answer.
        if let Some(down) = group.local_members().get(3) {
            down.stop();
        }
        Ok::<_, TxnError>(group)
    };
    let a = group(a_keys, a_group.clone(), &carol)?;
    let b = group(b_keys, b_group.clone(), &dave)?;
    let writes = [(&a, add(&carol, -40)), (&b, add(&dave, 40))];
    let receipt =
        block_on(DistributedTransaction::new(TxnId([9; 16]), map.version(), writes).execute())?;
    println!(
        "   carol -> dave 40: committed, commit receipt {}",
        receipt.content
    );
    // The primary group's decision, as anyone can check it.
    let decision = block_on(a.abort(TxnId([9; 16])))?;
    let primary = decision.primary();
    let signers = match &primary.proof {
        Proof::Group(proof) => proof.signatures.len(),
        Proof::Single(_) => 0,
    };
    primary.verify(hologram::receipt::Purpose::Commit)?;
    println!(
        "   the decision is signed by {signers} of group {}'s 4 members and verifies as the group's",
        a_group.id()
    );
    let balance = |g: &ReplicatedParticipant, k: &Key| {
        block_on(g.value(k)).map(|v| counter(v.as_deref()).unwrap_or(0))
    };
    println!(
        "   balances, as f + 1 members of each group report them: carol {}, dave {}",
        balance(&a, &carol)?,
        balance(&b, &dave)?
    );
    Ok(())
}
