//! The drivers over a real transport: a bank across four single-replica
//! shards on a faulty `MemoryNetwork` (loss, duplication, latency so
//! reordering), with coordinators that stop mid-workload and participants
//! that crash and restart from their stores. After the faults stop and the
//! recovery timers have run: no lock or prepared transaction is left, every
//! transaction is applied at all of its participants or at none, as its
//! primary decided, every result a client saw agrees with that decision,
//! and the total balance is conserved.

use futures::executor::block_on;
use futures::future::join_all;
use hologram_cam::MemoryStore;
use hologram_lattice::sim::check_seeds;
use hologram_lattice::sim::Faults;
use hologram_lattice::transport::{MemoryNetwork, Timer};
use hologram_lattice::NodeId;
use hologram_receipt::KeyPair;
use hologram_txn::{inbox, StopHandle};
use hologram_txn::{
    CoordinatorConfig, CoordinatorCore, CoordinatorDriver, Key, Op, ParticipantConfig,
    ParticipantCore, ParticipantDriver, ShardMap, TxnError, TxnId,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const SHARDS: u8 = 4;
const ACCOUNTS: usize = 8;
const START: i64 = 1_000;

/// Short recovery timers, so a test settles in well under a second.
fn participant_config() -> ParticipantConfig {
    ParticipantConfig {
        decide_timeout_ms: 60,
        resolve_after_ms: 80,
        resolve_max_ms: 200,
        handoff_resend_ms: 50,
    }
}

fn account(i: usize) -> Key {
    Key::new(format!("account-{i}").into_bytes()).expect("short key")
}

type Participant = JoinHandle<(ParticipantCore, Result<(), TxnError>)>;

struct Bank {
    network: MemoryNetwork,
    keys: Vec<KeyPair>,
    map: ShardMap,
    stores: Vec<Arc<MemoryStore>>,
    running: Vec<Option<(StopHandle, Participant)>>,
}

impl Bank {
    fn new(seed: u64) -> Self {
        let network = MemoryNetwork::new(seed);
        let keys: Vec<KeyPair> = (1..=SHARDS).map(|i| KeyPair::from_seed([i; 32])).collect();
        let map = ShardMap::even(&keys.iter().map(KeyPair::node_id).collect::<Vec<_>>());
        let stores: Vec<Arc<MemoryStore>> = (0..SHARDS).map(|_| Arc::default()).collect();
        let mut bank = Bank {
            network,
            keys,
            map,
            stores,
            running: Vec::new(),
        };
        for i in 0..SHARDS as usize {
            let mut core =
                ParticipantCore::new(bank.keys[i].clone(), participant_config(), bank.map.clone())
                    .expect("core");
            for a in 0..ACCOUNTS {
                if bank.map.node_of(&account(a)) == Some(bank.keys[i].node_id()) {
                    core.load(account(a), START.to_le_bytes().to_vec())
                        .expect("owned");
                }
            }
            let (handler, inbox) = inbox();
            let transport = bank.network.join(bank.keys[i].node_id(), Arc::new(handler));
            let driver = ParticipantDriver::new(
                core,
                Arc::clone(&bank.stores[i]),
                Arc::new(transport),
                Timer::new(),
                inbox,
            );
            bank.running.push(Some(spawn_participant(driver)));
        }
        bank
    }

    /// Participant `i` crashes (losing what it held in memory) and restarts
    /// from its store.
    fn crash_and_restart(&mut self, i: usize) -> Result<(), String> {
        let id = self.keys[i].node_id();
        self.network.crash(id);
        if let Some((stop, thread)) = self.running[i].take() {
            stop.stop();
            let _ = thread.join().map_err(|_| "participant panicked")?;
        }
        let (handler, inbox) = inbox();
        let transport = self.network.restart(id, Arc::new(handler));
        let driver = block_on(ParticipantDriver::open(
            self.keys[i].clone(),
            participant_config(),
            self.map.clone(),
            Arc::clone(&self.stores[i]),
            Arc::new(transport),
            Timer::new(),
            inbox,
        ))
        .map_err(|e| format!("reopening participant {i}: {e}"))?;
        self.running[i] = Some(spawn_participant(driver));
        Ok(())
    }

    /// A coordinator on its own node.
    fn coordinator(&self, n: u8) -> CoordinatorDriver {
        let (handler, inbox) = inbox();
        let transport = self
            .network
            .join(NodeId::from_bytes([100 + n; 32]), Arc::new(handler));
        let config = CoordinatorConfig {
            retry_ms: 20,
            ..CoordinatorConfig::default()
        };
        CoordinatorDriver::new(
            CoordinatorCore::new(config),
            Arc::new(transport),
            Timer::new(),
            inbox,
        )
    }

    /// Stops every participant and returns their cores.
    fn stop(mut self) -> Result<Vec<ParticipantCore>, String> {
        let mut cores = Vec::new();
        for (i, running) in self.running.iter_mut().enumerate() {
            let (stop, thread) = running.take().ok_or("a participant is down")?;
            stop.stop();
            let (core, result) = thread.join().map_err(|_| "participant panicked")?;
            result.map_err(|e| format!("participant {i} stopped on {e}"))?;
            cores.push(core);
        }
        Ok(cores)
    }
}

fn spawn_participant(driver: ParticipantDriver) -> (StopHandle, Participant) {
    let stop = driver.stop_handle();
    (stop, std::thread::spawn(move || block_on(driver.run())))
}

/// A transfer of `amount` between two accounts on different shards.
fn transfer(map: &ShardMap, rng: &mut ChaCha8Rng) -> BTreeMap<NodeId, Vec<Op>> {
    loop {
        let (from, to) = (rng.random_range(0..ACCOUNTS), rng.random_range(0..ACCOUNTS));
        let (a, b) = (map.node_of(&account(from)), map.node_of(&account(to)));
        if let (Some(a), Some(b)) = (a, b) {
            if a != b {
                let amount = rng.random_range(1..=50);
                let mut writes = BTreeMap::new();
                writes.insert(
                    a,
                    vec![Op::Add {
                        key: account(from),
                        delta: -amount,
                    }],
                );
                writes.insert(
                    b,
                    vec![Op::Add {
                        key: account(to),
                        delta: amount,
                    }],
                );
                return writes;
            }
        }
    }
}

fn run(seed: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut bank = Bank::new(seed);
    bank.network.set_faults(Faults {
        loss: 0.1,
        duplicate: 0.05,
        latency_ms: (0, 3),
        ..Faults::NONE
    });
    let mut txns: BTreeMap<TxnId, BTreeMap<NodeId, Vec<Op>>> = BTreeMap::new();
    let mut seen: BTreeMap<TxnId, bool> = BTreeMap::new();
    for round in 0..3u8 {
        // A coordinator per round, stopped mid-workload in two of three;
        // the last round starts once recovery had time to release the locks
        // the stopped ones left (no-wait locks would refuse it otherwise).
        if round == 2 {
            std::thread::sleep(Duration::from_millis(400));
        }
        let coordinator = bank.coordinator(round);
        let (client, stop) = (coordinator.client(), coordinator.stop_handle());
        let driver = std::thread::spawn(move || block_on(coordinator.run()));
        let batch: Vec<(TxnId, BTreeMap<NodeId, Vec<Op>>)> = (0..12u8)
            .map(|i| {
                let mut id = [0u8; 16];
                id[0] = round;
                id[1] = i;
                id[8..].copy_from_slice(&seed.to_le_bytes());
                (TxnId(id), transfer(&bank.map, &mut rng))
            })
            .collect();
        let stop_after = (round < 2).then(|| rng.random_range(1..15u64));
        let version = bank.map.version();
        // Each transfer is retried, under a new id, when it loses a lock
        // (no-wait locks refuse rather than wait, so concurrent transfers
        // can all refuse one another): as a client would.
        let attempts = block_on(async {
            let timer = Timer::new();
            let work = join_all(batch.iter().map(|(txn, writes)| {
                let (client, timer) = (&client, &timer);
                async move {
                    let mut tried = Vec::new();
                    for attempt in 0..4u8 {
                        let mut id = txn.0;
                        id[2] = attempt;
                        let result = client.execute(TxnId(id), version, writes.clone()).await;
                        let conflict = matches!(result, Err(TxnError::Conflict { .. }));
                        tried.push((TxnId(id), writes.clone(), result));
                        if !conflict {
                            break;
                        }
                        let backoff = 2 + 3 * u64::from(attempt) + u64::from(id[1] % 4);
                        timer.sleep(Duration::from_millis(backoff)).await;
                    }
                    tried
                }
            }));
            match stop_after {
                Some(ms) => {
                    let stopper = async {
                        timer.sleep(Duration::from_millis(ms)).await;
                        stop.stop();
                    };
                    futures::future::join(work, stopper).await.0
                }
                None => work.await,
            }
        });
        // Its handler stays registered with the network: stop it.
        stop.stop();
        driver.join().map_err(|_| "coordinator panicked")?;
        for (txn, writes, result) in attempts.into_iter().flatten() {
            txns.insert(txn, writes);
            match result {
                Ok(_) => {
                    seen.insert(txn, true);
                }
                // A stopped coordinator's callers learn nothing.
                Err(TxnError::CoordinatorStopped) => {}
                Err(_) => {
                    seen.insert(txn, false);
                }
            }
        }
        // A participant crashes and restarts from its store.
        let victim = rng.random_range(0..SHARDS as usize);
        bank.crash_and_restart(victim)?;
    }
    // Faults stop; the recovery timers settle what is left.
    bank.network.set_faults(Faults::NONE);
    std::thread::sleep(Duration::from_millis(900));
    let cores = bank.stop()?;
    check(&cores, &txns, &seen)
}

fn check(
    cores: &[ParticipantCore],
    txns: &BTreeMap<TxnId, BTreeMap<NodeId, Vec<Op>>>,
    seen: &BTreeMap<TxnId, bool>,
) -> Result<(), String> {
    let core = |id: &NodeId| cores.iter().find(|c| c.id() == *id);
    for c in cores {
        if let Some((txn, _)) = c.prepared().next() {
            return Err(format!("{} still has {txn} prepared", c.id()));
        }
        if !c.locks().is_empty() {
            return Err(format!("{} still holds {} locks", c.id(), c.locks().len()));
        }
    }
    let mut expected: BTreeMap<Key, i64> = (0..ACCOUNTS).map(|a| (account(a), START)).collect();
    let mut committed = 0;
    for (txn, writes) in txns {
        let primary = writes.keys().next().ok_or("no participant")?;
        let decided = core(primary)
            .and_then(|c| c.outcome(txn))
            .map(|d| d.is_commit());
        // Every participant that prepared resolved the same way.
        for id in writes.keys() {
            let outcome = core(id).and_then(|c| c.outcome(txn)).map(|d| d.is_commit());
            if outcome.is_some() && outcome != decided {
                return Err(format!(
                    "{txn}: {id} applied {outcome:?}, primary {decided:?}"
                ));
            }
        }
        if let Some(&client) = seen.get(txn) {
            if decided != Some(client) {
                return Err(format!("{txn}: client saw {client}, primary {decided:?}"));
            }
        }
        if decided == Some(true) {
            committed += 1;
            for op in writes.values().flatten() {
                if let Op::Add { key, delta } = op {
                    *expected.entry(key.clone()).or_default() += delta;
                }
            }
        }
    }
    let mut total = 0;
    for (key, want) in &expected {
        let holder = cores
            .iter()
            .find(|c| c.value(key).is_some())
            .ok_or_else(|| format!("{key} is nowhere"))?;
        let bytes: [u8; 8] = holder
            .value(key)
            .and_then(|v| v.try_into().ok())
            .ok_or("not a balance")?;
        let have = i64::from_le_bytes(bytes);
        if have != *want {
            return Err(format!("{key}: {have}, expected {want}"));
        }
        total += have;
    }
    if total != START * ACCOUNTS as i64 {
        return Err(format!("total {total}"));
    }
    if committed == 0 {
        return Err("nothing committed: the test would prove nothing".into());
    }
    Ok(())
}

#[test]
fn a_bank_over_a_faulty_network_settles_atomically() {
    check_seeds("txn drivers over a faulty network", 4, run);
}
