//! Replicated state machines (the chapter's "State Machine Replication").

use crate::command::{Command, CommandId};
use crate::membership::Membership;
use crate::message::Decision;
use crate::session::{SessionLimits, SessionTable, Verdict};
use crate::snapshot::{Checkpoint, Snapshot};
use crate::ConsensusError;
use hologram_lattice::NodeId;
use hologram_receipt::{Receipt, ReceiptChain};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::VecDeque;

/// How many of the latest log entries a [`ReplicatedStateMachine`] keeps
/// in memory ([`ReplicatedStateMachine::log`]).
pub const LOG_WINDOW: usize = 4096;

/// A deterministic state machine.
pub trait StateMachine {
    /// What applying a command returns to its client. `Clone`: the session
    /// table keeps it to answer a retried command.
    type Output: Clone;

    /// Applies `command`. Must be deterministic: it may depend only on the
    /// current state and the command (no clock, randomness or I/O). A
    /// command the machine cannot use is still applied (it yields an output
    /// saying so): every replica must take the same transitions.
    fn apply(&mut self, command: &Command) -> Self::Output;

    /// Called before the commands of each decided height are applied,
    /// with that height (part of the log, so deterministic). Does nothing
    /// by default; a machine whose outputs name the height keeps it.
    fn begin_height(&mut self, height: u64) {
        let _ = height;
    }

    /// The receipt of the current state (typically
    /// `Receipt::from_bytes(canonical state bytes)`, or a cheaper digest
    /// kept up to date by `apply`). Equal states must give equal receipts.
    fn state_receipt(&self) -> Receipt;

    /// The machine's state as bytes, for a [`Snapshot`]. Equal states must
    /// give equal bytes: validators compare snapshots by address, so a
    /// snapshot with an unordered map in it would never be certified. A
    /// machine that cannot be snapshotted says why (then its replicas
    /// rebuild it by replaying the whole log, and must not be given a
    /// snapshot interval).
    fn snapshot(&self) -> Result<Vec<u8>, String>;

    /// Replaces the state with the one `bytes` (from
    /// [`snapshot`](Self::snapshot)) hold. On error the state must be
    /// left as it was.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String>;
}

/// One applied command in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEntry {
    /// The height whose batch carried the command.
    pub height: u64,
    /// The command's identity.
    pub command: CommandId,
    /// Its transition receipt (state before, command, state after).
    pub receipt: Receipt,
}

/// A command applied, with what the machine returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<O> {
    /// The log entry made for it.
    pub entry: LogEntry,
    /// The machine's output.
    pub output: O,
}

/// What became of one decided command ([`ReplicatedStateMachine::apply_decision`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<O> {
    /// Applied now.
    Applied(Applied<O>),
    /// Applied before (a retry): not applied again; the first output.
    Duplicate(O),
    /// Below its client's first unanswered sequence: not applied.
    Stale,
    /// Too far ahead of its client's first unanswered sequence: not applied.
    Refused,
}

/// The answer to one decided command: who asked, and its [`Outcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<O> {
    /// The command's client.
    pub client: NodeId,
    /// The command's sequence in the client's session.
    pub sequence: u64,
    /// The command's id.
    pub command: CommandId,
    /// What became of it.
    pub outcome: Outcome<O>,
}

impl<O> Answer<O> {
    /// The command applied now, if it was.
    pub fn applied(&self) -> Option<&Applied<O>> {
        match &self.outcome {
            Outcome::Applied(a) => Some(a),
            _ => None,
        }
    }

    /// The machine's output for the command: now or, for a duplicate, the
    /// first one.
    pub fn output(&self) -> Option<&O> {
        match &self.outcome {
            Outcome::Applied(a) => Some(&a.output),
            Outcome::Duplicate(o) => Some(o),
            Outcome::Stale | Outcome::Refused => None,
        }
    }
}

