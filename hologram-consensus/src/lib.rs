//! # hologram-consensus
//!
//! Byzantine-fault-tolerant consensus on receipts for the hologram crates:
//! the chapter's "Consensus via Receipts" built as Tendermint (propose,
//! prevote, precommit; lock on a polka; round change on timeout; leaders
//! rotate as `validators[(height + round) mod n]`), safe with up to `f`
//! Byzantine validators out of `n ≥ 3f + 1`. Votes are signed receipts of
//! the proposed batch; a quorum (`2f + 1`) of matching precommits is a
//! [`Certificate`] anyone holding the [`ValidatorSet`] verifies. The
//! [`ByzantineDetector`] runs the chapter's checks on every vote and turns
//! equivocation into an [`EquivocationProof`]. Heights are pipelined
//! (`max_pipeline_depth`), decisions delivered in height order.
//!
//! The replica is a deterministic core without I/O ([`Replica`]); the
//! simulator of `hologram-lattice` runs it as a [`SimReplica`], and
//! [`ReplicaDriver`] runs it over a `Transport`; given a [`DurableLog`]
//! ([`ReplicaDriver::with_log`]) it writes its decisions and voting record
//! to a `hologram_cam::Store` before it sends anything, and a restarted
//! node recovers from there ([`Recovered::replica`]). Decided batches feed a [`ReplicatedStateMachine`]: a
//! deterministic [`StateMachine`] applied in height order, each client's
//! (client, sequence) at most once through a bounded [`SessionTable`]
//! (Raft's client sessions: a client numbers its commands with a
//! [`ClientSession`] and retries the same signed command, which is answered
//! with its first output), every transition receipt chained, replicas
//! compared by chain head.
//!
//! ## Snapshots, compaction and state sync
//!
//! A node running its machine ([`SimReplica::with_machine`]) snapshots it
//! every [`SnapshotConfig::interval`] heights: the [`Snapshot`] (machine
//! bytes, session table, receipt chain, validator-set fingerprint) is cut
//! into CAM objects ([`SnapshotParts`]) and its address, with the height and
//! chain head, is a [`Checkpoint`] that the next leader puts in the batch it
//! proposes. Validators prevote such a batch only if their own machines
//! computed the same checkpoint, so its commit certificate certifies the
//! snapshot. Once certified, the log below it is deleted, and a node asking
//! for heights below is offered the snapshot instead: it fetches the parts
//! from any validator, each verified by address (a lying peer is blamed and
//! skipped), restores, and replays the certified tail through the usual
//! catch-up. See [`Checkpoint`] and the `snapshots` module of the replica.
//!
//! ## Reconfiguration
//!
//! The validators change without stopping the group, with CometBFT's
//! semantics: a [`SetChange`] (add, remove or replace a validator, approved
//! by a quorum of the set it changes) travels in a decided batch, is
//! applied when that height `H` is delivered, and the set it makes is in
//! force from height `H + set_change_delay`
//! ([`ReplicaConfig::set_change_delay`], at least the pipeline depth, so
//! every height is proposed, voted and certified under a set every honest
//! replica already knows). Leaders name the set in every batch they
//! propose, so each certificate says which set made it; a certificate is
//! checked only against the set in force at its height
//! ([`ConsensusError::UnknownValidatorSet`] otherwise), so an old set's
//! quorum cannot certify after the change and a removed validator's votes
//! are not counted. [`Membership`] holds the sets, travels in snapshots
//! and durable logs, and checks a chain of changes as a light client
//! would ([`Membership::verify_chain`]). A node asks its replica to propose
//! a change with [`Replica::propose_set_change`].
//!
//! [`ReceiptConsensus`] is the chapter's entry point in request/response
//! form: a proposer asks [`Validator`]s (in this process or over a
//! `Transport`) for signed prevotes and precommits on a batch's receipt and
//! commits on `2f + 1`, reporting `Committed(receipt)`, `InsufficientVotes`
//! or `Failed`. It is the same protocol as the replica's — same slots,
//! signatures, locks and certificates — so its decisions feed the same
//! state machines and logs.
//!
//! ## Partitions (the chapter's exercise 4)
//!
//! Only a side holding a quorum (`⌊2n/3⌋ + 1` validators) can gather a
//! commit certificate, so at most one side commits, and any two quorums
//! share an honest validator, so no height ever gets two values. A minority
//! side keeps changing rounds but decides nothing. When the partition heals,
//! a replica that sees a message from a height beyond its window asks for
//! the decided heights and accepts each only with a commit certificate that
//! verifies against the validator set (no single peer is trusted); laggards
//! are also pushed the decision of any height they still vote in. Every
//! replica therefore converges on the one certified chain, and nothing
//! committed is lost or changed. A command a client submitted with gossip
//! stays in the accepting replica's durable record and mempool (surviving a
//! crash) and is re-gossiped every `resend_ms` until some decided batch
//! contains it: commands accepted on a minority side are committed after
//! the heal, in the order of the heights that take them. A command is
//! rejected with a reason only when the mempool is full
//! ([`ConsensusError::MempoolFull`]), it is over size, or its client's
//! signature fails ([`ConsensusError::BadCommand`]: see [`Command`]). Applied to a
//! [`ReplicatedStateMachine`], the converged logs give every replica the same
//! receipt chain (`verify_replica`); a replica restarted after the heal
//! rebuilds its log from its [`DurableLog`], verifying each certificate, and
//! fetches the rest from peers. The simulated test `consensus_partition`
//! checks all of this for 2|2 and 1|3 cuts (the safety invariants after
//! every step, convergence after the heal).
//!
//! ## How the seams are held
//!
//! - **`Validator`**: a proposer is generic over `V: Validator`
//!   ([`ReceiptConsensus<V>`](ReceiptConsensus)); `Arc<T>` of any validator
//!   is one, so a list of one kind is given as it is
//!   (`Vec<RemoteValidator>`, `Vec<Arc<LocalValidator>>`) and a list mixing
//!   kinds is a `Vec<Arc<dyn Validator>>`.
//! - **`Transport`**: held as `Arc<dyn Transport>` ([`ReplicaDriver`],
//!   [`RemoteValidator`], the broadcast driver); an `Arc<MyTransport>`
//!   coerces. Inbound, each face is a `Service` mounted on the node's
//!   `ProtocolMux`: [`ConsensusHandler`] (replicas, `crate::CONSENSUS_PROTOCOL`),
//!   [`ValidatorHandler`] (`crate::VALIDATOR_PROTOCOL`), the broadcast handler.
//! - **`Store`**: [`DurableLog::open`] takes `Arc<dyn Store>` (the log lives
//!   inside [`LocalValidator`] and [`ReplicaDriver`], which carry no store
//!   parameter); an `Arc<MyStore>` coerces.
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | `command` (private) | [`Command`]: a client's signed, numbered payload, its id and verification |
//! | `batch_proof` | [`BatchProof`]: one signature for many commands (a Merkle path from a command's id to the root its client signed) |
//! | `client_session` | [`ClientSession`]: a client numbers its commands (alone or signed together) and claims its answers |
//! | `batch` | [`Batch`] and its canonical bytes and receipt |
//! | `vote` | [`Vote`], [`SignedHeader`], their canonical bytes and signatures |
//! | `certificate` | [`Certificate`]: a quorum of signatures, verifiable by anyone |
//! | `validators` | [`ValidatorSet`]: quorum, `f`, leader rotation |
//! | `membership` | reconfiguration: [`Membership`] (the set in force at each height), [`SetChange`], the light-client chain check |
//! | `message` | [`ConsensusMessage`], [`Proposal`], [`Decision`], bounded decoding |
//! | `replica` | the Tendermint core: [`Replica`], its config, timers and outputs |
//! | `detector` | [`ByzantineDetector`], [`EquivocationProof`], anomaly scoring |
//! | `driver` | [`ReplicaDriver`]: runs a replica over a `Transport`, persisting first |
//! | `persist` | [`DurableLog`]: blocks and voting record in a `Store`, verified recovery |
//! | `validator` | the [`Validator`] seam: [`LocalValidator`], [`RemoteValidator`] over a `Transport` |
//! | `receipt_consensus` | [`ReceiptConsensus`]: the chapter's three phases driven through validators |
//! | `rsm` | [`StateMachine`], [`ReplicatedStateMachine`]: transition receipts, `verify_replica`, an [`Answer`] per command |
//! | `session` | [`SessionTable`]: per client, the answers kept for exactly-once, bounded and expired by height |
//! | `sim` | [`SimReplica`]: a replica as a node of the simulator or of the driver, optionally running a machine ([`SimReplica::with_machine`]) |
//! | `snapshot` | [`Snapshot`] and its canonical bytes, [`Checkpoint`] (a snapshot named by a decided batch), [`SnapshotParts`] (chunks in the CAM), [`Executor`] |
//! | `error` | [`ConsensusError`] |
//! | [`broadcast`] | `LatticeProtocol`, authenticated epidemic broadcast with delivery certificates |
//!
//! ## Example
//!
//! Four validators decide a command in the deterministic simulator:
//!
//! ```
//! use hologram_consensus::{ClientSession, ReplicaConfig, SimReplica, ValidatorSet};
//! use hologram_lattice::sim::{Faults, Simulation};
//! use hologram_receipt::KeyPair;
//!
//! let keys: Vec<KeyPair> = (1..=4u8).map(|i| KeyPair::from_seed([i; 32])).collect();
//! let set = ValidatorSet::new(keys.iter().map(KeyPair::node_id).collect())?;
//! let nodes = keys.iter().map(|k| {
//!     let replica = SimReplica::new(k.clone(), ReplicaConfig::new(set.clone())).unwrap();
//!     (k.node_id(), replica)
//! });
//! let mut sim = Simulation::new(7, Faults::NONE, nodes);
//! // A client signs its commands and numbers them in its session.
//! let mut client = ClientSession::new(KeyPair::from_seed([9; 32]));
//! let command = client.command(b"set x = 1".to_vec())?;
//! sim.with_node(keys[0].node_id(), |node, ctx| node.submit(ctx, vec![command.clone()], true));
//! sim.run_until(2_000).unwrap();
//! for (_, node, _) in sim.nodes() {
//!     let decided = &node.log()[0];
//!     assert_eq!(decided.batch.commands(), &[command.clone()]);
//!     decided.certificate.verify(&set)?; // 2f + 1 valid signatures
//! }
//! # Ok::<(), hologram_consensus::ConsensusError>(())
//! ```
//!
//! A replicated state machine applies what was decided; replicas that
//! applied the same decisions have the same receipt chain:
//!
//! ```
//! use hologram_consensus::{
//!     ClientSession, Command, ReplicaConfig, ReplicatedStateMachine, SimReplica, StateMachine,
//!     ValidatorSet,
//! };
//! use hologram_lattice::sim::{Faults, Simulation};
//! use hologram_receipt::{KeyPair, Receipt};
//!
//! /// A counter: every command adds its length.
//! #[derive(Default)]
//! struct Counter(u64);
//! impl StateMachine for Counter {
//!     type Output = u64;
//!     fn apply(&mut self, command: &Command) -> u64 {
//!         self.0 += command.bytes().len() as u64;
//!         self.0
//!     }
//!     fn state_receipt(&self) -> Receipt {
//!         Receipt::from_bytes(&self.0.to_le_bytes())
//!     }
//!     fn snapshot(&self) -> Result<Vec<u8>, String> {
//!         Ok(self.0.to_le_bytes().to_vec())
//!     }
//!     fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
//!         self.0 = u64::from_le_bytes(bytes.try_into().map_err(|_| "not 8 bytes")?);
//!         Ok(())
//!     }
//! }
//!
//! let keys: Vec<KeyPair> = (1..=4u8).map(|i| KeyPair::from_seed([i; 32])).collect();
//! let set = ValidatorSet::new(keys.iter().map(KeyPair::node_id).collect())?;
//! let nodes = keys.iter().map(|k| {
//!     let replica = SimReplica::new(k.clone(), ReplicaConfig::new(set.clone())).unwrap();
//!     (k.node_id(), replica)
//! });
//! let mut sim = Simulation::new(3, Faults::NONE, nodes);
//! let mut client = ClientSession::new(KeyPair::from_seed([9; 32]));
//! // Two commands under one signature (each still applied on its own).
//! let commands = client.commands([b"abc".to_vec(), b"de".to_vec()])?;
//! sim.with_node(keys[0].node_id(), |node, ctx| node.submit(ctx, commands.clone(), true));
//! sim.run_until(2_000).unwrap();
//! let machines: Vec<ReplicatedStateMachine<Counter>> = sim
//!     .nodes()
//!     .map(|(_, node, _)| {
//!         let mut rsm = ReplicatedStateMachine::new(Counter::default(), set.clone());
//!         rsm.apply_all(node.log()).unwrap(); // each certificate is checked
//!         rsm
//!     })
//!     .collect();
//! assert!(machines.iter().all(|m| m.state().0 == 5));
//! assert!(machines.iter().all(|m| m.verify_replica(&machines[0])));
//! # Ok::<(), hologram_consensus::ConsensusError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod batch;
mod batch_proof;
pub mod broadcast;
mod certificate;
mod client_session;
mod codec;
mod command;
mod detector;
mod driver;
mod error;
mod membership;
mod message;
mod persist;
mod receipt_consensus;
mod replica;
mod rsm;
mod session;
mod sim;
mod snapshot;
mod telemetry;
mod validator;
mod validators;
mod vote;

