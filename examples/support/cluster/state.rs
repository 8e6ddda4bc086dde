//! The example's state machine: the list of applied commands.
//!
//! It runs inside `hologram-consensus`'s
//! [`ReplicatedStateMachine`](hologram::consensus::ReplicatedStateMachine),
//! which feeds it the decided batches in height order, each command once
//! (a command two decided batches carry is applied at its first height and
//! skipped after), and chains the chapter's transition receipts (SPEC §6):
//! two replicas agree iff their chains have the same length and head.
//!
//! Applying a command appends it; the output is its position. The state's
//! receipt is `Receipt::from_bytes(digest)`, where the digest is the head of a
//! receipt chain over the commands' receipts, kept up to date by `apply` (so
//! equal lists give equal receipts, in constant time).

use hologram::consensus::{Command, StateMachine};
use hologram::receipt::{ChainHead, Receipt};
use serde::{Deserialize, Serialize};

/// Where an applied command sits: what a node acknowledges to its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The height that decided it.
    pub height: u64,
    /// Its position in the list of applied commands.
    pub position: u64,
}

/// The applied commands, in order.
#[derive(Debug, Clone, Default)]
pub struct CommandList {
    commands: Vec<Command>,
    digest: ChainHead,
}

impl StateMachine for CommandList {
    /// The command's position.
    type Output = u64;

    fn apply(&mut self, command: &Command) -> u64 {
        self.digest = self.digest.next(&Receipt::from_bytes(command.bytes()));
        self.commands.push(command.clone());
        self.commands.len() as u64 - 1
    }

    fn state_receipt(&self) -> Receipt {
        Receipt::from_bytes(self.digest.as_bytes())
    }
}

impl CommandList {
    /// The empty list: every replica's initial state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of commands applied.
    pub fn len(&self) -> u64 {
        self.commands.len() as u64
    }

    /// Whether nothing was applied.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The command at `position`.
    pub fn get(&self, position: u64) -> Option<&Command> {
        self.commands.get(usize::try_from(position).ok()?)
    }

    /// Positions `from..` that fit in a page: at most `max` commands and
    /// `max_bytes` of command bytes (at least one position if any remain).
    pub fn page(&self, from: u64, max: usize, max_bytes: usize) -> std::ops::Range<u64> {
        let start = usize::try_from(from).unwrap_or(usize::MAX);
        let mut bytes = 0;
        let count = self
            .commands
            .iter()
            .skip(start)
            .take(max)
            .enumerate()
            .take_while(|(i, c)| {
                bytes += c.bytes().len();
                *i == 0 || bytes <= max_bytes
            })
            .count();
        from..from + count as u64
    }
}
