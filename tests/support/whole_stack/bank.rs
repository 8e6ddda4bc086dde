//! Bank transfers across single-replica shards in the whole-stack campaign:
//! participants with durable stores (a `MemoryStore` that survives their
//! crashes, as a disk would), coordinators that forget what was in flight
//! when they crash, and a node that is no participant forging decisions.
//!
//! Checked after every step: the total balance, counting the halves of
//! transfers whose primary committed but whose other participant has not
//! applied yet, is conserved (so nothing stays half applied), and no
//! participant applied a decision other than its primary's.

#[path = "../../../hologram-txn/tests/support/bank_checks.rs"]
mod bank_checks;

use bank_checks::{committed_pending, core_of, inject_forgeries, Sim};
use hologram_cam::MemoryStore;
use hologram_lattice::sim::{Faults, Simulation};
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Receipt};
use hologram_txn::counter;
use hologram_txn::{
    CoordinatorConfig, CoordinatorNode, Decision, Key, Op, ParticipantConfig, ParticipantNode,
    ShardMap, TxnError, TxnId, TxnNode,
};
use rand::RngExt;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const ACCOUNTS: usize = 16;
const INITIAL: i64 = 100;

fn account(i: usize) -> Key {
    Key::new(format!("account-{i:03}").into_bytes()).expect("short key")
}

/// Balances held (each key at the participant that owns it) plus the
/// halves of transfers committed at their primary but not yet applied.
fn held_and_pending(sim: &Sim) -> Result<(i64, i64), String> {
    let mut held = 0i64;
    for (id, node, _) in sim.nodes() {
        let Some(p) = node.participant() else {
            continue;
        };
        let core = p.core().map_err(|e| format!("bank: {id} failed: {e}"))?;
        for (key, value) in core.values() {
            if core.owns(key) {
                held += counter(Some(value)).ok_or(format!("bank: {key} is not a counter"))?;
            }
        }
    }
    let pending = committed_pending(sim).map_err(|e| format!("bank: {e}"))?;
    Ok((held, pending))
}

/// Every decision a participant applied agrees with its primary's.
fn decisions_agree(sim: &Sim) -> Result<(), String> {
    bank_checks::decisions_agree(sim).map_err(|e| format!("bank: {e}"))
}

/// The transactional layer of the stack.
pub struct Bank {
    pub sim: Sim,
    map: ShardMap,
    pub participants: Vec<NodeId>,
    pub clients: Vec<NodeId>,
    /// Every transaction begun: its (from, to, amount) and its primary.
    submitted: BTreeMap<TxnId, ((usize, usize, i64), NodeId)>,
    reported: BTreeMap<TxnId, Result<Receipt, TxnError>>,
    in_flight: BTreeMap<NodeId, usize>,
    forger: KeyPair,
    pub forged_sent: u64,
}

impl Bank {
    /// `participants` serve an even shard map; `clients` coordinate.
    pub fn new(
        seed: u64,
        participants: &[KeyPair],
        clients: &[NodeId],
        forger: KeyPair,
        faults: Faults,
    ) -> Bank {
        let ids: Vec<NodeId> = participants.iter().map(KeyPair::node_id).collect();
        let map = ShardMap::even(&ids);
        let config = ParticipantConfig {
            decide_timeout_ms: 300,
            resolve_after_ms: 400,
            resolve_max_ms: 2_000,
            handoff_resend_ms: 200,
        };
        let mut nodes = Vec::new();
        for k in participants {
            let mut p =
                ParticipantNode::new(k.clone(), config, map.clone(), Arc::new(MemoryStore::new()));
            for a in 0..ACCOUNTS {
                if map.node_of(&account(a)) == Some(k.node_id()) {
                    p.admin(|c| c.load(account(a), INITIAL.to_le_bytes().to_vec()))
                        .expect("loading into a fresh memory store");
                }
            }
            nodes.push((k.node_id(), TxnNode::Participant(Box::new(p))));
        }
        for &c in clients {
            let coordinator = CoordinatorNode::new(CoordinatorConfig::default());
            nodes.push((c, TxnNode::Coordinator(coordinator)));
        }
        let mut sim = Simulation::new(seed, faults, nodes);
        let total = INITIAL * ACCOUNTS as i64;
        sim.set_invariant(move |sim| {
            let (held, pending) = held_and_pending(sim)?;
            if held + pending != total {
                return Err(format!(
                    "bank: balance not conserved: {held} held + {pending} pending != {total}"
                ));
            }
            decisions_agree(sim)
        });
        Bank {
            sim,
            map,
            participants: ids,
            clients: clients.to_vec(),
            submitted: BTreeMap::new(),
            reported: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            forger,
            forged_sent: 0,
        }
    }

