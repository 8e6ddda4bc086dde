//! # hologram-txn
//!
//! Atomic updates across participants and shards: the chapter's
//! `DistributedTransaction` (two-phase commit with receipts), its
//! `ReceiptSharding`, and the load balancing of its exercise 5. Built on
//! `hologram-lattice` (the simulator, node ids), `hologram-receipt`
//! (receipts, composition, signatures) and `hologram-cam` (the [`Store`]
//! seam, where participants keep what must survive a crash).
//!
//! [`Store`]: hologram_cam::Store
//!
//! - **Two-phase commit with receipts.** Each participant returns a prepare
//!   receipt signed for `Purpose::Prepare`; the commit receipt is their
//!   order-independent composition (`Receipt::compose_all`, SPEC §6); every
//!   participant that commits returns a receipt equal to it, signed for
//!   `Purpose::Commit`. One participant, the **primary**, decides and keeps
//!   the decision durable (Percolator's primary record): the coordinator is
//!   stateless, its crash blocks nobody, and a prepared participant resolves
//!   by asking the primary, which aborts what it never prepared or what stays
//!   undecided too long. See [`ParticipantCore`] and [`CoordinatorCore`].
//! - **Isolation.** Written keys are locked from prepare to commit or abort,
//!   no-wait: the loser gets a retryable [`TxnError::Conflict`] and nothing
//!   ever waits, so no deadlock.
//! - **One phase** for a single participant.
//! - **Sharding.** Keys are placed by `Receipt::from_bytes(key).r96.as_u64()`
//!   over ranges of the u64 space ([`ShardMap`], SPEC §8); a versioned map,
//!   ownership checked per key so a stale route is refused and retried;
//!   [`ReceiptSharding`] splits a shard above 1.2× the target load at a
//!   sampled median, and only its keys move.
//! - **Load balancing** ([`LoadBalancer`]): access counts per object and node
//!   from receipts, migrations with hysteresis and cooldown, readable
//!   throughout.
//!
//! - **Moving keys** ([`Transfer`]): splits and migrations hand keys from
//!   their old owner to the new one in signed transfers, durable at the
//!   target before the source forgets them, idempotent on replay; the
//!   simulated bank workload splits and migrates shards while it runs.
//!
//! - **Over a network** ([`ParticipantDriver`]): a [`ParticipantDriver`] and a
//!   [`CoordinatorDriver`] run the cores over any `Transport`, durable writes
//!   before sends, recovery timers included.
//!
//! - **Replicated shards** ([`ReplicatedParticipant`]): a shard run by a group of
//!   `3f + 1` validators is one participant: every 2PC step is a command
//!   ordered by the group's consensus (each member a consensus replica)
//!   and applied by each member's [`ShardMachine`]; an answer counts only when `f + 1` members endorse it,
//!   so the primary's decision record lives in a replicated log. A group
//!   holds no shared key: its id is the hash of its members, and its
//!   receipts carry a [`GroupProof`] of `f + 1` member signatures, checked
//!   by anyone like a single signature. Groups and single-replica shards mix
//!   in one transaction.
//!
//! - **Over a network, request/response** ([`RemoteParticipant`]): a
//!   [`RemoteParticipant`] asks a participant on another node, which a
//!   [`ParticipantService`] serves (a single-replica shard or a
//!   [`ReplicatedParticipant`]).
//!
//! Not built yet: group members on other nodes than their participant's,
//! log compaction for a group's members, hand-offs of keys to or from a group, and garbage collection
//! of decision records. ([`LoadBalancer`] migrations are driven by a read
//! workload over a faulty network in the facade's `tests/load_balancing.rs`;
//! the bank simulation moves whole shards.)
//!
//! ## How the seams are held
//!
//! - **`Participant`**: [`DistributedTransaction<'a, P>`](DistributedTransaction)
//!   is generic over its participants' type: participants of one kind are
//!   given as they are (`&LocalParticipant<S>`, `&RemoteParticipant`), a
//!   transaction mixing kinds gives each as a `&dyn Participant` (the
//!   default `P`). `Arc<T>` of any participant is one.
//! - **`Store`**: [`LocalParticipant<S>`](LocalParticipant) is generic over
//!   `S: Store + ?Sized` (a concrete store or `dyn Store`); the drivers erase
//!   theirs to `Arc<dyn Store>`. The caller passes its `Arc<MyStore>` as it is.
//! - **`Transport`**: held as `Arc<dyn Transport>` ([`RemoteParticipant`],
//!   a group's members, the drivers); an `Arc<MyTransport>` coerces.
//!   Inbound, [`TxnHandler`] and [`ParticipantService`] are `Service`s
//!   mounted on the node's `ProtocolMux`.
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | `types` | [`TxnId`], [`Key`] and its placement, [`Op`] and its canonical bytes |
//! | `receipts` | [`PrepareRequest`], prepare / commit / abort receipts, [`SignedReceipt`] and its [`Proof`] (a node's signature or a [`Group`]'s), the primary's [`Decision`] |
//! | `participant` | [`ParticipantCore`]: locks ([`LockTable`]), prepare, decide, resolve, recovery; its durable [`ParticipantRecord`]s |
//! | `coordinator` | [`CoordinatorCore`]: phases, retries, receipt checks |
//! | `transaction` | the async [`Participant`] seam, [`LocalParticipant`], [`DistributedTransaction`] |
//! | `node` | the cores as nodes, for the simulator and the driver alike ([`TxnNode`]) |
//! | `driver` | the cores over a `Transport`: [`ParticipantDriver`], [`CoordinatorDriver`], [`TxnClient`], [`TxnHandler`] |
//! | `remote` | a participant over a `Transport`, request/response: [`RemoteParticipant`], [`ParticipantService`] |
//! | `effects` | [`Effects`] and [`Persist`]: what a core asks its driver to do |
//! | `sharding` | [`ShardMap`]: ranges, versions, routing, splits |
//! | `rebalance` | [`ReceiptSharding`]: load statistics and `rebalance_shards` |
//! | `balance` | [`LoadBalancer`]: access-driven migrations (exercise 5) |
//! | `replicated` | shards as replicated groups: [`ShardMachine`], [`ReplicatedParticipant`], [`settle`]; members as consensus replicas: [`GroupMember`] |
//! | `handoff` | [`Transfer`], [`HandOffAck`]: crash-safe moves of keys between participants |
//! | `wire` | [`TxnMessage`], [`Refusal`], bounded decoding |
//! | `error` | [`TxnError`] |
//!
//! ## Example
//!
//! ```
//! use futures::executor::block_on;
//! use hologram_cam::MemoryStore;
//! use hologram_receipt::KeyPair;
//! use hologram_txn::{
//!     DistributedTransaction, Key, LocalParticipant, Op, Participant, ParticipantConfig,
//!     ParticipantCore, ShardMap, TxnId,
//! };
//! use std::sync::Arc;
//!
//! // Two single-replica shards.
//! let keys = [KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32])];
//! let map = ShardMap::even(&[keys[0].node_id(), keys[1].node_id()]);
//! let shards: Vec<LocalParticipant<MemoryStore>> = keys
//!     .iter()
//!     .map(|k| {
//!         let core = ParticipantCore::new(k.clone(), ParticipantConfig::default(), map.clone())?;
//!         Ok(LocalParticipant::new(core, Arc::new(MemoryStore::new())))
//!     })
//!     .collect::<Result<_, hologram_txn::TxnError>>()?;
//! let shard = |k: &Key| shards.iter().find(|s| Some(s.id()) == map.node_of(k)).unwrap();
//!
//! let (alice, bob) = (Key::new(b"alice".to_vec())?, Key::new(b"bob".to_vec())?);
//! block_on(shard(&alice).with_core(|c| c.load(alice.clone(), 100i64.to_le_bytes().to_vec())))??;
//!
//! // Move 30 from alice to bob, atomically, wherever they live.
//! let writes = [
//!     (shard(&alice), vec![Op::Add { key: alice.clone(), delta: -30 }]),
//!     (shard(&bob), vec![Op::Add { key: bob.clone(), delta: 30 }]),
//! ];
//! let receipt = block_on(DistributedTransaction::new(TxnId([7; 16]), map.version(), writes).execute())?;
//! assert!(receipt.phi_roundtrip);
//! let balance = |k: &Key| block_on(shard(k).with_core(|c| c.value(k).map(<[u8]>::to_vec)));
//! assert_eq!(balance(&bob)?, Some(30i64.to_le_bytes().to_vec()));
//!
//! // Overdrawing is refused everywhere and leaves nothing behind.
//! let writes = [
//!     (shard(&alice), vec![Op::Add { key: alice.clone(), delta: -71 }]),
//!     (shard(&bob), vec![Op::Add { key: bob.clone(), delta: 71 }]),
//! ];
//! assert!(block_on(DistributedTransaction::new(TxnId([8; 16]), map.version(), writes).execute()).is_err());
//! assert_eq!(balance(&alice)?, Some(70i64.to_le_bytes().to_vec()));
//! # Ok::<(), hologram_txn::TxnError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod balance;
mod coordinator;
mod driver;
mod effects;
mod error;
mod handoff;
mod node;
mod participant;
mod rebalance;
mod receipts;
mod remote;
mod replicated;
mod sharding;
mod telemetry;
mod transaction;
mod types;
mod wire;