mod protocols;
pub use batch::{Batch, MAX_BATCH_BYTES, MAX_BATCH_COMMANDS};
pub use batch_proof::{BatchProof, MAX_SIGNED_BATCH};
pub use broadcast::delivery::DeliveryCertificate;
pub use broadcast::protocol::{BroadcastResult, LatticeProtocol};
pub use certificate::Certificate;
pub use client_session::ClientSession;
pub use command::{verify_commands, Command, CommandId, MAX_COMMAND_BYTES};
pub use detector::{
    AnomalyScorer, ByzantineDetector, DissentScorer, EquivocationProof, Misbehaviour, Offence,
    ProposalEquivocation, VoterStats, MAX_PROOFS,
};
pub use driver::{inbox, ConsensusHandler, DriverHandle, Inbox, ReplicaDriver, Submit};
pub use error::ConsensusError;
pub use membership::{
    Membership, SetChange, SetOp, DEFAULT_SET_CHANGE_DELAY, MAX_SET_CHANGE_DELAY,
    MAX_SET_CHANGE_LINKS,
};
pub use message::{ConsensusMessage, Decision, Proposal, MAX_MESSAGE_BYTES};
pub use persist::{DurableLog, Recovered, Replay, MAX_RECORD_BYTES};
pub use protocols::{BROADCAST_PROTOCOL, CONSENSUS_PROTOCOL, VALIDATOR_PROTOCOL};
pub use receipt_consensus::{ConsensusResult, ReceiptConsensus};
pub use replica::{
    HeightRecord, Lock, LogRead, Outgoing, Outputs, Replica, ReplicaConfig, Restore, SnapshotRead,
    Timeouts, Timer, VoteChecks, VotingRecord, DEFAULT_RETAIN_DECISION_BYTES,
    DEFAULT_SYNC_BYTES_PER_INTERVAL, MAX_PENDING_SET_CHANGES,
};
pub use rsm::{
    Answer, Applied, LogEntry, Outcome, ReplicatedStateMachine, StateMachine, LOG_WINDOW,
};
pub use session::{Lookup, SessionLimits, SessionTable, Verdict};
pub use sim::SimReplica;
pub use snapshot::{
    Checkpoint, Executor, Snapshot, SnapshotConfig, SnapshotParts, CHECKPOINT_CANONICAL_LEN,
    MAX_SNAPSHOT_PART_BYTES,
};
pub use telemetry::METRICS;
pub use validator::{
    Decisions, HeightStatus, LocalValidator, RemoteValidator, Validator, ValidatorHandler,
    ValidatorRequest, ValidatorResponse,
};
pub use validators::{ValidatorSet, MAX_VALIDATORS};
pub use vote::{
    proposal_canonical_bytes, vote_canonical_bytes, SignedHeader, Slot, Vote, VoteKind,
    PROPOSAL_CANONICAL_LEN, VOTE_CANONICAL_LEN,
};