/// A state machine fed with decided batches.
///
/// A [`StateMachine`] is deterministic: the same commands applied in the same
/// order to the same initial state give the same outputs and the same state
/// receipt on every replica. A [`ReplicatedStateMachine`] feeds it the
/// decided batches of consensus in height order, each command at most once:
/// its [`SessionTable`] (limits in [`SessionLimits`], part of the machine's
/// definition) says of each command whether it is new, a duplicate (a
/// client's retry, or a command that two decided batches both carry —
/// possible when it was gossiped to two leaders), stale or refused, and
/// [`apply_decision`](ReplicatedStateMachine::apply_decision) answers every
/// command with its [`Outcome`].
///
/// Every applied command yields the chapter's *transition receipt*
/// (SPEC §6), `Receipt::from_transition(state before, command, state after)`,
/// where the command's receipt is `Receipt::from_bytes(command bytes)` and a
/// state's receipt is [`StateMachine::state_receipt`]. The transition
/// receipts form a [`ReceiptChain`]; two replicas agree iff their chains have
/// the same length and head ([`ReplicatedStateMachine::verify_replica`]).
///
/// Memory does not grow with the commands applied: the session table is
/// bounded by its limits, and only the latest [`LOG_WINDOW`] log entries are
/// kept (the receipt chain covers them all). A replica rebuilds its state,
/// session table included, by replaying its log from height 0, or by
/// [`restore`](Self::restore)-ing a [`Snapshot`] (which carries the session
/// table) and replaying the log after it.
///
/// Decisions are taken only with a commit certificate that verifies against
/// the validator set and names the batch's receipt
/// ([`Decision::verify`]), so a replica replaying its log from disk
/// ([`DurableLog`](crate::DurableLog)) or catching up from peers trusts no
/// single source.
#[derive(Clone)]
pub struct ReplicatedStateMachine<S: StateMachine> {
    state: S,
    membership: Membership,
    log: VecDeque<LogEntry>,
    receipt_chain: ReceiptChain,
    sessions: SessionTable<S::Output>,
    next_height: u64,
}

impl<S: StateMachine + core::fmt::Debug> core::fmt::Debug for ReplicatedStateMachine<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplicatedStateMachine")
            .field("state", &self.state)
            .field("next_height", &self.next_height)
            .field("applied", &self.applied_count())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl<S: StateMachine> ReplicatedStateMachine<S> {
    /// A replica of `state` (the initial state every replica starts from)
    /// that accepts decisions certified by the validators in force at their
    /// heights: a [`ValidatorSet`](crate::ValidatorSet) (the genesis set,
    /// with the default set-change delay) or a [`Membership`] (the same
    /// delay as the group's replicas: [`ReplicaConfig::set_change_delay`](crate::ReplicaConfig::set_change_delay)),
    /// with the default [`SessionLimits`].
    pub fn new(state: S, validators: impl Into<Membership>) -> Self {
        Self::with_limits(state, validators, SessionLimits::default())
    }

    /// [`new`](Self::new) with these session limits (every replica of the
    /// machine must use the same).
    pub fn with_limits(state: S, validators: impl Into<Membership>, limits: SessionLimits) -> Self {
        Self {
            state,
            membership: validators.into(),
            log: VecDeque::new(),
            receipt_chain: ReceiptChain::new(),
            sessions: SessionTable::new(limits),
            next_height: 0,
        }
    }

    /// Applies a decided height: it must be the next height, its commit
    /// certificate must verify against the set in force there (and its
    /// batch name that set, if it names one) and name the batch's receipt;
    /// a set change it carries is applied ([`Membership::apply`]). First the
    /// sessions idle too long expire; then each command, in order, gets its
    /// [`Answer`]: applied with its output, or a duplicate with the first
    /// output, or stale, or refused. On error nothing is applied.
    pub fn apply_decision(
        &mut self,
        decision: &Decision,
    ) -> Result<Vec<Answer<S::Output>>, ConsensusError> {
        if decision.height() != self.next_height {
            return Err(ConsensusError::Log(format!(
                "decision for height {} offered, height {} expected next",
                decision.height(),
                self.next_height
            )));
        }
        self.membership.verify(decision)?;
        self.membership.apply(decision)?;
        let height = self.next_height;
        self.next_height += 1;
        self.sessions.expire(height);
        self.state.begin_height(height);
        // The state's receipt after one command is the one before the next:
        // nothing else changes the state within a height, so each is made
        // once (a receipt costs an R96 digest).
        let mut state = self.state.state_receipt();
        let answers = decision
            .batch
            .commands()
            .iter()
            .map(|command| Answer {
                client: command.client(),
                sequence: command.sequence(),
                command: command.id(),
                outcome: match self.sessions.admit(height, command) {
                    Verdict::Apply => {
                        let (done, after) = self.apply_command(height, command, &state);
                        state = after;
                        self.sessions.answer(command, done.output.clone());
                        Outcome::Applied(done)
                    }
                    Verdict::Duplicate(first) => Outcome::Duplicate(first),
                    Verdict::Stale => Outcome::Stale,
                    Verdict::Refused => Outcome::Refused,
                },
            })
            .collect();
        Ok(answers)
    }

    /// Applies decided heights in order (see [`apply_decision`](Self::apply_decision)),
    /// stopping at the first that is refused.
    pub fn apply_all<'a>(
        &mut self,
        decisions: impl IntoIterator<Item = &'a Decision>,
    ) -> Result<Vec<Answer<S::Output>>, ConsensusError> {
        let mut applied = Vec::new();
        for d in decisions {
            applied.extend(self.apply_decision(d)?);
        }
        Ok(applied)
    }

    /// The chapter's `apply_command`: one command applied to the state
    /// whose receipt is `before`, its transition receipt appended to the
    /// log and chain; returns it with the state's receipt after.
    fn apply_command(
        &mut self,
        height: u64,
        command: &Command,
        before: &Receipt,
    ) -> (Applied<S::Output>, Receipt) {
        let id = command.id();
        let output = self.state.apply(command);
        let after = self.state.state_receipt();
        let receipt = Receipt::from_transition(before, &command.payload_receipt(), &after);
        self.receipt_chain.extend(&receipt);
        let entry = LogEntry {
            height,
            command: id,
            receipt,
        };
        if self.log.len() >= LOG_WINDOW {
            self.log.pop_front();
        }
        self.log.push_back(entry);
        (Applied { entry, output }, after)
    }

    /// Whether `other` is consistent with this replica: same chain length
    /// and head (SPEC §6).
    pub fn verify_replica(&self, other: &ReplicatedStateMachine<S>) -> bool {
        self.receipt_chain == other.receipt_chain
    }

    /// The state.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The receipt chain over every transition receipt.
    pub fn receipt_chain(&self) -> &ReceiptChain {
        &self.receipt_chain
    }

    /// The latest commands applied, in order: at most [`LOG_WINDOW`], the
    /// first of them at position [`log_start`](Self::log_start).
    pub fn log(&self) -> &VecDeque<LogEntry> {
        &self.log
    }

    /// The position (among all commands applied) of the first entry of
    /// [`log`](Self::log).
    pub fn log_start(&self) -> u64 {
        self.applied_count() - self.log.len() as u64
    }

    /// The number of commands applied (duplicates, stale and refused ones
    /// are not).
    pub fn applied_count(&self) -> u64 {
        // One transition receipt per applied command.
        self.receipt_chain.len()
    }

    /// The log entry of the command applied at `position`, if still in
    /// the window.
    pub fn entry(&self, position: u64) -> Option<&LogEntry> {
        let i = position.checked_sub(self.log_start())?;
        self.log.get(usize::try_from(i).ok()?)
    }

    /// The session table.
    pub fn sessions(&self) -> &SessionTable<S::Output> {
        &self.sessions
    }

    /// The next height to apply (the number of heights applied).
    pub fn next_height(&self) -> u64 {
        self.next_height
    }

    /// The validator sets from the next height on.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
}

