//! Cross-shard transactions over replicated shard groups (issue 8, exercise
//! 3): two groups of four validators, a Byzantine member in each, transfers
//! through `DistributedTransaction` and through a coordinator that crashes
//! at every step, settled from the primary group's replicated decision.
//! Each group's members are consensus replicas over a `MemoryNetwork` of
//! their own (`support/group_faults.rs`).

use async_trait::async_trait;
use futures::executor::block_on;
use futures::future::join_all;
use hologram_lattice::sim::check_seeds;
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Purpose, Receipt};
use hologram_txn::counter;
use hologram_txn::Endorsement;
use hologram_txn::{abort_receipt, commit_receipt};
use hologram_txn::{
    settle, Decision, DistributedTransaction, Group, GroupProof, Key, Op, Participant,
    ParticipantConfig, ParticipantCore, PrepareRequest, Proof, ReplicatedParticipant, ShardMap,
    SignedReceipt, TxnError, TxnId, TxnMessage,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

const ACCOUNTS_PER_SHARD: usize = 3;
const START: i64 = 100;

#[path = "support/group_faults.rs"]
mod group_faults;
use group_faults::{zero, MemberBehaviour, TestGroup};

struct Bank {
    map: ShardMap,
    groups: Vec<TestGroup>,
    /// Group 0's `ACCOUNTS_PER_SHARD` accounts, then group 1's: a transfer
    /// from `accounts[..ACCOUNTS_PER_SHARD]` to the rest crosses groups.
    accounts: Vec<Key>,
}

/// Group `g`'s member keys.
fn member_keys(g: u8) -> Vec<KeyPair> {
    (0..4u8)
        .map(|i| KeyPair::from_seed([10 * (g + 1) + i; 32]))
        .collect()
}

/// Two groups of four (f = 1): in group 0 one member lies in its answers;
/// in group 1 one member answers nothing.
fn bank() -> Bank {
    // The Byzantine member: the last of group 0, the third of group 1.
    bank_with(|g, i| match (g, i) {
        (0, 3) => MemberBehaviour::Lying,
        (1, 2) => MemberBehaviour::Silent,
        _ => MemberBehaviour::Honest,
    })
}

/// Two groups of four whose member `i` of group `g` behaves as
/// `behaviour(g, i)` when it answers (its replica takes part in consensus
/// honestly).
fn bank_with(behaviour: impl Fn(usize, usize) -> MemberBehaviour) -> Bank {
    let groups = [0, 1].map(|g| ReplicatedParticipant::group_of(&member_keys(g)).unwrap());
    let map = ShardMap::even(&[groups[0].id(), groups[1].id()]);
    let mut per_shard: [Vec<Key>; 2] = [Vec::new(), Vec::new()];
    for i in 0.. {
        let key = Key::new(format!("account-{i}").into_bytes()).unwrap();
        let g = usize::from(map.node_of(&key) != Some(groups[0].id()));
        if per_shard[g].len() < ACCOUNTS_PER_SHARD {
            per_shard[g].push(key);
        }
        if per_shard.iter().all(|s| s.len() == ACCOUNTS_PER_SHARD) {
            break;
        }
    }
    let accounts = per_shard.concat();
    let groups = groups
        .into_iter()
        .enumerate()
        .map(|(g, group)| {
            let id = group.id();
            let mut core =
                ParticipantCore::new(group, ParticipantConfig::default(), map.clone()).unwrap();
            for a in &accounts {
                if map.node_of(a) == Some(id) {
                    core.load(a.clone(), START.to_le_bytes().to_vec()).unwrap();
                }
            }
            let keys = member_keys(g as u8);
            TestGroup::new(&core, &keys, |i| behaviour(g, i), zero(), g as u64)
        })
        .collect();
    Bank {
        map,
        groups,
        accounts,
    }
}

impl Bank {
    fn group(&self, key: &Key) -> &ReplicatedParticipant {
        let node = self.map.node_of(key).unwrap();
        self.groups
            .iter()
            .find(|g| g.id() == node)
            .map(|g| &**g)
            .unwrap()
    }

    fn balance(&self, key: &Key) -> i64 {
        counter(block_on(self.group(key).value(key)).unwrap().as_deref()).unwrap()
    }

    fn total(&self) -> i64 {
        self.accounts.iter().map(|a| self.balance(a)).sum()
    }

    fn writes(&self, from: &Key, to: &Key, amount: i64) -> Vec<(&dyn Participant, Vec<Op>)> {
        let op = |key: &Key, delta| Op::Add {
            key: key.clone(),
            delta,
        };
        vec![
            (
                self.group(from) as &dyn Participant,
                vec![op(from, -amount)],
            ),
            (self.group(to) as &dyn Participant, vec![op(to, amount)]),
        ]
    }

    /// After a transfer of `amount` from account `i` to `j` settled
    /// (`committed` or not): every balance is as `expected` (updated here),
    /// the total is conserved, and the groups are quiescent.
    fn check_step(
        &self,
        step: &str,
        committed: bool,
        (i, j, amount): (usize, usize, i64),
        expected: &mut [i64],
        total: i64,
    ) -> Result<(), String> {
        if committed {
            expected[i] -= amount;
            expected[j] += amount;
        }
        for (k, a) in self.accounts.iter().enumerate() {
            if self.balance(a) != expected[k] {
                let got = self.balance(a);
                return Err(format!(
                    "{step}: account {k} is {got}, expected {}",
                    expected[k]
                ));
            }
        }
        if self.total() != total {
            return Err(format!("{step}: total {} != {total}", self.total()));
        }
        self.check_quiescent()
    }

    /// After faults stop: every member of every group holds no lock and no
    /// prepared transaction, and all members' replicas agree (same receipt
    /// chain, the lying one included: it lies only in what it answers).
    fn check_quiescent(&self) -> Result<(), String> {
        for g in &self.groups {
            block_on(g.with_members(|members| {
                for m in members {
                    let core = m.machine().state().core();
                    if !core.locks().is_empty() || core.prepared().next().is_some() {
                        return Err(format!("member {} of {} holds locks", m.id(), g.id()));
                    }
                    if !m.machine().verify_replica(members[0].machine()) {
                        return Err(format!("member {} of {} diverged", m.id(), g.id()));
                    }
                }
                Ok(())
            }))?;
        }
        Ok(())
    }
}

#[test]
fn transfers_across_groups_with_a_byzantine_member_each_conserve_balance() {
    let bank = bank();
    let total = bank.total();
    assert_eq!(total, START * bank.accounts.len() as i64);
    let (a, b) = (&bank.accounts[0], &bank.accounts[ACCOUNTS_PER_SHARD]);
    assert_ne!(bank.group(a).id(), bank.group(b).id());

    // Cross-group: two-phase.
    let receipt = block_on(
        DistributedTransaction::new(TxnId([1; 16]), bank.map.version(), bank.writes(a, b, 30))
            .execute(),
    )
    .unwrap();
    assert!(receipt.phi_roundtrip);
    assert_eq!((bank.balance(a), bank.balance(b)), (70, 130));

    // Within one group: the one-phase fast path.
    let c = &bank.accounts[1];
    block_on(
        DistributedTransaction::new(TxnId([2; 16]), bank.map.version(), bank.writes(a, c, 5))
            .execute(),
    )
    .unwrap();
    assert_eq!((bank.balance(a), bank.balance(c)), (65, 105));

    // Overdrawn: refused by the group, aborted in both, nothing applied.
    let refused = block_on(
        DistributedTransaction::new(TxnId([3; 16]), bank.map.version(), bank.writes(b, a, 1_000))
            .execute(),
    );
    assert!(
        matches!(refused, Err(TxnError::Rejected { .. })),
        "{refused:?}"
    );
    assert_eq!(bank.total(), total);
    bank.check_quiescent().unwrap();
}

#[test]
fn concurrent_transfers_lose_nothing_and_leave_no_lock() {
    let bank = bank();
    let total = bank.total();
    let n = bank.accounts.len();
    let txns: Vec<_> = (0..12u8)
        .map(|i| {
            let from = &bank.accounts[usize::from(i) % n];
            let to = &bank.accounts[(usize::from(i) * 5 + 1) % n];
            let to = if to == from {
                &bank.accounts[(usize::from(i) + 1) % n]
            } else {
                to
            };
            DistributedTransaction::new(
                TxnId([100 + i; 16]),
                bank.map.version(),
                bank.writes(from, to, 7),
            )
            .execute()
        })
        .collect();
    let results = block_on(join_all(txns));
    for r in &results {
        if let Err(e) = r {
            assert!(e.is_retryable(), "{e}");
        }
    }
    assert!(results.iter().any(Result::is_ok));
    assert_eq!(bank.total(), total);
    bank.check_quiescent().unwrap();
}

/// Where a coordinator stops in a transfer it runs step by step.
#[derive(Debug, Clone, Copy)]
enum Crash {
    AfterFirstPrepare,
    AfterPrepares,
    AfterDecision,
    AfterFirstAck,
    Never,
}

const CRASHES: [Crash; 5] = [
    Crash::AfterFirstPrepare,
    Crash::AfterPrepares,
    Crash::AfterDecision,
    Crash::AfterFirstAck,
    Crash::Never,
];

/// Runs a transfer step by step as a coordinator would, stopping at `crash`.
/// Returns whether the primary decided commit.
fn transfer_until(
    bank: &Bank,
    txn: TxnId,
    from: &Key,
    to: &Key,
    amount: i64,
    crash: Crash,
) -> bool {
    let writes = bank.writes(from, to, amount);
    let mut participants: Vec<NodeId> = writes.iter().map(|(p, _)| p.id()).collect();
    participants.sort();
    let primary = participants[0];
    let mut prepares = Vec::new();
    for (i, (p, ops)) in writes.iter().enumerate() {
        let request = PrepareRequest {
            txn,
            primary,
            participants: participants.clone(),
            ops: ops.clone(),
            map_version: bank.map.version(),
        };
        match block_on(p.prepare(request)) {
            Ok(vote) => prepares.push(vote),
            Err(_) => break,
        }
        if i == 0 && matches!(crash, Crash::AfterFirstPrepare) {
            return false;
        }
    }
    if matches!(crash, Crash::AfterPrepares) {
        return false;
    }
    let primary_part = writes.iter().find(|(p, _)| p.id() == primary).unwrap().0;
    let decision = if prepares.len() == writes.len() {
        block_on(primary_part.commit(txn, prepares)).unwrap()
    } else {
        block_on(primary_part.abort(txn)).unwrap()
    };
    if matches!(crash, Crash::AfterDecision) {
        return decision.is_commit();
    }
    for (p, _) in writes.iter().filter(|(p, _)| p.id() != primary) {
        block_on(p.resolve(txn, decision.clone())).unwrap();
        if matches!(crash, Crash::AfterFirstAck) {
            break;
        }
    }
    decision.is_commit()
}

/// What a recovery process does once the coordinator is gone: every group
/// still holding a prepared transaction settles it from its primary group.
fn recover(bank: &Bank) {
    for g in &bank.groups {
        let pending: Vec<(TxnId, NodeId)> = block_on(g.with_members(|m| {
            m[0].machine()
                .state()
                .core()
                .prepared()
                .map(|(t, r)| (*t, r.primary))
                .collect()
        }));
        for (txn, primary) in pending {
            let primary = bank.groups.iter().find(|p| p.id() == primary).unwrap();
            block_on(settle(&**g, &**primary, txn)).unwrap();
        }
    }
}

#[test]
fn a_coordinator_crashing_at_every_step_leaves_nothing_half_applied() {
    // Also: group members crash and restart from their durable logs; their
    // replicas then agree with the others' (checked after every transfer).
    check_seeds("replicated coordinator crash", 4, |seed| {
        let bank = bank();
        let total = bank.total();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut expected: Vec<i64> = vec![START; bank.accounts.len()];
        for t in 0..10u8 {
            let i = rng.random_range(0..ACCOUNTS_PER_SHARD);
            let j = ACCOUNTS_PER_SHARD + rng.random_range(0..ACCOUNTS_PER_SHARD);
            let (i, j) = if rng.random() { (i, j) } else { (j, i) };
            let amount = rng.random_range(1..80);
            let crash = CRASHES[rng.random_range(0..CRASHES.len())];
            let (from, to) = (&bank.accounts[i], &bank.accounts[j]);
            let committed = transfer_until(&bank, TxnId([t; 16]), from, to, amount, crash);
            // Sometimes a member crashes too, losing its memory, and
            // restarts from its durable log, catching up from its peers.
            if rng.random_bool(0.3) {
                let group = &bank.groups[rng.random_range(0..bank.groups.len())];
                block_on(group.restart_member(rng.random_range(0..4)))
                    .map_err(|e| e.to_string())?;
            }
            recover(&bank);
            let step = format!("txn {t} ({crash:?})");
            bank.check_step(&step, committed, (i, j, amount), &mut expected, total)?;
        }
        Ok(())
    });
}

#[test]
fn answers_need_f_plus_one_matching_endorsements() {
    let bank = bank();
    let group = &bank.groups[1];
    let keys = member_keys(1);
    let message = TxnMessage::Abort {
        txn: TxnId([9; 16]),
    };
    let command = hologram_consensus::Command::sign(
        &hologram_receipt::KeyPair::from_seed([0xc1; 32]),
        0,
        0,
        message.to_wire().unwrap(),
    )
    .unwrap();
    let truth = Some(message.clone());
    let lie = Some(TxnMessage::Query {
        txn: TxnId([9; 16]),
    });
    let e = |k: &KeyPair, o: &Option<TxnMessage>| {
        Endorsement::sign(k, group.id(), &command, o.clone()).unwrap()
    };
    // f + 1 = 2 distinct members agreeing is enough.
    let got = group.agree(
        &command,
        vec![e(&keys[0], &lie), e(&keys[1], &truth), e(&keys[2], &truth)],
    );
    assert_eq!(got.unwrap(), truth);
    // One member twice is one member.
    assert!(group
        .agree(&command, vec![e(&keys[0], &truth), e(&keys[0], &truth)])
        .is_err());
    // An outsider does not count.
    let outsider = KeyPair::from_seed([99; 32]);
    assert!(group
        .agree(&command, vec![e(&keys[0], &truth), e(&outsider, &truth)])
        .is_err());
    // A tampered output or another purpose's signature does not verify.
    let mut tampered = e(&keys[1], &truth);
    tampered.output = lie.clone();
    assert!(tampered.verify(&group.id(), &command).is_err());
    let mut wrong_purpose = e(&keys[1], &truth);
    wrong_purpose.signed.proof = Proof::Single(keys[1].sign(
        Purpose::Commit,
        &wrong_purpose.signed.receipt.to_canonical_bytes(),
    ));
    assert!(wrong_purpose.verify(&group.id(), &command).is_err());
    assert!(group
        .agree(&command, vec![e(&keys[0], &truth), tampered, wrong_purpose])
        .is_err());
}

/// A group behind a lossy link: each call's request or answer is lost with
/// probability `loss` (the request never reaches the group, or the group
/// applies it and the answer is lost), seen by the coordinator as a
/// retryable transport error.
struct Lossy<'a> {
    inner: &'a ReplicatedParticipant,
    rng: std::sync::Mutex<ChaCha8Rng>,
    loss: f64,
}

