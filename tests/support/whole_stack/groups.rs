//! Consensus-replicated shard groups in the whole-stack campaign: two
//! groups of four members (f = 1), each member a campaign node, holding
//! bank accounts moved by transfers across the groups (two-phase) and
//! within one (one-phase), driven between ticks by coordinators on the
//! campaign's client nodes under the same nemesis.
//!
//! How the nemesis reaches a group: each group's members are consensus
//! replicas (`GroupMember`s) over a `MemoryNetwork` of the group's (see
//! `hologram-txn/tests/support/group_faults.rs`), whose faults follow the
//! nemesis' — its loss, duplication and corruption rates, and its latency
//! at a tenth (as when the groups ran on real time: it is part of the
//! campaign's fault mix; now in the executor's virtual milliseconds) — and whose
//! partitions cut the members as the campaign's partitions cut their nodes.
//! A crashed node's member stops (its replica and its answers) and leaves
//! the network; when the node restarts, its member recovers its replica from
//! its durable log and catches up from its peers. The campaign's Byzantine
//! node is a member of group 1: it endorses forged outputs (`Lying`) or
//! signs its shares for the wrong purposes (`Forging`), and between ticks
//! it forges decisions in its group's name with its own signature. Group 0
//! has no Byzantine member. A coordinator's call reaches a group unless
//! every member is down or across a partition, and its request or answer is
//! lost at the loss rate. A coordinator stops at a seed-chosen step, or when
//! its node crashes; a recovery process settles its transfer (`settle`) a
//! few ticks later.

#[path = "../../../hologram-txn/tests/support/group_faults.rs"]
mod group_faults;

use super::group_gate::{Nemesis, View};
use super::group_transfers::Transfer;
use super::trace::Trace;
use super::{node_key, BYZANTINE, CLIENTS};
use group_faults::{MemberBehaviour, MemberView, TestGroup};
pub use group_faults::{Runner, Wrap};
use hologram_lattice::sim::Faults;
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Purpose, Receipt};
use hologram_txn::{abort_receipt, commit_receipt};
use hologram_txn::{
    Decision, Group, GroupProof, Key, Participant, ParticipantConfig, ParticipantCore,
    PrepareRequest, Proof, ReplicatedParticipant, ShardMap, SignedReceipt, TxnError, TxnId,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// Each group's members (campaign nodes); the first proposes first. The
/// Byzantine node is the last member of group 1.
pub const MEMBERS: [[usize; 4]; 2] = [[8, 0, 4, 9], [10, 1, 11, BYZANTINE]];
/// Accounts per group, and their initial balance.
pub const ACCOUNTS_PER_GROUP: usize = 3;
pub const INITIAL: i64 = 100;

/// What the groups saw.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub committed: u64,
    pub aborted: u64,
    pub one_phase: u64,
    pub coordinator_stops: u64,
    pub settled_after_stop: u64,
    pub member_crashes: u64,
    pub member_restarts: u64,
    pub forgeries_refused: u64,
    pub retried_calls: u64,
}

/// The replicated shard groups of the stack.
pub struct ShardGroups {
    pub(super) groups: Vec<TestGroup>,
    pub(super) gids: Vec<NodeId>,
    pub(super) members: Vec<Vec<NodeId>>,
    /// Each account's key and group.
    pub(super) accounts: Vec<(Key, usize)>,
    pub(super) byzantine: (usize, KeyPair),
    pub(super) view: Nemesis,
    pub(super) transfers: Vec<Transfer>,
    /// Every group-signed decision or acknowledgement a coordinator or the
    /// recovery process accepted: the transaction, its primary group and
    /// the receipt.
    pub(super) accepted: Vec<(TxnId, usize, Receipt)>,
    pub(super) violations: Vec<String>,
    pub counts: Counts,
    pub(super) rng: ChaCha8Rng,
    pub(super) clients: Vec<NodeId>,
    pub(super) map: ShardMap,
    pub(super) tick: u64,
    /// The simulation's executor, which runs the members and every call.
    pub(super) runner: Runner,
    pub(super) trace: Trace,
}

