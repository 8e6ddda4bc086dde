//! The replicated state machine of the example: the log of applied commands.
//!
//! Consensus orders batches; this applies them. Applying is deterministic:
//! decisions in height order, the commands of a batch in their order, and a
//! command whose id was applied before is skipped (consensus may order the
//! same command twice: two pipelined heights can both carry it, or a
//! restarted replica re-proposes what it forgot was decided). So every
//! replica that applied the same decisions holds the same sequence, each
//! command once, and the same [`ReceiptChain`] over the commands'
//! receipts (`Receipt::from_bytes(command)`, SPEC §6): two replicas agree
//! iff their chains have the same length and head.

use hologram::consensus::{Command, CommandId, Decision};
use hologram::receipt::{ChainHead, Receipt, ReceiptChain};
use std::collections::HashMap;

/// Where an applied command sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    /// The height that decided it.
    pub height: u64,
    /// Its index in the log of applied commands.
    pub position: u64,
}

/// The applied commands, in order, each once.
#[derive(Debug, Default)]
pub struct CommandLog {
    commands: Vec<Command>,
    applied: HashMap<CommandId, Applied>,
    chain: ReceiptChain,
    heights: u64,
    skipped: u64,
}

impl CommandLog {
    /// The empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies the next decision (the caller hands them in height order);
    /// returns the ids it applied, with where.
    pub fn apply(&mut self, decision: &Decision) -> Vec<(CommandId, Applied)> {
        let height = decision.height();
        let mut fresh = Vec::new();
        for command in decision.batch.commands() {
            let id = command.id();
            if self.applied.contains_key(&id) {
                self.skipped += 1;
                continue;
            }
            let at = Applied {
                height,
                position: self.commands.len() as u64,
            };
            self.chain.extend(&Receipt::from_bytes(command.bytes()));
            self.commands.push(command.clone());
            self.applied.insert(id, at);
            fresh.push((id, at));
        }
        self.heights = height + 1;
        fresh
    }

    /// Where command `id` was applied, if it was.
    pub fn get(&self, id: &CommandId) -> Option<Applied> {
        self.applied.get(id).copied()
    }

    /// The number of heights applied.
    pub fn heights(&self) -> u64 {
        self.heights
    }

    /// The number of commands applied.
    pub fn len(&self) -> u64 {
        self.commands.len() as u64
    }

    /// Whether nothing was applied.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// How many repeated commands were skipped.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The head of the chain over the applied commands' receipts.
    pub fn head(&self) -> ChainHead {
        self.chain.head()
    }

    /// The chain over the applied commands' receipts.
    pub fn chain(&self) -> ReceiptChain {
        self.chain
    }

    /// Applied commands from position `from` on, at most `max` of them and
    /// at most `max_bytes` of command bytes (at least one if any remain).
    pub fn page(&self, from: u64, max: usize, max_bytes: usize) -> Vec<Command> {
        let start = usize::try_from(from).unwrap_or(usize::MAX);
        let mut bytes = 0;
        self.commands
            .iter()
            .skip(start)
            .take(max)
            .enumerate()
            .take_while(|(i, c)| {
                bytes += c.bytes().len();
                *i == 0 || bytes <= max_bytes
            })
            .map(|(_, c)| c.clone())
            .collect()
    }
}