    /// Begins a random transfer at a random client that is up and not busy.
    pub fn submit_random(&mut self) -> Option<TxnId> {
        let client = self.clients[self.sim.rng().random_range(0..self.clients.len())];
        if self.in_flight.get(&client).copied().unwrap_or(0) >= 3 {
            return None;
        }
        let from = self.sim.rng().random_range(0..ACCOUNTS);
        let to = (from + self.sim.rng().random_range(1..ACCOUNTS)) % ACCOUNTS;
        let amount = self.sim.rng().random_range(1..40);
        self.submit(client, (from, to, amount))
    }

    fn submit(&mut self, client: NodeId, t: (usize, usize, i64)) -> Option<TxnId> {
        let txn = TxnId::random(self.sim.rng());
        let ops = vec![
            Op::Add {
                key: account(t.0),
                delta: -t.2,
            },
            Op::Add {
                key: account(t.1),
                delta: t.2,
            },
        ];
        let writes = self.map.route(ops).ok()?;
        let primary = *writes.keys().next()?;
        let version = self.map.version();
        let begun = self.sim.with_node(client, |n, ctx| {
            n.coordinator_mut()
                .map(|c| c.begin(ctx, txn, version, writes))
        });
        if !matches!(begun, Some(Some(Ok(())))) {
            return None;
        }
        self.submitted.insert(txn, (t, primary));
        *self.in_flight.entry(client).or_default() += 1;
        Some(txn)
    }

    /// Collects what the coordinators report.
    pub fn collect(&mut self) {
        for client in self.clients.clone() {
            let done = self
                .sim
                .with_node(client, |n, _| {
                    n.coordinator_mut().map(|c| c.take_completed())
                })
                .flatten()
                .unwrap_or_default();
            for (txn, result) in done {
                if let Some(n) = self.in_flight.get_mut(&client) {
                    *n = n.saturating_sub(1);
                }
                self.reported.insert(txn, result);
            }
        }
    }

    /// A crashed coordinator has nothing in flight any more.
    pub fn crashed(&mut self, id: NodeId) {
        self.in_flight.remove(&id);
    }

    /// Forged decisions for the newest transaction, from a non-participant.
    pub fn forge(&mut self) {
        let Some((&txn, _)) = self.submitted.iter().next_back() else {
            return;
        };
        let target = self.participants[self.sim.rng().random_range(0..self.participants.len())];
        let client = self.clients[self.sim.rng().random_range(0..self.clients.len())];
        self.forged_sent += inject_forgeries(&mut self.sim, &self.forger, txn, target, client);
    }

    /// Whether `txn` was reported committed.
    pub fn committed(&self, txn: &TxnId) -> bool {
        matches!(self.reported.get(txn), Some(Ok(_)))
    }

    /// Whether `txn` was reported failed in a way worth retrying.
    pub fn reported_err(&self, txn: &TxnId) -> bool {
        matches!(self.reported.get(txn), Some(Err(_)))
    }

    /// Transactions reported committed.
    pub fn committed_count(&self) -> usize {
        self.reported.values().filter(|r| r.is_ok()).count()
    }

    /// Once the network is quiet: no lock or prepared transaction left, every
    /// report matches its primary's decision, and every account holds its
    /// initial balance plus the transfers its primary committed.
    pub fn check_settled(&self) -> Result<(), String> {
        decisions_agree(&self.sim)?;
        let mut expected = [INITIAL; ACCOUNTS];
        for (txn, ((from, to, amount), primary)) in &self.submitted {
            let decided = core_of(&self.sim, *primary)
                .and_then(|c| c.outcome(txn))
                .map(Decision::is_commit);
            match (decided, self.reported.get(txn)) {
                (Some(true), Some(Err(e))) => {
                    return Err(format!("bank: {txn} committed but was reported {e}"))
                }
                (Some(false) | None, Some(Ok(_))) => {
                    return Err(format!("bank: {txn} reported committed, not committed"))
                }
                _ => {}
            }
            if decided == Some(true) {
                expected[*from] -= amount;
                expected[*to] += amount;
            }
        }
        for &id in &self.participants {
            let core = core_of(&self.sim, id).ok_or("bank: a participant failed")?;
            if !core.locks().is_empty() || core.prepared().next().is_some() {
                return Err(format!(
                    "bank: {id} still holds {} locks and {} prepared transactions",
                    core.locks().len(),
                    core.prepared().count()
                ));
            }
        }
        for (a, want) in expected.iter().enumerate() {
            let key = account(a);
            let owner = self.map.node_of(&key).ok_or("bank: unplaced account")?;
            let core = core_of(&self.sim, owner).ok_or("bank: a participant failed")?;
            let got = counter(core.value(&key)).ok_or("bank: not a counter")?;
            if got != *want {
                return Err(format!("bank: {key} holds {got}, expected {want}"));
            }
        }
        Ok(())
    }
}
