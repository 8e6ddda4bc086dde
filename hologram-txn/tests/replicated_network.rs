//! Replicated shard groups whose members are separate nodes on a faulty
//! `MemoryNetwork` (loss, duplication, latency so reordering).
//!
//! Two groups of four member nodes (f = 1); each member node serves its
//! validator (`ValidatorHandler`, `hologram_consensus::VALIDATOR_PROTOCOL`) and its replica
//! (`MemberService`, `Protocol::TXN_MEMBER`). A proposer node per group runs
//! `ReplicatedParticipant::over` the members' `RemoteValidator`s and
//! `RemoteMember`s and serves it (`ParticipantService`, `hologram_txn::TXN_CALL_PROTOCOL`);
//! a coordinator node runs `DistributedTransaction` over `RemoteParticipant`s.
//! A member of group 0 crashes mid-run and restarts later with an empty
//! replica (its validator's voting record kept, as a durable validator's
//! would be); a member of group 1 is Byzantine (it endorses forged outputs,
//! answers forged values and its validator votes for wrong values). Group 0
//! has a second proposer node (other keys): the first crashes mid-run, and
//! the coordinator's `RemoteParticipant` moves to the second, which adopts
//! the heights decided before it and brings members up to date.
//!
//! After the faults stop and prepared transactions are settled from their
//! primary group: balances are conserved, every transfer is applied at both
//! groups or neither as its primary group decided (and as the client was
//! told, when it was told), the honest members' replicas agree, and no lock
//! or prepared transaction is left.