impl Lossy<'_> {
    /// `Some(before)` if this call is lost: before or after the group applied it.
    fn lost(&self) -> Option<bool> {
        let mut rng = self.rng.lock().unwrap();
        rng.random_bool(self.loss).then(|| rng.random())
    }

    async fn call<R>(
        &self,
        f: impl std::future::Future<Output = Result<R, TxnError>>,
    ) -> Result<R, TxnError> {
        let lost = self.lost();
        if lost == Some(true) {
            return Err(TxnError::Transport("request lost".into()));
        }
        let answer = f.await;
        match lost {
            Some(_) => Err(TxnError::Transport("answer lost".into())),
            None => answer,
        }
    }
}

#[async_trait]
impl Participant for Lossy<'_> {
    fn id(&self) -> NodeId {
        self.inner.id()
    }

    async fn prepare(&self, request: PrepareRequest) -> Result<SignedReceipt, TxnError> {
        self.call(self.inner.prepare(request)).await
    }

    async fn commit_one_phase(
        &self,
        request: PrepareRequest,
        expected: Receipt,
    ) -> Result<Decision, TxnError> {
        self.call(self.inner.commit_one_phase(request, expected))
            .await
    }

    async fn commit(&self, txn: TxnId, prepares: Vec<SignedReceipt>) -> Result<Decision, TxnError> {
        self.call(self.inner.commit(txn, prepares)).await
    }

    async fn abort(&self, txn: TxnId) -> Result<Decision, TxnError> {
        self.call(self.inner.abort(txn)).await
    }

    async fn resolve(&self, txn: TxnId, decision: Decision) -> Result<SignedReceipt, TxnError> {
        self.call(self.inner.resolve(txn, decision)).await
    }
}

