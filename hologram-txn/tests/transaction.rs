//! `DistributedTransaction` over in-process participants, and recovery of a
//! participant from its store.

use futures::executor::block_on;
use hologram_cam::MemoryStore;
use hologram_receipt::{KeyPair, Purpose};
use hologram_txn::counter;
use hologram_txn::load_records;
use hologram_txn::{
    Decision, DistributedTransaction, Key, LocalParticipant, Op, Participant, ParticipantConfig,
    ParticipantCore, PrepareRequest, ShardMap, TxnError, TxnId,
};
use std::sync::Arc;

struct Shards {
    map: ShardMap,
    parts: Vec<LocalParticipant<MemoryStore>>,
    stores: Vec<Arc<MemoryStore>>,
    keys: Vec<KeyPair>,
}

fn shards(n: u8) -> Shards {
    let keys: Vec<KeyPair> = (0..n).map(|i| KeyPair::from_seed([i + 1; 32])).collect();
    let ids: Vec<_> = keys.iter().map(KeyPair::node_id).collect();
    let map = ShardMap::even(&ids);
    let stores: Vec<_> = (0..n).map(|_| Arc::new(MemoryStore::new())).collect();
    let parts = keys
        .iter()
        .zip(&stores)
        .map(|(k, s)| {
            let core =
                ParticipantCore::new(k.clone(), ParticipantConfig::default(), map.clone()).unwrap();
            LocalParticipant::new(core, Arc::clone(s))
        })
        .collect();
    Shards {
        map,
        parts,
        stores,
        keys,
    }
}

impl Shards {
    fn part(&self, key: &Key) -> &LocalParticipant<MemoryStore> {
        let node = self.map.node_of(key).unwrap();
        self.parts.iter().find(|p| p.id() == node).unwrap()
    }

    fn load(&self, key: &Key, balance: i64) {
        let k = key.clone();
        block_on(
            self.part(key)
                .with_core(|c| c.load(k, balance.to_le_bytes().to_vec())),
        )
        .unwrap()
        .unwrap();
    }

    fn balance(&self, key: &Key) -> i64 {
        block_on(self.part(key).with_core(|c| counter(c.value(key)).unwrap())).unwrap()
    }

    fn transfer(&self, txn: u8, from: &Key, to: &Key, amount: i64) -> DistributedTransaction<'_> {
        let a: &dyn Participant = self.part(from);
        let b: &dyn Participant = self.part(to);
        DistributedTransaction::new(
            TxnId([txn; 16]),
            self.map.version(),
            [
                (
                    a,
                    vec![Op::Add {
                        key: from.clone(),
                        delta: -amount,
                    }],
                ),
                (
                    b,
                    vec![Op::Add {
                        key: to.clone(),
                        delta: amount,
                    }],
                ),
            ],
        )
    }
}

/// Two keys on different shards, and one more on the first's shard.
fn keys(s: &Shards) -> (Key, Key, Key) {
    let all: Vec<Key> = (0..200)
        .map(|i| Key::new(format!("acct-{i}").into_bytes()).unwrap())
        .collect();
    let a = all[0].clone();
    let b = all
        .iter()
        .find(|k| s.map.node_of(k) != s.map.node_of(&a))
        .unwrap()
        .clone();
    let c = all[1..]
        .iter()
        .find(|k| s.map.node_of(k) == s.map.node_of(&a))
        .unwrap()
        .clone();
    (a, b, c)
}

#[test]
fn a_cross_shard_transfer_commits_with_the_composed_receipt() {
    let s = shards(4);
    let (a, b, _) = keys(&s);
    s.load(&a, 100);
    let receipt = block_on(s.transfer(1, &a, &b, 30).execute()).unwrap();
    assert_eq!((s.balance(&a), s.balance(&b)), (70, 30));
    // The receipt is the composition of the two prepare receipts.
    let outcome = block_on(
        s.part(&a)
            .with_core(|c| c.outcome(&TxnId([1; 16])).cloned()),
    )
    .unwrap()
    .unwrap();
    let Decision::Committed { prepares, .. } = outcome else {
        panic!("not committed")
    };
    assert_eq!(receipt, hologram_txn::commit_receipt(&prepares));
    // Overdrawing is refused everywhere, and not retryable.
    let err = block_on(s.transfer(2, &a, &b, 71).execute()).unwrap_err();
    assert!(matches!(err, TxnError::Rejected { .. }) && !err.is_retryable());
    assert_eq!((s.balance(&a), s.balance(&b)), (70, 30));
}

#[test]
fn a_single_shard_transfer_takes_one_phase() {
    let s = shards(4);
    let (a, _, c) = keys(&s);
    s.load(&a, 10);
    block_on(s.transfer(1, &a, &c, 4).execute()).unwrap();
    assert_eq!((s.balance(&a), s.balance(&c)), (6, 4));
    // No prepared record was written: only values, the map and the outcome.
    let records = block_on(load_records(s.stores[0].as_ref())).unwrap();
    assert!(!records
        .iter()
        .any(|r| matches!(r, hologram_txn::ParticipantRecord::Prepared { .. })));
}