impl<S: StateMachine> ReplicatedStateMachine<S>
where
    S::Output: Serialize + DeserializeOwned,
{
    /// The [`Snapshot`]'s canonical bytes of this replica now: the heights
    /// applied, the validator sets, the receipt chain, the
    /// session table and the machine's own bytes
    /// ([`StateMachine::snapshot`]).
    pub fn snapshot(&self) -> Result<Vec<u8>, ConsensusError> {
        let machine = self
            .state
            .snapshot()
            .map_err(|e| ConsensusError::SnapshotMalformed(format!("the machine: {e}")))?;
        Snapshot::encode_parts(
            self.next_height,
            &self.membership,
            self.receipt_chain,
            &self.sessions,
            &machine,
        )
    }

    /// Replaces this replica's state with the snapshot `bytes` hold; with
    /// `checkpoint`, the snapshot must be the one it names (its height
    /// and chain head; the caller checked its address). The snapshot must
    /// be of this replica's group (same genesis set and set-change delay)
    /// and session limits; its validator sets replace this replica's. Then
    /// the decisions from the snapshot's height on are applied as usual.
    /// On error nothing changes.
    pub fn restore(
        &mut self,
        bytes: &[u8],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), ConsensusError> {
        let snapshot = Snapshot::<S::Output>::decode(bytes, self.sessions.limits())?;
        let mismatch = |what: String| Err(ConsensusError::SnapshotMismatch(what));
        let (theirs, ours) = (&snapshot.membership, &self.membership);
        if (theirs.genesis(), theirs.delay()) != (ours.genesis(), ours.delay()) {
            return mismatch(
                "taken in another group (genesis validator set or set-change delay)".into(),
            );
        }
        if let Some(c) = checkpoint {
            if (c.height, c.chain_head) != (snapshot.height, snapshot.chain.head()) {
                return mismatch(format!(
                    "the checkpoint names height {} and chain head {}, the snapshot has {} and {}",
                    c.height,
                    c.chain_head,
                    snapshot.height,
                    snapshot.chain.head()
                ));
            }
        }
        self.state
            .restore(&snapshot.machine)
            .map_err(|e| ConsensusError::SnapshotMismatch(format!("the machine: {e}")))?;
        self.sessions = snapshot.sessions;
        self.membership = snapshot.membership;
        self.receipt_chain = snapshot.chain;
        self.next_height = snapshot.height;
        self.log.clear();
        Ok(())
    }
}