#[test]
fn lost_requests_and_answers_are_retried_and_settle_atomically() {
    check_seeds("replicated lossy links", 4, |seed| {
        let bank = bank();
        let total = bank.total();
        let links: Vec<Lossy> = bank
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| Lossy {
                inner: g,
                rng: std::sync::Mutex::new(ChaCha8Rng::seed_from_u64(seed * 2 + i as u64)),
                loss: 0.3,
            })
            .collect();
        let link = |k: &Key| -> &dyn Participant {
            let id = bank.map.node_of(k).unwrap();
            links.iter().find(|l| l.id() == id).unwrap()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut expected: Vec<i64> = vec![START; bank.accounts.len()];
        let (mut committed, mut unknown) = (0, 0);
        for t in 0..10u8 {
            let i = rng.random_range(0..bank.accounts.len());
            let j = (i + rng.random_range(1..bank.accounts.len())) % bank.accounts.len();
            let amount = rng.random_range(1..60);
            let (from, to) = (&bank.accounts[i], &bank.accounts[j]);
            let op = |key: &Key, delta| {
                vec![Op::Add {
                    key: key.clone(),
                    delta,
                }]
            };
            let txn = TxnId([t; 16]);
            let writes = [(link(from), op(from, -amount)), (link(to), op(to, amount))];
            let result =
                block_on(DistributedTransaction::new(txn, bank.map.version(), writes).execute());
            // Once the links are quiet, whatever is still prepared settles.
            recover(&bank);
            // Committed iff the primary group decided commit; an `Ok` must
            // be a commit.
            let primary = bank
                .groups
                .iter()
                .filter(|g| [bank.group(from).id(), bank.group(to).id()].contains(&g.id()))
                .min_by_key(|g| g.id())
                .unwrap();
            let decided = block_on(primary.with_members(|m| {
                m[0].machine()
                    .state()
                    .core()
                    .outcome(&txn)
                    .map(|d| d.is_commit())
            }));
            match (&result, decided) {
                (Ok(_), Some(true)) => committed += 1,
                (Ok(_), _) => {
                    return Err(format!(
                        "txn {t} reported committed, primary says {decided:?}"
                    ))
                }
                (Err(e), _) if !e.is_retryable() && !matches!(e, TxnError::Rejected { .. }) => {
                    return Err(format!("txn {t}: unexpected error {e}"))
                }
                (Err(_), _) => unknown += usize::from(decided == Some(true)),
            }
            let committed = decided == Some(true);
            bank.check_step(
                &format!("txn {t}"),
                committed,
                (i, j, amount),
                &mut expected,
                total,
            )?;
        }
        if committed == 0 {
            return Err(format!("nothing committed through the lossy links ({unknown} reported as failed but committed)"));
        }
        Ok(())
    });
}