#[test]
fn conflicting_transactions_lose_with_a_retryable_error_and_no_deadlock() {
    let s = shards(4);
    let (a, b, _) = keys(&s);
    s.load(&a, 100);
    // A transaction that prepared at a's shard and is still undecided.
    let holder = PrepareRequest {
        txn: TxnId([9; 16]),
        primary: s.part(&a).id(),
        participants: vec![s.part(&a).id()],
        ops: vec![Op::Add {
            key: a.clone(),
            delta: -1,
        }],
        map_version: s.map.version(),
    };
    block_on(s.part(&a).prepare(holder)).unwrap();
    let err = block_on(s.transfer(1, &a, &b, 5).execute()).unwrap_err();
    assert!(matches!(err, TxnError::Conflict { holder, .. } if holder == TxnId([9; 16])));
    assert!(err.is_retryable());
    // Nothing is left locked at b's shard by the loser.
    let locked = block_on(s.part(&b).with_core(|c| c.locks().len())).unwrap();
    assert_eq!(locked, 0);
    block_on(s.part(&a).abort(TxnId([9; 16]))).unwrap();
    block_on(s.transfer(3, &a, &b, 5).execute()).unwrap();
    assert_eq!(s.balance(&b), 5);
}

#[test]
fn a_prepared_participant_recovers_its_locks_and_then_its_decision() {
    let s = shards(2);
    let (a, b, _) = keys(&s);
    s.load(&a, 50);
    let (pa, pb) = (s.part(&a).id(), s.part(&b).id());
    let mut participants = vec![pa, pb];
    participants.sort();
    let primary = participants[0];
    let request = |key: &Key, delta| PrepareRequest {
        txn: TxnId([5; 16]),
        primary,
        participants: participants.clone(),
        ops: vec![Op::Add {
            key: key.clone(),
            delta,
        }],
        map_version: s.map.version(),
    };
    let va = block_on(s.part(&a).prepare(request(&a, -20))).unwrap();
    let vb = block_on(s.part(&b).prepare(request(&b, 20))).unwrap();
    // The secondary "crashes": rebuild it from its store alone.
    let secondary_key = if pa == primary { &b } else { &a };
    let which = s.keys.iter().position(|k| k.node_id() != primary).unwrap();
    let records = block_on(load_records(s.stores[which].as_ref())).unwrap();
    let mut recovered = ParticipantCore::recover(
        s.keys[which].clone(),
        ParticipantConfig::default(),
        s.map.clone(),
        records,
    )
    .unwrap();
    assert_eq!(
        recovered.locks().holder(secondary_key),
        Some(TxnId([5; 16]))
    );
    // It asks its primary after a restart; the primary decides commit.
    let primary_part = s.parts.iter().find(|p| p.id() == primary).unwrap();
    let decision = block_on(primary_part.commit(TxnId([5; 16]), vec![va, vb])).unwrap();
    let ack = recovered.resolve(TxnId([5; 16]), &decision).unwrap();
    ack.verify(Purpose::Commit).unwrap();
    assert_eq!(ack.receipt, decision.primary().receipt);
    assert!(recovered.locks().is_empty());
    assert_eq!(
        counter(recovered.value(secondary_key)),
        Some(if secondary_key == &a { 30 } else { 20 })
    );
}

