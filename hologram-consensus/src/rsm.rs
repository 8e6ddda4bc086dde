//! Replicated state machines (the chapter's "State Machine Replication").

use crate::command::{Command, CommandId};
use crate::message::Decision;
use crate::{ConsensusError, ValidatorSet};
use hologram_receipt::{Receipt, ReceiptChain};
use std::collections::HashSet;

/// A deterministic state machine.
pub trait StateMachine {
    /// What applying a command returns to its client.
    type Output;

    /// Applies `command`. Must be deterministic: it may depend only on the
    /// current state and the command (no clock, randomness or I/O). A
    /// command the machine cannot use is still applied (it yields an output
    /// saying so): every replica must take the same transitions.
    fn apply(&mut self, command: &Command) -> Self::Output;

    /// The receipt of the current state (typically
    /// `Receipt::from_bytes(canonical state bytes)`, or a cheaper digest
    /// kept up to date by `apply`). Equal states must give equal receipts.
    fn state_receipt(&self) -> Receipt;
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

/// A state machine fed with decided batches.
///
/// A [`StateMachine`] is deterministic: the same commands applied in the same
/// order to the same initial state give the same outputs and the same state
/// receipt on every replica. A [`ReplicatedStateMachine`] feeds it the
/// decided batches of consensus in height order, each command once (a command
/// that two decided batches both carry — possible when it was gossiped to two
/// leaders — is applied at its first height and skipped after, by
/// [`CommandId`]).
///
/// Every applied command yields the chapter's *transition receipt*
/// (SPEC §6), `Receipt::from_transition(state before, command, state after)`,
/// where the command's receipt is `Receipt::from_bytes(command bytes)` and a
/// state's receipt is [`StateMachine::state_receipt`]. The transition
/// receipts form a [`ReceiptChain`]; two replicas agree iff their chains have
/// the same length and head ([`ReplicatedStateMachine::verify_replica`]).
///
/// The ids of applied commands are kept (32 bytes each) for the
/// exactly-once check; there is no snapshot or compaction yet, so a replica
/// rebuilds its state by replaying its log from height 0.
///
/// Decisions are taken only with a commit certificate that verifies against
/// the validator set and names the batch's receipt
/// ([`Decision::verify`]), so a replica replaying its log from disk
/// ([`DurableLog`](crate::DurableLog)) or catching up from peers trusts no
/// single source.
#[derive(Debug, Clone)]
pub struct ReplicatedStateMachine<S> {
    state: S,
    validators: ValidatorSet,
    log: Vec<LogEntry>,
    receipt_chain: ReceiptChain,
    applied: HashSet<CommandId>,
    next_height: u64,
}

impl<S: StateMachine> ReplicatedStateMachine<S> {
    /// A replica of `state` (the initial state every replica starts from)
    /// that accepts decisions certified by `validators`.
    pub fn new(state: S, validators: ValidatorSet) -> Self {
        Self {
            state,
            validators,
            log: Vec::new(),
            receipt_chain: ReceiptChain::new(),
            applied: HashSet::new(),
            next_height: 0,
        }
    }

    /// Applies a decided height: it must be the next height, its commit
    /// certificate must verify and name the batch's receipt. Returns each
    /// command applied with its output (commands applied at an earlier
    /// height are skipped). On error nothing is applied.
    pub fn apply_decision(
        &mut self,
        decision: &Decision,
    ) -> Result<Vec<Applied<S::Output>>, ConsensusError> {
        if decision.height() != self.next_height {
            return Err(ConsensusError::Log(format!(
                "decision for height {} offered, height {} expected next",
                decision.height(),
                self.next_height
            )));
        }
        decision.verify(&self.validators)?;
        let height = self.next_height;
        self.next_height += 1;
        let mut applied = Vec::with_capacity(decision.batch.len());
        for command in decision.batch.commands() {
            if let Some(done) = self.apply_command(height, command) {
                applied.push(done);
            }
        }
        Ok(applied)
    }

    /// Applies decided heights in order (see [`apply_decision`](Self::apply_decision)),
    /// stopping at the first that is refused.
    pub fn apply_all<'a>(
        &mut self,
        decisions: impl IntoIterator<Item = &'a Decision>,
    ) -> Result<Vec<Applied<S::Output>>, ConsensusError> {
        let mut applied = Vec::new();
        for d in decisions {
            applied.extend(self.apply_decision(d)?);
        }
        Ok(applied)
    }

    /// The chapter's `apply_command`: one command, its transition receipt
    /// appended to the log and chain. `None` if it was applied before.
    fn apply_command(&mut self, height: u64, command: &Command) -> Option<Applied<S::Output>> {
        let id = command.id();
        if !self.applied.insert(id) {
            return None;
        }
        let before = self.state.state_receipt();
        let output = self.state.apply(command);
        let after = self.state.state_receipt();
        let receipt =
            Receipt::from_transition(&before, &Receipt::from_bytes(command.bytes()), &after);
        self.receipt_chain.extend(&receipt);
        let entry = LogEntry {
            height,
            command: id,
            receipt,
        };
        self.log.push(entry);
        Some(Applied { entry, output })
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

    /// Every command applied, in order.
    pub fn log(&self) -> &[LogEntry] {
        &self.log
    }

    /// The next height to apply (the number of heights applied).
    pub fn next_height(&self) -> u64 {
        self.next_height
    }

    /// Whether the command was applied.
    pub fn was_applied(&self, id: &CommandId) -> bool {
        self.applied.contains(id)
    }
}