#[test]
fn a_replicated_group_and_a_single_replica_shard_commit_together_through_a_member_crash() {
    let group_key = ReplicatedParticipant::group_of(&member_keys(0)).unwrap();
    let single_key = KeyPair::from_seed([2; 32]);
    let map = ShardMap::even(&[group_key.id(), single_key.node_id()]);
    let find = |owner: NodeId| {
        (0..)
            .map(|i| Key::new(format!("account-{i}").into_bytes()).unwrap())
            .find(|k| map.node_of(k) == Some(owner))
            .unwrap()
    };
    let (a, b) = (find(group_key.id()), find(single_key.node_id()));
    let config = ParticipantConfig::default();
    let mut core = ParticipantCore::new(group_key, config, map.clone()).unwrap();
    core.load(a.clone(), START.to_le_bytes().to_vec()).unwrap();
    let group = TestGroup::honest(&core, &member_keys(0));
    let mut core = ParticipantCore::new(single_key, config, map.clone()).unwrap();
    core.load(b.clone(), START.to_le_bytes().to_vec()).unwrap();
    let single =
        hologram_txn::LocalParticipant::new(core, Arc::new(hologram_cam::MemoryStore::new()));
    let balances = || {
        let x = counter(block_on(group.value(&a)).unwrap().as_deref()).unwrap();
        let y = block_on(single.with_core(|c| counter(c.value(&b))))
            .unwrap()
            .unwrap();
        (x, y)
    };
    let op = |key: &Key, delta| {
        vec![Op::Add {
            key: key.clone(),
            delta,
        }]
    };
    for (t, amount) in [
        (1u8, 40i64),
        (2, -25),
        (3, 500),
        (4, -500),
        (5, 10),
        (6, -10),
    ] {
        if t == 3 {
            // A member crashes (the leader of some heights): rounds it
            // leads change leader and the group goes on deciding.
            block_on(group.crash_member(0)).unwrap();
        }
        let writes: [(&dyn Participant, Vec<Op>); 2] =
            [(&*group, op(&a, -amount)), (&single, op(&b, amount))];
        let result =
            block_on(DistributedTransaction::new(TxnId([t; 16]), map.version(), writes).execute());
        assert_eq!(result.is_ok(), amount.abs() < 100, "txn {t}: {result:?}");
    }
    // 100 - 40 + 25 on the group, 100 + 40 - 25 on the single shard; the
    // overdrafts (either side refusing) left nothing.
    assert_eq!(balances(), (85, 115));
    // The live members applied one gap-free log, and agree.
    let agree = block_on(group.with_members(|m| {
        m.len() == 3
            && !m.iter().any(|x| x.id() == member_keys(0)[0].node_id())
            && m.iter().all(|x| x.machine().verify_replica(m[0].machine()))
            && m[0].machine().applied_count() >= 6
    }));
    assert!(agree);
    let locks = block_on(group.with_members(|m| {
        m.iter()
            .all(|m| m.machine().state().core().locks().is_empty())
    }));
    assert!(locks);
    assert!(block_on(single.with_core(|c| c.locks().is_empty())).unwrap());
}

