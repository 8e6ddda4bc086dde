//! Replicated shard groups over faulty `MemoryNetwork`s (loss, duplication,
//! latency so reordering).
//!
//! Two groups of four members (f = 1); each member is a consensus replica
//! on a network of its group's that loses, duplicates and delays messages
//! (`support/group_faults.rs`). Each group's participant is served on a
//! node of a second faulty network (`ParticipantService`,
//! `hologram_txn::TXN_CALL_PROTOCOL`), where a coordinator node runs
//! `DistributedTransaction` over `RemoteParticipant`s. A member of group 0
//! crashes mid-run and restarts later, recovering its replica from its
//! durable log and catching up from its peers; a member of group 1 is
//! Byzantine (it endorses forged outputs and answers forged values).
//!
//! After the faults stop and prepared transactions are settled from their
//! primary group: balances are conserved, every transfer is applied at both
//! groups or neither as its primary group decided (and as the client was
//! told, when it was told), the honest members' replicas agree, and no lock
//! or prepared transaction is left.

#[path = "support/group_faults.rs"]
mod group_faults;

use futures::executor::block_on;
use group_faults::{zero, MemberBehaviour, TestGroup};
use hologram_lattice::sim::{check_seeds, Faults};
use hologram_lattice::transport::{MemoryNetwork, ProtocolMux, Transport};
use hologram_lattice::NodeId;
use hologram_receipt::KeyPair;
use hologram_txn::counter;
use hologram_txn::{
    settle, DistributedTransaction, Key, Op, Participant, ParticipantConfig, ParticipantCore,
    ParticipantService, RemoteParticipant, ReplicatedParticipant, ShardMap, TxnError, TxnId,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Duration;

const ACCOUNTS_PER_SHARD: usize = 3;
const START: i64 = 100;
const TRANSFERS: u8 = 12;
/// A whole group call over the coordinator's network.
const CALL: Duration = Duration::from_secs(3);

/// Group 0's member that crashes mid-run, and group 1's Byzantine one.
const CRASHING: (usize, usize) = (0, 2);
const BYZANTINE: (usize, usize) = (1, 3);

/// Group `g`'s member keys.
fn member_keys(g: usize) -> Vec<KeyPair> {
    (0..4u8)
        .map(|i| KeyPair::from_seed([40 + 10 * g as u8 + i; 32]))
        .collect()
}

fn faulty() -> Faults {
    Faults {
        loss: 0.1,
        duplicate: 0.05,
        latency_ms: (0, 3),
        ..Faults::NONE
    }
}

struct Bank {
    /// The coordinator's network.
    network: MemoryNetwork,
    map: ShardMap,
    accounts: Vec<Key>,
    groups: Vec<TestGroup>,
    remote: Vec<RemoteParticipant>,
}

fn bank(seed: u64) -> Bank {
    let network = MemoryNetwork::new(seed);
    let ids = [0, 1].map(|g| {
        ReplicatedParticipant::group_of(&member_keys(g))
            .unwrap()
            .id()
    });
    let map = ShardMap::even(&ids);
    let mut accounts = Vec::new();
    let mut per_shard = [0usize; 2];
    for i in 0.. {
        let key = Key::new(format!("account-{i}").into_bytes()).unwrap();
        let g = usize::from(map.node_of(&key) != Some(ids[0]));
        if per_shard[g] < ACCOUNTS_PER_SHARD {
            per_shard[g] += 1;
            accounts.push(key);
        }
        if per_shard == [ACCOUNTS_PER_SHARD; 2] {
            break;
        }
    }
    accounts.sort_by_key(|a| usize::from(map.node_of(a) != Some(ids[0])));
    let coordinator: Arc<dyn Transport> =
        Arc::new(network.join(NodeId::from_bytes([250; 32]), Arc::new(ProtocolMux::new())));
    let mut groups = Vec::new();
    let mut remote = Vec::new();
    for g in 0..2 {
        let keys = member_keys(g);
        let group = ReplicatedParticipant::group_of(&keys).unwrap();
        let mut core =
            ParticipantCore::new(group.clone(), ParticipantConfig::default(), map.clone()).unwrap();
        for a in &accounts {
            if map.node_of(a) == Some(group.id()) {
                core.load(a.clone(), START.to_le_bytes().to_vec()).unwrap();
            }
        }
        let behaviour = |i| match (g, i) == BYZANTINE {
            true => MemberBehaviour::Lying,
            false => MemberBehaviour::Honest,
        };
        let members = TestGroup::new(&core, &keys, behaviour, faulty(), seed * 2 + g as u64);
        let mux = ProtocolMux::new();
        mux.mount(Arc::new(ParticipantService::new(members.shared())));
        let node = NodeId::from_bytes([200 + g as u8; 32]);
        drop(network.join(node, Arc::new(mux)));
        remote.push(RemoteParticipant::new(
            group.id(),
            node,
            Arc::clone(&coordinator),
            CALL,
        ));
        groups.push(members);
    }
    Bank {
        network,
        map,
        accounts,
        groups,
        remote,
    }
}

impl Bank {
    fn group_of(&self, key: &Key) -> usize {
        usize::from(self.map.node_of(key) != Some(self.remote[0].id()))
    }

    fn writes(&self, from: usize, to: usize, amount: i64) -> Vec<(&dyn Participant, Vec<Op>)> {
        let op = |k: usize, delta| Op::Add {
            key: self.accounts[k].clone(),
            delta,
        };
        vec![
            (
                &self.remote[self.group_of(&self.accounts[from])] as &dyn Participant,
                vec![op(from, -amount)],
            ),
            (
                &self.remote[self.group_of(&self.accounts[to])] as &dyn Participant,
                vec![op(to, amount)],
            ),
        ]
    }

    fn set_faults(&self, faults: Faults) {
        self.network.set_faults(faults.clone());
        for g in &self.groups {
            g.network().set_faults(faults.clone());
        }
    }

    /// Settles every transaction an honest replica of either group holds
    /// prepared, from its primary group.
    fn recover(&self) -> Result<(), String> {
        for (g, group) in self.groups.iter().enumerate() {
            let pending: Vec<(TxnId, NodeId)> = block_on(group.with_members(|m| {
                m[0].machine()
                    .state()
                    .core()
                    .prepared()
                    .map(|(t, r)| (*t, r.primary))
                    .collect()
            }));
            for (txn, primary) in pending {
                let primary = self.remote.iter().find(|p| p.id() == primary).unwrap();
                block_on(settle(&self.remote[g], primary, txn))
                    .map_err(|e| format!("settling {txn} at group {g}: {e}"))?;
            }
        }
        Ok(())
    }
}

fn run(seed: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let bank = bank(seed);
    bank.set_faults(faulty());
    let total = START * bank.accounts.len() as i64;
    // Each transfer: (txn, from, to, amount, what the client was told).
    let mut transfers = Vec::new();
    for t in 0..TRANSFERS {
        // A member of group 0 crashes, and restarts later from its durable
        // log, catching up on what it missed from its peers.
        let (g, i) = CRASHING;
        if t == TRANSFERS / 3 {
            block_on(bank.groups[g].crash_member(i)).map_err(|e| e.to_string())?;
        }
        if t == 2 * TRANSFERS / 3 {
            block_on(bank.groups[g].restart_member(i)).map_err(|e| e.to_string())?;
        }
        let i = rng.random_range(0..ACCOUNTS_PER_SHARD);
        let j = ACCOUNTS_PER_SHARD + rng.random_range(0..ACCOUNTS_PER_SHARD);
        let (from, to) = if rng.random() { (i, j) } else { (j, i) };
        let amount = rng.random_range(1..80);
        let txn = TxnId([t + 1; 16]);
        let result = block_on(
            DistributedTransaction::new(txn, bank.map.version(), bank.writes(from, to, amount))
                .execute(),
        );
        transfers.push((txn, from, to, amount, result));
    }

    // The faults stop; what a coordinator left prepared is settled.
    bank.set_faults(zero());
    bank.recover()?;

    // Every transfer as its primary group decided (asking it to abort
    // returns the decision it made), and as its client was told.
    let mut expected = vec![START; bank.accounts.len()];
    let mut committed = 0;
    for (txn, from, to, amount, result) in &transfers {
        let writes = bank.writes(*from, *to, *amount);
        let primary = writes.iter().map(|(p, _)| p.id()).min().unwrap();
        let primary = bank.remote.iter().find(|p| p.id() == primary).unwrap();
        let decision = block_on(primary.abort(*txn)).map_err(|e| format!("{txn}: {e}"))?;
        decision
            .verify(txn, &primary.id())
            .map_err(|e| format!("{txn}: decision does not verify: {e}"))?;
        match (result, decision.is_commit()) {
            (Ok(_), false) => return Err(format!("{txn}: client saw a commit, primary aborted")),
            (Err(e), true) if !matches!(e, TxnError::TimedOut(_)) => {
                return Err(format!("{txn}: client saw {e}, primary committed"))
            }
            _ => {}
        }
        if decision.is_commit() {
            committed += 1;
            expected[*from] -= amount;
            expected[*to] += amount;
        }
    }
    if committed < usize::from(TRANSFERS / 4) {
        return Err(format!(
            "only {committed} of {TRANSFERS} transfers committed"
        ));
    }
    let errors: Vec<String> = transfers
        .iter()
        .filter_map(|t| t.4.as_ref().err())
        .map(|e| e.to_string().chars().take(60).collect())
        .collect();
    eprintln!("seed {seed}: {committed} of {TRANSFERS} transfers committed; errors: {errors:?}");

    // The balances, as f + 1 members of each group answer them.
    for (k, account) in bank.accounts.iter().enumerate() {
        let g = bank.group_of(account);
        let value = block_on(bank.groups[g].value(account))
            .map_err(|e| format!("reading account {k}: {e}"))?;
        let balance = counter(value.as_deref()).ok_or("not a counter")?;
        if balance != expected[k] {
            return Err(format!(
                "account {k} holds {balance}, its transfers as decided give {}",
                expected[k]
            ));
        }
    }
    if expected.iter().sum::<i64>() != total {
        return Err("the total is not conserved".into());
    }

    // The honest members' replicas (every member, the restarted one
    // included, is up) agree and hold nothing.
    for (g, group) in bank.groups.iter().enumerate() {
        let byzantine = member_keys(BYZANTINE.0)[BYZANTINE.1].node_id();
        block_on(group.with_members(|members| {
            if members.len() != 4 {
                return Err(format!("group {g}: {} members up", members.len()));
            }
            let honest: Vec<_> = members.iter().filter(|m| m.id() != byzantine).collect();
            let reference = honest[0].machine();
            for m in &honest {
                let core = m.machine().state().core();
                if !core.locks().is_empty() || core.prepared().next().is_some() {
                    return Err(format!("member {} of group {g} holds locks", m.id()));
                }
                if !m.machine().verify_replica(reference) {
                    return Err(format!(
                        "member {} of group {g} diverged: height {} vs {}",
                        m.id(),
                        m.machine().next_height(),
                        reference.next_height()
                    ));
                }
            }
            for (k, account) in bank.accounts.iter().enumerate() {
                if bank.group_of(account) == g {
                    let held = counter(reference.state().value(account)).unwrap();
                    if held != expected[k] {
                        return Err(format!("group {g}'s replicas hold {held} for account {k}"));
                    }
                }
            }
            Ok(())
        }))?;
    }
    Ok(())
}

#[test]
fn transfers_between_groups_of_member_nodes_survive_loss_a_crash_and_a_byzantine_member() {
    check_seeds("replicated groups over a network", 2, run);
}
