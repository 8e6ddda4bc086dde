//! The node's state machine: the list of applied commands.
//!
//! It runs inside `hologram-consensus`'s
//! [`ReplicatedStateMachine`](hologram_consensus::ReplicatedStateMachine),
//! which feeds it the decided batches in height order, each (client,
//! sequence) at most once (its session table answers a retry, or a command
//! two decided batches carry, with the first output), and chains the
//! chapter's transition receipts (SPEC §6): two replicas agree iff their
//! chains have the same length and head.
//!
//! Applying a command appends it; the output is its [`Ack`]: the height
//! applied and its position. The state's
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
    /// The height being applied (not part of the state's receipt: it only
    /// names where outputs were applied).
    height: u64,
}

impl StateMachine for CommandList {
    /// The height and the command's position.
    type Output = Ack;

    fn apply(&mut self, command: &Command) -> Ack {
        self.digest = self.digest.next(&Receipt::from_bytes(command.bytes()));
        self.len += 1;
        Ack {
            height: self.height,
            position: self.len - 1,
        }
    }

    fn begin_height(&mut self, height: u64) {
        self.height = height;
    }

    fn state_receipt(&self) -> Receipt {
        Receipt::from_bytes(self.digest.as_bytes())
    }

    /// The count, u64 LE, then the digest (32 bytes).
    fn snapshot(&self) -> Result<Vec<u8>, String> {
        let mut out = self.len.to_le_bytes().to_vec();
        out.extend_from_slice(self.digest.as_bytes());
        Ok(out)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let (len, digest) = bytes
            .split_first_chunk::<8>()
            .filter(|(_, d)| d.len() == 32)
            .ok_or("a command list snapshot is 40 bytes")?;
        let mut head = [0u8; 32];
        head.copy_from_slice(digest);
        self.len = u64::from_le_bytes(*len);
        self.digest = ChainHead::from_bytes(head);
        Ok(())
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
                    0,
                    0,
                    c.to_vec(),
                )
                .unwrap()
            })
            .collect();
        let empty = list.state_receipt();
        list.begin_height(7);
        let acks: Vec<Ack> = commands.iter().map(|c| list.apply(c)).collect();
        assert!(acks.iter().all(|a| a.height == 7));
        let positions: Vec<u64> = acks.iter().map(|a| a.position).collect();
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