/// What one Byzantine member of `group` can make alone: `receipt` in the
/// group's name, proved by its own signature (one of the `f + 1` needed).
fn forge(member: &KeyPair, group: &Group, purpose: Purpose, receipt: Receipt) -> SignedReceipt {
    let index = group.members().binary_search(&member.node_id()).unwrap() as u8;
    let mut forged = group.unsigned(receipt);
    forged.proof = Proof::Group(GroupProof {
        members: group.members().to_vec(),
        signatures: vec![(index, member.sign(purpose, &receipt.to_canonical_bytes()))],
    });
    forged
}

/// `receipt` in `group`'s name with `member`'s single signature as proof.
fn forge_single(
    member: &KeyPair,
    group: &Group,
    purpose: Purpose,
    receipt: Receipt,
) -> SignedReceipt {
    SignedReceipt {
        signer: group.id(),
        receipt,
        proof: Proof::Single(member.sign(purpose, &receipt.to_canonical_bytes())),
    }
}

/// The group with id `id` (of the two) and its Byzantine member (the last).
fn byzantine_of(id: NodeId) -> (Group, KeyPair) {
    (0..2)
        .map(|g| {
            let keys = member_keys(g);
            (
                ReplicatedParticipant::group_of(&keys).unwrap(),
                keys[3].clone(),
            )
        })
        .find(|(g, _)| g.id() == id)
        .unwrap()
}