impl ShardGroups {
    /// The groups of `seed`; the Byzantine member's behaviour is drawn.
    pub fn new(seed: u64, faults: &Faults, runner: Runner, trace: &Trace) -> ShardGroups {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6772_6f75);
        let view = Nemesis::new(View::new(
            ChaCha8Rng::seed_from_u64(seed ^ 0x7669_6577),
            faults.loss,
        ));
        let keys: Vec<Vec<KeyPair>> = MEMBERS
            .iter()
            .map(|ms| ms.iter().map(|&i| node_key(seed, i)).collect())
            .collect();
        let shard_groups: Vec<Group> = keys
            .iter()
            .map(|k| ReplicatedParticipant::group_of(k).expect("four members"))
            .collect();
        let gids: Vec<NodeId> = shard_groups.iter().map(Group::id).collect();
        let map = ShardMap::even(&gids);
        let mut accounts = Vec::new();
        let mut per_group = [0usize; 2];
        for i in 0.. {
            let key = Key::new(format!("group-account-{i}").into_bytes()).expect("short key");
            let g = usize::from(map.node_of(&key) != Some(gids[0]));
            if per_group[g] < ACCOUNTS_PER_GROUP {
                per_group[g] += 1;
                accounts.push((key, g));
            }
            if per_group == [ACCOUNTS_PER_GROUP; 2] {
                break;
            }
        }
        let liar = match rng.random_bool(0.5) {
            true => MemberBehaviour::Lying,
            false => MemberBehaviour::Forging,
        };
        let (b, bi) = (1, 3);
        let mut groups = Vec::new();
        for (g, group) in shard_groups.into_iter().enumerate() {
            let mut core = ParticipantCore::new(group, ParticipantConfig::default(), map.clone())
                .expect("a group core");
            for (key, _) in accounts.iter().filter(|(_, a)| *a == g) {
                core.load(key.clone(), INITIAL.to_le_bytes().to_vec())
                    .expect("loading a fresh core");
            }
            let behaviour = |i| match (g, i) == (b, bi) {
                true => liar,
                false => MemberBehaviour::Honest,
            };
            let seed = seed ^ (g as u64 + 1);
            let waits = (Duration::from_millis(50), Duration::from_millis(500));
            let members = &keys[g];
            let group = TestGroup::on(
                &core,
                members,
                behaviour,
                scaled(faults),
                seed,
                waits,
                runner.clone(),
            );
            groups.push(group);
        }
        let members = keys
            .iter()
            .map(|k| k.iter().map(KeyPair::node_id).collect())
            .collect();
        ShardGroups {
            groups,
            gids,
            members,
            accounts,
            byzantine: (b, keys[b][bi].clone()),
            view,
            transfers: Vec::new(),
            accepted: Vec::new(),
            violations: Vec::new(),
            counts: Counts::default(),
            rng,
            clients: CLIENTS.map(|i| node_key(seed, i).node_id()).collect(),
            map,
            tick: 0,
            runner,
            trace: trace.clone(),
        }
    }

    pub fn set_faults(&mut self, faults: &Faults) {
        self.view.lock().set_loss(faults.loss);
        for g in &self.groups {
            g.network().set_faults(scaled(faults));
        }
    }

    pub fn partition(&mut self, sides: &[Vec<NodeId>]) {
        self.view.lock().partition(sides);
        for g in &self.groups {
            let cut: Vec<&[NodeId]> = sides.iter().map(Vec::as_slice).collect();
            g.network().partition(&cut);
        }
    }

    pub fn heal(&mut self) {
        self.view.lock().heal();
        for g in &self.groups {
            g.network().heal();
        }
    }

    /// `(group, member index)` of every membership of node `id`.
    fn memberships(&self, id: NodeId) -> Vec<(usize, usize)> {
        let of = |(g, ms): (usize, &Vec<NodeId>)| Some((g, ms.iter().position(|m| *m == id)?));
        self.members.iter().enumerate().filter_map(of).collect()
    }

    /// Node `id` crashed: its members stop and leave their group's network
    /// (`crash_member`) until it restarts.
    pub fn crash(&mut self, id: NodeId) {
        self.view.lock().set_down(id, true);
        for (g, i) in self.memberships(id) {
            match self.runner.block_on(self.groups[g].crash_member(i)) {
                Ok(()) => self.counts.member_crashes += 1,
                Err(e) => self
                    .violations
                    .push(format!("group {g}: crash of {id}: {e}")),
            }
        }
    }

    /// Node `id` restarted: its members recover their replicas from their
    /// durable logs and catch up from their peers.
    pub fn restart(&mut self, id: NodeId) {
        self.view.lock().set_down(id, false);
        for (g, i) in self.memberships(id) {
            match self.runner.block_on(self.groups[g].restart_member(i)) {
                Ok(()) => self.counts.member_restarts += 1,
                Err(e) => self
                    .violations
                    .push(format!("group {g}: restart of {id}: {e}")),
            }
        }
    }

    /// Group `g`'s honest members' replicas as they are now (a crashed
    /// member's as it stopped).
    pub(super) fn honest_now(&self, g: usize) -> Vec<MemberView> {
        let liar = (g == self.byzantine.0).then(|| self.byzantine.1.node_id());
        self.groups[g]
            .members_now()
            .into_iter()
            .map(|(view, _)| view)
            .filter(|m| Some(m.id()) != liar)
            .collect()
    }

    /// Reads group `g`'s state at its most advanced honest replica (which
    /// applied every command f + 1 members endorsed).
    pub(super) fn read<R>(&self, g: usize, f: impl FnOnce(&ParticipantCore) -> R) -> R {
        let members = self.honest_now(g);
        let best = members.iter().max_by_key(|m| m.machine().next_height());
        f(best.expect("honest members").machine().state().core())
    }

    pub(super) fn prepared_at(&self, g: usize, txn: &TxnId) -> bool {
        self.read(g, |c| c.prepared().any(|(t, _)| t == txn))
    }

    /// The Byzantine member forges decisions in its group's name (its own
    /// signature the only one) for a transaction prepared at the other
    /// group; each must be refused.
    pub fn forge(&mut self) {
        let (b, keys) = self.byzantine.clone();
        let o = 1 - b;
        let prepared: Vec<(TxnId, PrepareRequest)> =
            self.read(o, |c| c.prepared().map(|(t, r)| (*t, r.clone())).collect());
        let own = prepared.iter().find(|(_, r)| r.primary == self.gids[b]);
        let Some((txn, request)) = own.or(prepared.first()).cloned() else {
            return;
        };
        let Ok(group) = Group::new(self.members[b].clone()) else {
            return;
        };
        let forge = |purpose: Purpose, receipt: Receipt| {
            let index = group.members().binary_search(&keys.node_id()).unwrap_or(0) as u8;
            let mut forged = group.unsigned(receipt);
            forged.proof = Proof::Group(GroupProof {
                members: group.members().to_vec(),
                signatures: vec![(index, keys.sign(purpose, &receipt.to_canonical_bytes()))],
            });
            forged
        };
        let real = self.transfers.iter().find(|t| t.txn == txn);
        let mut prepares: Vec<SignedReceipt> = real.map(|t| t.votes.clone()).unwrap_or_default();
        prepares.retain(|v| v.signer != self.gids[b]);
        let receipt = request.prepare_receipt(&self.gids[b]);
        prepares.push(forge(Purpose::Prepare, receipt));
        let forged = [
            Decision::Aborted {
                primary: forge(Purpose::Abort, abort_receipt(&txn)),
            },
            Decision::Committed {
                primary: forge(Purpose::Commit, commit_receipt(&prepares)),
                prepares,
            },
        ];
        for decision in forged {
            if !self.prepared_at(o, &txn) || self.read(o, |c| c.outcome(&txn).is_some()) {
                return;
            }
            match self
                .runner
                .block_on((*self.groups[o]).resolve(txn, decision))
            {
                Ok(_) => self.violations.push(format!(
                    "{txn}: group {o} took a decision one member of group {b} forged"
                )),
                Err(TxnError::Transport(_)) => {}
                Err(_) => self.counts.forgeries_refused += 1,
            }
        }
    }
}

/// The campaign's faults for a group's network: its rates, and its latency
/// at a tenth (in the executor's virtual milliseconds).
fn scaled(faults: &Faults) -> Faults {
    let (lo, hi) = faults.latency_ms;
    Faults {
        latency_ms: (lo / 10, hi / 10),
        ..faults.clone()
    }
}
