//! The replicated shard groups' invariants (see `groups.rs`), checked after
//! every tick, and their liveness once the nemesis stops.
//!
//! After every tick:
//! - the total balance is conserved, counting the halves of transfers
//!   whose primary group committed but whose other group has not applied;
//! - every decision a group applied in another group's name agrees with
//!   that primary group's, and a transfer over (completed by its
//!   coordinator or settled after it stopped) is prepared nowhere and
//!   applied alike at both groups;
//! - the honest members' replicas of a group agree: equal heights give the
//!   same receipt chain and state receipt, and the shorter log is a prefix
//!   of the longer;
//! - every group-signed decision or acknowledgement a coordinator or the
//!   recovery accepted verified as its primary group's and matches the
//!   decision that group's replicas hold;
//! - no Byzantine forgery was taken, no restart failed, no refusal broke
//!   the protocol (the driver records these as it goes).

use super::group_transfers::State;
use super::groups::{ShardGroups, INITIAL};
use super::Tally;
use hologram_consensus::StateMachine;
use hologram_lattice::NodeId;
use hologram_receipt::Receipt;
use hologram_txn::counter;
use hologram_txn::{Decision, Op, TxnId};
use std::collections::BTreeMap;

/// What one group's replica holds, for the cross-group checks.
struct Snapshot {
    held: i64,
    /// Prepared transactions: their primary and the sum of their deltas.
    prepared: BTreeMap<TxnId, (NodeId, i64)>,
    /// Applied decisions: commit or not, the primary's receipt, its signer.
    outcomes: BTreeMap<TxnId, (bool, Receipt, NodeId)>,
}

impl ShardGroups {
    fn snapshot(&self, g: usize) -> Result<Snapshot, String> {
        self.read(g, |core| {
            let mut held = 0;
            for (key, value) in core.values() {
                if core.owns(key) {
                    held +=
                        counter(Some(value)).ok_or(format!("group {g}: {key} not a counter"))?;
                }
            }
            let delta = |ops: &[Op]| -> i64 {
                ops.iter()
                    .map(|op| match op {
                        Op::Add { delta, .. } => *delta,
                        _ => 0,
                    })
                    .sum()
            };
            let prepared = core
                .prepared()
                .map(|(t, r)| (*t, (r.primary, delta(&r.ops))))
                .collect();
            let outcomes = core
                .outcomes()
                .map(|(t, d)| (*t, (d.is_commit(), d.primary().receipt, d.primary().signer)))
                .collect();
            Ok(Snapshot {
                held,
                prepared,
                outcomes,
            })
        })
    }

    fn group_of(&self, id: &NodeId) -> Result<usize, String> {
        self.gids
            .iter()
            .position(|g| g == id)
            .ok_or(format!("{id} is no group"))
    }

    /// The honest members' replicas of every group agree (a crashed
    /// member's as it stopped).
    fn check_replicas(&self) -> Result<(), String> {
        for g in 0..self.groups.len() {
            let honest = self.honest_now(g);
            let first = honest[0].machine();
            for m in &honest[1..] {
                let (a, o) = (first, m.machine());
                let agree = match a.next_height() == o.next_height() {
                    true => {
                        a.verify_replica(o)
                            && a.state().state_receipt() == o.state().state_receipt()
                    }
                    false => {
                        // The log entries both still keep agree.
                        let from = a.log_start().max(o.log_start());
                        let to = a.applied_count().min(o.applied_count());
                        (from..to).all(|p| a.entry(p) == o.entry(p))
                    }
                };
                if !agree {
                    return Err(format!("group {g}: member {} diverged", m.id()));
                }
            }
        }
        Ok(())
    }

    /// The invariants of every tick (see the module docs).
    pub fn check(&self) -> Result<(), String> {
        if let Some(v) = self.violations.first() {
            return Err(format!("groups: {v}"));
        }
        let snaps = (0..self.groups.len())
            .map(|g| self.snapshot(g))
            .collect::<Result<Vec<_>, _>>()?;
        let total = INITIAL * self.accounts.len() as i64;
        let mut held = 0;
        let mut pending = 0;
        for (g, s) in snaps.iter().enumerate() {
            held += s.held;
            for (txn, (primary, delta)) in &s.prepared {
                let p = &snaps[self.group_of(primary)?];
                if p.outcomes.get(txn).is_some_and(|o| o.0) {
                    pending += delta;
                }
            }
            for (txn, (commit, receipt, signer)) in &s.outcomes {
                if *signer == self.gids[g] {
                    continue;
                }
                let theirs = snaps[self.group_of(signer)?].outcomes.get(txn);
                if theirs.map(|o| (o.0, o.1)) != Some((*commit, *receipt)) {
                    return Err(format!(
                        "groups: {txn}: group {g} applied commit={commit}, its primary has {theirs:?}"
                    ));
                }
            }
        }
        if held + pending != total {
            return Err(format!(
                "groups: balance not conserved: {held} held + {pending} pending != {total}"
            ));
        }
        for t in self.transfers.iter().filter(|t| t.state == State::Done) {
            let primary = snaps[t.primary].outcomes.get(&t.txn).map(|o| o.0);
            for &(g, _) in &t.requests {
                let here = snaps[g].outcomes.get(&t.txn).map(|o| o.0);
                if snaps[g].prepared.contains_key(&t.txn)
                    || (here.is_some() && here != primary)
                    || (primary == Some(true) && here != Some(true))
                {
                    return Err(format!(
                        "groups: {} over but group {g} has {here:?}, its primary {primary:?}",
                        t.txn
                    ));
                }
            }
        }
        for (txn, p, receipt) in &self.accepted {
            let held = snaps[*p].outcomes.get(txn).map(|o| o.1);
            if held != Some(*receipt) {
                return Err(format!(
                    "groups: {txn}: a decision accepted from group {p} is not its decision ({held:?})"
                ));
            }
        }
        self.check_replicas()
    }