mod protocols;
pub use balance::{BalancerConfig, LoadBalancer, Migration, MovePhase};
pub use coordinator::{CoordinatorConfig, CoordinatorCore, CoordinatorTimer, TxnResult};
pub use driver::{
    inbox, CoordinatorDriver, Inbox, ParticipantDriver, StopHandle, TxnClient, TxnHandler,
};
pub use effects::{Effects, Persist};
pub use error::TxnError;
pub use handoff::{
    HandOffAck, HandedOff, Transfer, HANDOFF_ACK_TAG, HANDOFF_TAG, MAX_HANDOFF_ENTRIES,
};
pub use node::{Begin, CoordinatorNode, ParticipantNode, TxnNode, TxnTimer};
pub use participant::records::{
    load_records, Record as ParticipantRecord, MAX_RECORD_LEN, RECORD_TAG, SCAN_PAGE,
};
pub use participant::{
    LockTable, ParticipantConfig, ParticipantCore, ParticipantTimer, Prework, Signer,
};
pub use protocols::{TXN_CALL_PROTOCOL, TXN_PROTOCOL};
pub use rebalance::{ReceiptSharding, ShardLoad, ShardingConfig, Split};
pub use receipts::{
    abort_receipt, check_certificate, check_certificate_with, check_prepares, commit_receipt,
    group_id, Decision, Group, GroupProof, PrepareRequest, Proof, SignedReceipt, ABORT_TAG,
    GROUP_ID_TAG, MAX_GROUP, PREPARE_TAG,
};
pub use remote::{ParticipantService, RemoteParticipant, CALL_ATTEMPTS};
pub use replicated::{
    group_claims, settle, Endorsement, GroupMember, Member, MemberRun, MemberSetup,
    ReplicatedParticipant, ShardMachine, DEFAULT_CALL_TIMEOUT, DEFAULT_PATIENCE, DEFAULT_WAIT,
    ENDORSEMENT_TAG, MAX_OUTPUTS, MAX_WAITING,
};
pub use sharding::{ShardId, ShardMap, MAX_SHARDS};
pub use telemetry::METRICS;
pub use transaction::{
    call, DistributedTransaction, LocalParticipant, Participant, MAX_IDLE_ROUNDS,
};
pub use types::{counter, Key, Op, TxnId, MAX_KEY_LEN, MAX_OPS, MAX_PARTICIPANTS, MAX_VALUE_LEN};
pub use wire::{Refusal, TxnMessage, MAX_MESSAGE_LEN, MAX_REASON_LEN};