/// The prepare requests of a transfer, the primary's first.
fn requests<'a>(
    bank: &'a Bank,
    txn: TxnId,
    from: &Key,
    to: &Key,
    amount: i64,
) -> Vec<(&'a dyn Participant, PrepareRequest)> {
    let writes = bank.writes(from, to, amount);
    let mut participants: Vec<NodeId> = writes.iter().map(|(p, _)| p.id()).collect();
    participants.sort();
    let mut out: Vec<_> = writes
        .into_iter()
        .map(|(p, ops)| {
            let request = PrepareRequest {
                txn,
                primary: participants[0],
                participants: participants.clone(),
                ops,
                map_version: bank.map.version(),
            };
            (p, request)
        })
        .collect();
    out.sort_by_key(|(p, _)| p.id());
    out
}

/// The reason of a group's refusal.
fn refusal(result: Result<impl std::fmt::Debug, TxnError>) -> String {
    match result {
        Err(TxnError::Aborted { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_byzantine_member_cannot_sign_a_vote_or_a_decision_for_its_group() {
    let bank = bank();
    let (a, b) = (&bank.accounts[0], &bank.accounts[ACCOUNTS_PER_SHARD]);
    let txn = TxnId([70; 16]);
    let reqs = requests(&bank, txn, a, b, 10);
    let (primary, secondary) = (reqs[0].0, reqs[1].0);
    let votes: Vec<SignedReceipt> = reqs
        .iter()
        .map(|(p, r)| block_on(p.prepare(r.clone())).unwrap())
        .collect();
    for v in &votes {
        assert!(v.verify(Purpose::Prepare).is_ok());
        assert!(matches!(&v.proof, Proof::Group(p) if p.signatures.len() == 2));
    }
    let too_few = "signed with 1 of the 2 member signatures needed";

    // A vote forged by one member of the secondary group: the primary
    // group refuses the certificate, whatever the receipt.
    let (sg, sk) = byzantine_of(secondary.id());
    let mut other = reqs[1].1.clone();
    other.ops[0] = Op::Add {
        key: other.ops[0].key().clone(),
        delta: 1_000,
    };
    for receipt in [votes[1].receipt, other.prepare_receipt(&sg.id())] {
        let vote = forge(&sk, &sg, Purpose::Prepare, receipt);
        assert_eq!(
            vote.verify(Purpose::Prepare),
            Err(TxnError::TooFewSignatures {
                group: sg.id(),
                got: 1,
                needed: 2
            })
        );
        let certificate = vec![votes[0].clone(), vote];
        let reason = refusal(block_on(primary.commit(txn, certificate)));
        assert!(reason.contains(too_few), "{reason}");
        let single = forge_single(&sk, &sg, Purpose::Prepare, receipt);
        assert!(matches!(
            single.verify(Purpose::Prepare),
            Err(TxnError::BadSignature { signer, .. }) if signer == sg.id()
        ));
        let reason = refusal(block_on(
            primary.commit(txn, vec![votes[0].clone(), single]),
        ));
        assert!(reason.contains("bad signature"), "{reason}");
    }

    // A commit forged by one member of the primary group: the secondary
    // group refuses it, alone or with a forged vote of the primary's.
    let (pg, pk) = byzantine_of(primary.id());
    let commit = |prepares: Vec<SignedReceipt>| {
        let receipt = commit_receipt(&prepares);
        Decision::Committed {
            primary: forge(&pk, &pg, Purpose::Commit, receipt),
            prepares,
        }
    };
    let forged_vote = forge(&pk, &pg, Purpose::Prepare, votes[0].receipt);
    for forged in [
        commit(votes.clone()),
        commit(vec![forged_vote, votes[1].clone()]),
    ] {
        assert_eq!(
            forged.verify(&txn, &pg.id()),
            Err(TxnError::TooFewSignatures {
                group: pg.id(),
                got: 1,
                needed: 2
            })
        );
        let reason = refusal(block_on(secondary.resolve(txn, forged)));
        assert!(reason.contains(too_few), "{reason}");
    }
    let single = Decision::Committed {
        primary: forge_single(&pk, &pg, Purpose::Commit, commit_receipt(&votes)),
        prepares: votes.clone(),
    };
    assert!(refusal(block_on(secondary.resolve(txn, single))).contains("bad signature"));
    // An abort forged the same way is refused too.
    let abort = Decision::Aborted {
        primary: forge(&pk, &pg, Purpose::Abort, abort_receipt(&txn)),
    };
    assert!(refusal(block_on(secondary.resolve(txn, abort))).contains(too_few));
    assert_eq!((bank.balance(a), bank.balance(b)), (START, START));

    // The group's own decision, proved by f + 1 members, is taken.
    let decision = block_on(primary.commit(txn, votes.clone())).unwrap();
    assert_eq!(
        decision.verify(&txn, &primary.id()),
        Ok(decision.primary().receipt)
    );
    let ack = block_on(secondary.resolve(txn, decision.clone())).unwrap();
    assert!(ack.verify(Purpose::Commit).is_ok());
    assert_eq!(ack.receipt, decision.primary().receipt);
    assert_eq!((bank.balance(a), bank.balance(b)), (START - 10, START + 10));
    bank.check_quiescent().unwrap();
}

/// A group whose calls a Byzantine member of each group tries to subvert:
/// before each commit at the primary, the certificate with every other
/// group's vote replaced by one that group's Byzantine member forged (same
/// receipt); before each resolve, the opposite decision forged by the
/// primary group's Byzantine member. Every forgery must be refused.
struct Subverted<'a> {
    inner: &'a ReplicatedParticipant,
    requests: Mutex<Vec<(PrepareRequest, Option<SignedReceipt>)>>,
    refused: AtomicUsize,
    /// When set, this group's Byzantine member answers the next decision
    /// request itself, with an abort it forged.
    lie_once: AtomicBool,
}

impl<'a> Subverted<'a> {
    fn new(inner: &'a ReplicatedParticipant) -> Self {
        Subverted {
            inner,
            requests: Mutex::default(),
            refused: AtomicUsize::new(0),
            lie_once: AtomicBool::new(false),
        }
    }

    /// The forged answer to a decision request, if one is due.
    fn lie(&self, txn: TxnId) -> Option<Decision> {
        self.lie_once.swap(false, SeqCst).then(|| {
            let (group, member) = byzantine_of(self.id());
            Decision::Aborted {
                primary: forge(&member, &group, Purpose::Abort, abort_receipt(&txn)),
            }
        })
    }

    /// Counts a refused forgery; one taken fails the test at once (before
    /// the broken atomicity can stall the coordinator).
    fn count(&self, taken: bool, what: &str) {
        assert!(!taken, "a forged {what} was taken");
        self.refused.fetch_add(1, SeqCst);
    }

    /// The decision opposite to `decision`, forged by the primary group's
    /// Byzantine member (`None` for a commit this group never voted for).
    fn opposite(&self, txn: TxnId, decision: &Decision) -> Option<Decision> {
        let primary = decision.primary().signer;
        let (group, member) = byzantine_of(primary);
        if decision.is_commit() {
            return Some(Decision::Aborted {
                primary: forge(&member, &group, Purpose::Abort, abort_receipt(&txn)),
            });
        }
        let requests = self.requests.lock().unwrap();
        let (request, vote) = requests.iter().find(|(r, _)| r.txn == txn)?;
        let receipt = request.prepare_receipt(&primary);
        let prepares = vec![
            forge(&member, &group, Purpose::Prepare, receipt),
            vote.clone()?,
        ];
        Some(Decision::Committed {
            primary: forge(&member, &group, Purpose::Commit, commit_receipt(&prepares)),
            prepares,
        })
    }
}

#[async_trait]
impl Participant for Subverted<'_> {
    fn id(&self) -> NodeId {
        self.inner.id()
    }

    async fn prepare(&self, request: PrepareRequest) -> Result<SignedReceipt, TxnError> {
        let vote = self.inner.prepare(request.clone()).await;
        let kept = vote.as_ref().ok().cloned();
        self.requests.lock().unwrap().push((request, kept));
        vote
    }

    async fn commit_one_phase(
        &self,
        request: PrepareRequest,
        expected: Receipt,
    ) -> Result<Decision, TxnError> {
        self.inner.commit_one_phase(request, expected).await
    }

    async fn commit(&self, txn: TxnId, prepares: Vec<SignedReceipt>) -> Result<Decision, TxnError> {
        if let Some(lie) = self.lie(txn) {
            return Ok(lie);
        }
        let forged = prepares
            .iter()
            .map(|p| match p.signer == self.id() {
                true => p.clone(),
                false => {
                    let (group, member) = byzantine_of(p.signer);
                    forge(&member, &group, Purpose::Prepare, p.receipt)
                }
            })
            .collect();
        self.count(self.inner.commit(txn, forged).await.is_ok(), "certificate");
        self.inner.commit(txn, prepares).await
    }

    async fn abort(&self, txn: TxnId) -> Result<Decision, TxnError> {
        match self.lie(txn) {
            Some(lie) => Ok(lie),
            None => self.inner.abort(txn).await,
        }
    }

    async fn resolve(&self, txn: TxnId, decision: Decision) -> Result<SignedReceipt, TxnError> {
        if let Some(forged) = self.opposite(txn, &decision) {
            let receipt = forged.primary().receipt;
            let taken = self.inner.resolve(txn, forged).await;
            self.count(taken.is_ok_and(|ack| ack.receipt == receipt), "decision");
        }
        self.inner.resolve(txn, decision).await
    }
}

#[test]
fn the_coordinator_refuses_a_decision_one_member_forged() {
    let bank = bank();
    let (a, b) = (&bank.accounts[0], &bank.accounts[ACCOUNTS_PER_SHARD]);
    let subverted: Vec<Subverted> = bank.groups.iter().map(|g| Subverted::new(g)).collect();
    let primary = subverted.iter().min_by_key(|s| s.id()).unwrap();
    primary.lie_once.store(true, SeqCst);
    let of = |key: &Key| {
        let node = bank.map.node_of(key).unwrap();
        subverted.iter().find(|s| s.id() == node).unwrap() as &dyn Participant
    };
    let op = |key: &Key, delta| {
        vec![Op::Add {
            key: key.clone(),
            delta,
        }]
    };
    let writes = [(of(a), op(a, -25)), (of(b), op(b, 25))];
    // The primary's Byzantine member answers with an abort it forged: the
    // coordinator forwards it, the other group refuses it, it fails the
    // coordinator's check, and the coordinator asks again: the transaction
    // commits, as the group decided.
    let txn = TxnId([71; 16]);
    let result = block_on(DistributedTransaction::new(txn, bank.map.version(), writes).execute());
    assert!(result.is_ok(), "{result:?}");
    assert!(
        !primary.lie_once.load(SeqCst),
        "the forged answer was given"
    );
    assert_eq!((bank.balance(a), bank.balance(b)), (START - 25, START + 25));
    bank.check_quiescent().unwrap();
}

#[test]
fn transfers_stay_atomic_while_a_member_of_each_group_forges() {
    // The last member of each group endorses true outputs with signatures
    // for the wrong purposes; it also forges votes and decisions in its group's name (`Subverted`).
    let bank = bank_with(|_, i| match i {
        3 => MemberBehaviour::Forging,
        _ => MemberBehaviour::Honest,
    });
    let subverted: Vec<Subverted> = bank.groups.iter().map(|g| Subverted::new(g)).collect();
    let of = |key: &Key| {
        let node = bank.map.node_of(key).unwrap();
        subverted.iter().find(|s| s.id() == node).unwrap() as &dyn Participant
    };
    let total = bank.total();
    let mut expected = vec![START; bank.accounts.len()];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut outcomes = [0usize; 2];
    for t in 0..10u8 {
        let i = rng.random_range(0..ACCOUNTS_PER_SHARD);
        let j = ACCOUNTS_PER_SHARD + rng.random_range(0..ACCOUNTS_PER_SHARD);
        let (i, j) = if rng.random_bool(0.5) { (i, j) } else { (j, i) };
        let amount = rng.random_range(1..=150i64);
        let (from, to) = (&bank.accounts[i], &bank.accounts[j]);
        let op = |key: &Key, delta| {
            vec![Op::Add {
                key: key.clone(),
                delta,
            }]
        };
        let writes = [(of(from), op(from, -amount)), (of(to), op(to, amount))];
        let txn = TxnId([100 + t; 16]);
        let result =
            block_on(DistributedTransaction::new(txn, bank.map.version(), writes).execute());
        outcomes[usize::from(result.is_ok())] += 1;
        // Both groups applied the decision reported (a group that refused
        // to prepare has nothing to apply when it aborts).
        let decided: Vec<Option<bool>> = bank
            .groups
            .iter()
            .map(|g| {
                block_on(g.with_members(|m| {
                    let core = m[0].machine().state().core();
                    core.outcome(&txn).map(Decision::is_commit)
                }))
            })
            .collect();
        assert!(
            decided
                .iter()
                .all(|d| *d == Some(result.is_ok()) || (d.is_none() && result.is_err())),
            "txn {t}: {result:?}, groups decided {decided:?}"
        );
        let step = format!("txn {t}");
        bank.check_step(&step, result.is_ok(), (i, j, amount), &mut expected, total)
            .unwrap();
    }
    let refused: usize = subverted.iter().map(|s| s.refused.load(SeqCst)).sum();
    assert!(refused >= 10, "{refused} forgeries tried");
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

#[test]
fn a_crashed_member_that_restarts_votes_and_answers_again() {
    let keys = member_keys(0);
    let group_key = ReplicatedParticipant::group_of(&keys).unwrap();
    let map = ShardMap::even(&[group_key.id()]);
    let account = Key::new(b"account".to_vec()).unwrap();
    let mut core =
        ParticipantCore::new(group_key, ParticipantConfig::default(), map.clone()).unwrap();
    core.load(account.clone(), START.to_le_bytes().to_vec())
        .unwrap();
    let group = TestGroup::honest(&core, &keys);
    let deposit = |t: u8| {
        let ops = vec![Op::Add {
            key: account.clone(),
            delta: 1,
        }];
        block_on(
            DistributedTransaction::new(
                TxnId([t; 16]),
                map.version(),
                [(&*group as &dyn Participant, ops)],
            )
            .execute(),
        )
    };
    // One of four down: the group decides without it.
    block_on(group.crash_member(1)).unwrap();
    deposit(1).unwrap();
    // It comes back; then another goes down. Were the first still down, two
    // of four would be (more than f = 1) and nothing could be decided.
    block_on(group.restart_member(1)).unwrap();
    block_on(group.crash_member(2)).unwrap();
    deposit(2).unwrap();
    let answering = block_on(group.with_members(|m| {
        m.iter()
            .map(|m| m.machine().next_height())
            .collect::<Vec<_>>()
    }));
    assert!(
        answering.iter().all(|&h| h == answering[0]),
        "{answering:?}"
    );
    assert_eq!(
        counter(block_on(group.value(&account)).unwrap().as_deref()),
        Some(START + 2)
    );
}