#[test]
fn a_split_moves_only_the_split_shards_upper_keys_and_stale_routes_are_refused() {
    let s = shards(2);
    let all: Vec<Key> = (0..64u32)
        .map(|i| Key::new(blake3::hash(&i.to_le_bytes()).to_hex().as_bytes().to_vec()).unwrap())
        .collect();
    for k in &all {
        s.load(k, 10);
    }
    // A third node takes the upper half of shard 0.
    let newcomer = KeyPair::from_seed([77; 32]);
    let mut map = s.map.clone();
    let (start, end) = map.range(0).unwrap();
    let at = start + (end - start) / 2;
    map.split(0, at, newcomer.node_id()).unwrap();
    let store = Arc::new(MemoryStore::new());
    let core =
        ParticipantCore::new(newcomer.clone(), ParticipantConfig::default(), map.clone()).unwrap();
    let target = LocalParticipant::new(core, Arc::clone(&store));
    let source = s
        .parts
        .iter()
        .find(|p| Some(p.id()) == s.map.node(0))
        .unwrap();
    let other = s
        .parts
        .iter()
        .find(|p| Some(p.id()) == s.map.node(1))
        .unwrap();
    let moved = block_on(source.with_core(|c| c.hand_off(map.clone())))
        .unwrap()
        .unwrap();
    let untouched = block_on(other.with_core(|c| c.hand_off(map.clone())))
        .unwrap()
        .unwrap();
    assert!(untouched.is_empty(), "the other shard moves nothing");
    for (k, ..) in &moved {
        assert_eq!(s.map.shard_of(k), 0);
        assert!(k.placement() >= at);
    }
    let expected = all
        .iter()
        .filter(|k| map.node_of(k) == Some(newcomer.node_id()))
        .count();
    assert_eq!(moved.len(), expected);
    assert!(expected > 0);
    let keys: Vec<Key> = moved.iter().map(|m| m.0.clone()).collect();
    block_on(target.with_core(|c| c.absorb(map.clone(), moved)))
        .unwrap()
        .unwrap();
    // Still readable at the source until forgotten.
    assert!(block_on(source.with_core(|c| c.value(&keys[0]).is_some())).unwrap());
    block_on(source.with_core(|c| c.forget(&keys))).unwrap();
    // A transaction routed with the stale map is refused, not misapplied.
    let stale = DistributedTransaction::new(
        TxnId([1; 16]),
        s.map.version(),
        [(
            source as &dyn Participant,
            vec![Op::Add {
                key: keys[0].clone(),
                delta: 1,
            }],
        )],
    );
    let err = block_on(stale.execute()).unwrap_err();
    assert!(matches!(err, TxnError::StaleShardMap { current, .. } if current == map.version()));
    assert!(err.is_retryable());
    let fresh = DistributedTransaction::new(
        TxnId([2; 16]),
        map.version(),
        [(
            &target as &dyn Participant,
            vec![Op::Add {
                key: keys[0].clone(),
                delta: 1,
            }],
        )],
    );
    block_on(fresh.execute()).unwrap();
    let v = block_on(target.with_core(|c| counter(c.value(&keys[0])))).unwrap();
    assert_eq!(v, Some(11));
}

/// A participant that answers prepare, then becomes unreachable.
struct GoneAfterPrepare<'a>(&'a LocalParticipant<MemoryStore>);

#[async_trait::async_trait]
impl Participant for GoneAfterPrepare<'_> {
    fn id(&self) -> hologram_lattice::NodeId {
        self.0.id()
    }
    async fn prepare(
        &self,
        request: PrepareRequest,
    ) -> Result<hologram_txn::SignedReceipt, TxnError> {
        self.0.prepare(request).await
    }
    async fn commit_one_phase(
        &self,
        _: PrepareRequest,
        _: hologram_receipt::Receipt,
    ) -> Result<Decision, TxnError> {
        Err(TxnError::Transport("unreachable".into()))
    }
    async fn commit(
        &self,
        _: TxnId,
        _: Vec<hologram_txn::SignedReceipt>,
    ) -> Result<Decision, TxnError> {
        Err(TxnError::Transport("unreachable".into()))
    }
    async fn abort(&self, _: TxnId) -> Result<Decision, TxnError> {
        Err(TxnError::Transport("unreachable".into()))
    }
    async fn resolve(
        &self,
        _: TxnId,
        _: Decision,
    ) -> Result<hologram_txn::SignedReceipt, TxnError> {
        Err(TxnError::Transport("unreachable".into()))
    }
}

#[test]
fn a_participant_unreachable_after_the_decision_ends_the_wait_instead_of_spinning() {
    let s = shards(4);
    let (a, b, _) = keys(&s);
    s.load(&a, 100);
    // `a`'s shard is the primary if its id is the smaller; make the other
    // one the participant that disappears.
    let (primary, gone) = if s.part(&a).id() < s.part(&b).id() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let (delta_p, delta_g) = if primary == &a { (-30, 30) } else { (30, -30) };
    let gone_part = GoneAfterPrepare(s.part(gone));
    let writes = [
        (
            s.part(primary) as &dyn Participant,
            vec![Op::Add {
                key: primary.clone(),
                delta: delta_p,
            }],
        ),
        (
            &gone_part as &dyn Participant,
            vec![Op::Add {
                key: gone.clone(),
                delta: delta_g,
            }],
        ),
    ];
    let result =
        block_on(DistributedTransaction::new(TxnId([9; 16]), s.map.version(), writes).execute());
    // The primary committed (its decision is durable); the client cannot
    // learn every acknowledgement and is told it does not know, retryably.
    assert!(matches!(result, Err(TxnError::TimedOut(_))), "{result:?}");
    let decided = block_on(
        s.part(primary)
            .with_core(|c| c.outcome(&TxnId([9; 16])).cloned()),
    )
    .unwrap()
    .expect("the primary decided");
    assert!(decided.is_commit());
    // The unreachable participant resolves from that decision when it is back.
    block_on(s.part(gone).resolve(TxnId([9; 16]), decided)).unwrap();
    assert_eq!((s.balance(&a), s.balance(&b)), (70, 30));
}
