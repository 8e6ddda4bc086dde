//! The node's state machine: the list of applied commands.
//!
//! It runs inside `hologram-consensus`'s
//! [`ReplicatedStateMachine`](hologram_consensus::ReplicatedStateMachine),
//! which feeds it the decided batches in height order, each command once
//! (a command two decided batches carry is applied at its first height and
//! skipped after), and chains the chapter's transition receipts (SPEC §6):
//! two replicas agree iff their chains have the same length and head.
//!
//! Applying a command appends it; the output is its position. The state's
//! receipt is `Receipt::from_bytes(digest)`, where the digest is the head of a
//! receipt chain over the commands' receipts, kept up to date by `apply` (so
//! equal lists give equal receipts, in constant time). In memory the list is
//! only its length and digest, whatever the number of commands applied: the
//! commands themselves are kept on disk, in the node's store (the decided
//! blocks, and the applied table that log pages are read from).

use hologram_consensus::{Command, StateMachine};
use hologram_receipt::{ChainHead, Receipt};
use serde::{Deserialize, Serialize};

/// Where an applied command sits: what a node acknowledges to its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The height that decided it.
    pub height: u64,
    /// Its position in the list of applied commands.
    pub position: u64,
}

/// The applied commands, in order: their count and the digest over them.
#[derive(Debug, Clone, Default)]
pub struct CommandList {
    len: u64,
    digest: ChainHead,
}

impl StateMachine for CommandList {
    /// The command's position.
    type Output = u64;

    fn apply(&mut self, command: &Command) -> u64 {
        self.digest = self.digest.next(&Receipt::from_bytes(command.bytes()));
        self.len += 1;
        self.len - 1
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
        self.len
    }

    /// Whether nothing was applied.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_list_counts_and_digests_in_order() {
        let mut list = CommandList::new();
        let commands: Vec<Command> = [&b"a"[..], b"bb", b"ccc"]
            .iter()
            .map(|c| {
                Command::sign(
                    &hologram_receipt::KeyPair::from_seed([0xc1; 32]),
                    c.to_vec(),
                )
                .unwrap()
            })
            .collect();
        let empty = list.state_receipt();
        let positions: Vec<u64> = commands.iter().map(|c| list.apply(c)).collect();
        assert_eq!(positions, [0, 1, 2]);
        assert_ne!(
            list.state_receipt(),
            empty,
            "the state receipt follows the list"
        );
        let mut again = CommandList::new();
        for c in &commands {
            again.apply(c);
        }
        assert_eq!(again.state_receipt(), list.state_receipt());
        assert_eq!((list.len(), list.is_empty()), (3, false));
        assert!(CommandList::new().is_empty());
        // The receipt depends on the order.
        let mut reversed = CommandList::new();
        for c in commands.iter().rev() {
            reversed.apply(c);
        }
        assert_ne!(reversed.state_receipt(), list.state_receipt());
    }
}