use futures::executor::block_on;
use hologram_consensus::{
    LocalValidator, RemoteValidator, Validator, ValidatorHandler, ValidatorSet,
};
use hologram_lattice::sim::{check_seeds, Faults};
use hologram_lattice::transport::{MemoryNetwork, MemoryTransport, ProtocolMux, Transport};
use hologram_lattice::NodeId;
use hologram_receipt::KeyPair;
use hologram_txn::counter;
use hologram_txn::replicated::{GroupMember, Member, MemberBehaviour};
use hologram_txn::{
    settle, DistributedTransaction, Key, MemberService, Op, Participant, ParticipantConfig,
    ParticipantCore, ParticipantService, RemoteMember, RemoteParticipant, ReplicatedParticipant,
    ShardMap, TxnError, TxnId,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Duration;

const ACCOUNTS_PER_SHARD: usize = 3;
const START: i64 = 100;
const TRANSFERS: u8 = 12;
/// A validator's or member's answer.
const HOP: Duration = Duration::from_millis(15);
/// A whole group call (consensus rounds and endorsements, with retries).
const CALL: Duration = Duration::from_millis(400);

/// Group 0's member that crashes mid-run, and group 1's Byzantine one.
const CRASHING: (usize, usize) = (0, 2);
const BYZANTINE: (usize, usize) = (1, 3);

/// Group `g`'s member keys.
fn member_keys(g: usize) -> Vec<KeyPair> {
    (0..4u8)
        .map(|i| KeyPair::from_seed([10 * (g as u8 + 1) + i; 32]))
        .collect()
}

#[path = "support/group_faults.rs"]
mod group_faults;
use group_faults::WrongVotes;

/// One member node: its validator and its replica.
struct MemberNode {
    keys: KeyPair,
    validator: Arc<LocalValidator>,
    service: Arc<MemberService>,
}

struct GroupNodes {
    set: ValidatorSet,
    /// The core every replica starts from.
    core: ParticipantCore,
    members: Vec<MemberNode>,
    /// The proposer nodes' participants (only the last is never crashed).
    proposers: Vec<Arc<ReplicatedParticipant>>,
}

struct Bank {
    network: MemoryNetwork,
    map: ShardMap,
    accounts: Vec<Key>,
    groups: Vec<GroupNodes>,
    /// The coordinator's view of each group.
    remote: Vec<RemoteParticipant>,
}

fn behaviour(g: usize, i: usize) -> MemberBehaviour {
    match (g, i) == BYZANTINE {
        true => MemberBehaviour::Lying,
        false => MemberBehaviour::Honest,
    }
}

/// Joins (or rejoins) member `i` of group `g` to the network.
fn join_member(network: &MemoryNetwork, g: usize, i: usize, node: &MemberNode, rejoin: bool) {
    let consensus = match behaviour(g, i) {
        MemberBehaviour::Honest => ValidatorHandler::new(node.validator.clone()),
        // A Byzantine validator behind the same handler as an honest one.
        _ => ValidatorHandler::new(Arc::new(WrongVotes {
            keys: node.keys.clone(),
            inner: node.validator.clone(),
        })),
    };
    let mux = ProtocolMux::new();
    mux.mount(Arc::new(consensus))
        .mount(Arc::clone(&node.service));
    let id = node.keys.node_id();
    let _transport = match rejoin {
        true => network.restart(id, Arc::new(mux)),
        false => network.join(id, Arc::new(mux)),
    };
}

/// Proposer node `p` of group `g`.
fn proposer_node(g: usize, p: usize) -> NodeId {
    NodeId::from_bytes([200 + 10 * g as u8 + p as u8; 32])
}

/// Joins a proposer node driving the group of `keys` with `proposer_keys`,
/// serving it under `hologram_txn::TXN_CALL_PROTOCOL`.
fn proposer(
    network: &MemoryNetwork,
    node: NodeId,
    set: &ValidatorSet,
    keys: &[KeyPair],
    proposer_keys: Vec<KeyPair>,
) -> Arc<ReplicatedParticipant> {
    // The proposer's service needs the transport it is reached by: it is
    // mounted once the node has joined.
    let mux = Arc::new(ProtocolMux::new());
    let transport: Arc<dyn Transport> = Arc::new(network.join(node, mux.clone()));
    let validators = keys
        .iter()
        .map(|k| {
            Arc::new(RemoteValidator::new(
                k.node_id(),
                Arc::clone(&transport),
                HOP,
            )) as Arc<dyn Validator>
        })
        .collect();
    // Asked last member first: group 1's Byzantine member answers first,
    // so an output counted on fewer than f + 1 endorsements would be its
    // forgery.
    let members = keys
        .iter()
        .rev()
        .map(|k| {
            Arc::new(RemoteMember::new(k.node_id(), Arc::clone(&transport), HOP)) as Arc<dyn Member>
        })
        .collect();
    let proposer = Arc::new(
        ReplicatedParticipant::over(set.clone(), validators, members, proposer_keys).unwrap(),
    );
    mux.mount(Arc::new(ParticipantService::new(Arc::clone(&proposer))));
    proposer
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
    let mut groups = Vec::new();
    let mut remote = Vec::new();
    for g in 0..2 {
        let mut nodes = Vec::new();
        let keys = member_keys(g);
        let group = ReplicatedParticipant::group_of(&keys).unwrap();
        let mut core =
            ParticipantCore::new(group.clone(), ParticipantConfig::default(), map.clone()).unwrap();
        for a in &accounts {
            if map.node_of(a) == Some(group.id()) {
                core.load(a.clone(), START.to_le_bytes().to_vec()).unwrap();
            }
        }
        let set = ValidatorSet::new(keys.iter().map(KeyPair::node_id).collect()).unwrap();
        let members: Vec<MemberNode> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| MemberNode {
                keys: k.clone(),
                validator: Arc::new(LocalValidator::new(k.clone(), set.clone())),
                service: Arc::new(MemberService::new(GroupMember::new(
                    k.clone(),
                    set.clone(),
                    core.clone(),
                    behaviour(g, i),
                ))),
            })
            .collect();
        for (i, node) in members.iter().enumerate() {
            join_member(&network, g, i, node, false);
        }
        // Group 0 has two proposer nodes, one proposing with member 0's
        // keys, the other with member 1's; the first crashes mid-run and
        // the coordinator moves to the second. Group 1's one proposer node
        // holds both keys (the second takes over when rounds keep failing).
        let keyring: Vec<Vec<KeyPair>> = match g {
            0 => vec![vec![keys[0].clone()], vec![keys[1].clone()]],
            _ => vec![vec![keys[0].clone(), keys[1].clone()]],
        };
        let mut proposers = Vec::new();
        for (p, proposer_keys) in keyring.into_iter().enumerate() {
            let node = proposer_node(g, p);
            let proposer = proposer(&network, node, &set, &keys, proposer_keys);
            assert_eq!(proposer.id(), group.id());
            proposers.push(proposer);
            nodes.push(node);
        }
        groups.push(GroupNodes {
            set,
            core,
            members,
            proposers,
        });
        remote.push((group.id(), nodes));
    }
    let coordinator: MemoryTransport =
        network.join(NodeId::from_bytes([250; 32]), Arc::new(ProtocolMux::new()));
    let coordinator: Arc<dyn Transport> = Arc::new(coordinator);
    let remote = remote
        .into_iter()
        .map(|(id, nodes)| RemoteParticipant::served_by(id, nodes, Arc::clone(&coordinator), CALL))
        .collect();
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

    /// Member `i` of group `g` crashes.
    fn crash(&self, (g, i): (usize, usize)) {
        self.network.crash(self.groups[g].members[i].keys.node_id());
    }

    /// Member `i` of group `g` restarts with an empty replica (its
    /// validator's record kept, as a durable validator's is).
    fn restart(&mut self, (g, i): (usize, usize)) {
        let group = &mut self.groups[g];
        let node = &mut group.members[i];
        node.service = Arc::new(MemberService::new(GroupMember::new(
            node.keys.clone(),
            group.set.clone(),
            group.core.clone(),
            behaviour(g, i),
        )));
        join_member(&self.network, g, i, node, true);
    }

    /// Settles every transaction an honest replica of either group holds
    /// prepared, from its primary group.
    fn recover(&self) -> Result<(), String> {
        for (g, group) in self.groups.iter().enumerate() {
            let pending: Vec<(TxnId, NodeId)> = group.members[0].service.with_member(|m| {
                m.machine()
                    .state()
                    .core()
                    .prepared()
                    .map(|(t, r)| (*t, r.primary))
                    .collect()
            });
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
    let mut bank = bank(seed);
    bank.network.set_faults(Faults {
        loss: 0.1,
        duplicate: 0.05,
        latency_ms: (0, 3),
        ..Faults::NONE
    });
    let total = START * bank.accounts.len() as i64;
    // Each transfer: (txn, from, to, amount, what the client was told).
    let mut transfers = Vec::new();
    for t in 0..TRANSFERS {
        // Group 0's first proposer node crashes, then one of its members
        // (which the second proposer has brought up to date by then), which
        // restarts later with an empty replica and must say so to be sent
        // the log again.
        if t == TRANSFERS / 6 {
            bank.network.crash(proposer_node(0, 0));
        }
        if t == TRANSFERS / 3 {
            bank.crash(CRASHING);
        }
        if t == 2 * TRANSFERS / 3 {
            bank.restart(CRASHING);
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
    bank.network.set_faults(Faults::NONE);
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

    // The balances, as f + 1 members of each group answer them (this also
    // brings every live member's replica up to date).
    for (k, account) in bank.accounts.iter().enumerate() {
        let g = bank.group_of(account);
        let value = block_on(bank.groups[g].proposers.last().unwrap().value(account))
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

    // The honest members' replicas agree and hold nothing.
    for (g, group) in bank.groups.iter().enumerate() {
        let honest: Vec<&MemberNode> = (0..4)
            .filter(|&i| (g, i) != BYZANTINE)
            .map(|i| &group.members[i])
            .collect();
        let reference = honest[0].service.with_member(|m| m.machine().clone());
        for node in &honest {
            node.service.with_member(|m| {
                let core = m.machine().state().core();
                if !core.locks().is_empty() || core.prepared().next().is_some() {
                    return Err(format!("member {} of group {g} holds locks", m.id()));
                }
                if !m.machine().verify_replica(&reference) {
                    return Err(format!(
                        "member {} of group {g} diverged: height {} vs {}",
                        m.id(),
                        m.machine().next_height(),
                        reference.next_height()
                    ));
                }
                Ok(())
            })?;
        }
        for (k, account) in bank.accounts.iter().enumerate() {
            if bank.group_of(account) == g {
                let held = counter(reference.state().value(account)).unwrap();
                if held != expected[k] {
                    return Err(format!("group {g}'s replicas hold {held} for account {k}"));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn transfers_between_groups_of_member_nodes_survive_loss_a_crash_and_a_byzantine_member() {
    check_seeds("replicated groups over a network", 2, run);
}