    /// Once the nemesis stopped: every transfer finishes or is settled, no
    /// member of any group holds a lock or a prepared transaction, every
    /// balance (read through `f + 1` members' answers) is its initial one
    /// plus the transfers committed, and new transfers commit.
    pub fn liveness(&mut self) -> Result<(), String> {
        for _ in 0..100 {
            if self.transfers.iter().all(|t| t.state == State::Done) {
                break;
            }
            self.tick_once(0);
        }
        self.check()?;
        if let Some(t) = self.transfers.iter().find(|t| t.state != State::Done) {
            return Err(format!("groups: {} never finished: {:?}", t.txn, t.state));
        }
        self.check_settled()?;
        // New transfers commit: across the groups both ways, within one,
        // each from the richest account of its group.
        let richest = |g: usize| {
            let balance = |a: usize| {
                let key = &self.accounts[a].0;
                self.read(g, |c| counter(c.value(key)).unwrap_or(0))
            };
            let mut of_g = (0..self.accounts.len()).filter(|&a| self.accounts[a].1 == g);
            of_g.next().map_or(0, |a0| {
                let rest = of_g.map(|a| (balance(a), a));
                rest.fold((balance(a0), a0), |m, x| if x.0 > m.0 { x } else { m })
                    .1
            })
        };
        let other = |a: usize| {
            let g = self.accounts[a].1;
            (0..self.accounts.len()).find(|&b| b != a && self.accounts[b].1 == g)
        };
        let (r0, r1) = (richest(0), richest(1));
        let fresh = [(r0, r1), (r1, r0), (r0, other(r0).unwrap_or(r1))];
        for (from, to) in fresh {
            self.begin_at(self.client(), (from, to, 1));
            for _ in 0..20 {
                if self
                    .transfers
                    .last()
                    .is_some_and(|t| t.state == State::Done)
                {
                    break;
                }
                self.tick_once(0);
            }
            let Some((txn, p)) = self.transfers.last().map(|t| (t.txn, t.primary)) else {
                continue;
            };
            if !self.read(p, |c| c.outcome(&txn).is_some_and(Decision::is_commit)) {
                return Err(format!("groups: a new transfer {txn} did not commit"));
            }
        }
        self.check()?;
        self.check_settled()
    }

    /// No lock or prepared transaction at any member; balances as committed.
    fn check_settled(&self) -> Result<(), String> {
        for (g, group) in self.groups.iter().enumerate() {
            self.runner.block_on(group.with_members(|members| {
                for m in members {
                    let core = m.machine().state().core();
                    if !core.locks().is_empty() || core.prepared().next().is_some() {
                        return Err(format!(
                            "groups: member {} of group {g} holds locks",
                            m.id()
                        ));
                    }
                }
                Ok(())
            }))?;
        }
        let mut expected = vec![INITIAL; self.accounts.len()];
        for t in &self.transfers {
            if self.read(t.primary, |c| {
                c.outcome(&t.txn).is_some_and(Decision::is_commit)
            }) {
                expected[t.from] -= t.amount;
                expected[t.to] += t.amount;
            }
        }
        for (a, (key, g)) in self.accounts.iter().enumerate() {
            let value = self
                .runner
                .block_on(self.groups[*g].value(key))
                .map_err(|e| e.to_string())?;
            let got = counter(value.as_deref()).ok_or("groups: not a counter")?;
            if got != expected[a] {
                return Err(format!(
                    "groups: {key} holds {got}, expected {}",
                    expected[a]
                ));
            }
        }
        Ok(())
    }

    /// Adds what the groups saw to `t`.
    pub fn tally(&self, t: &mut Tally) {
        let c = &self.counts;
        t.group_transfers_committed += c.committed;
        t.group_transfers_aborted += c.aborted;
        t.group_one_phase += c.one_phase;
        t.coordinator_stops += c.coordinator_stops;
        t.settled_after_stop += c.settled_after_stop;
        t.member_crashes += c.member_crashes;
        t.member_restarts += c.member_restarts;
        t.group_forgeries_refused += c.forgeries_refused;
        t.group_calls_cut += self.view.lock().failed_calls;
        t.group_calls_retried += c.retried_calls;
        for g in 0..self.groups.len() {
            let honest = self.honest_now(g);
            let heights = honest.iter().map(|m| m.machine().next_height());
            t.group_heights += heights.max().unwrap_or(0);
        }
    }
}
