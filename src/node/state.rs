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
//! applied and its position. A command whose payload is a key-value
//! operation ([`KvOp`](super::KvOp)) is also applied
//! to the machine's key-value map, and its result rides in the `Ack`. The
//! state's
//! receipt is `Receipt::from_bytes(digest)`, where the digest is the head of a
//! receipt chain over the commands' receipts, kept up to date by `apply` (so
//! equal lists give equal receipts, in constant time). In memory the list is
//! only its length and digest, whatever the number of commands applied: the
//! commands themselves are kept on disk, in the node's store (the decided
//! blocks, and the applied table that log pages are read from). The
//! key-value map is in memory (bounded: [`MAX_KV_KEYS`](super::MAX_KV_KEYS)
//! keys of bounded size) and in every snapshot.

use super::kv::{KvMap, KvResult};
use hologram_consensus::{Command, StateMachine};
use hologram_receipt::{ChainHead, Receipt};
use serde::{Deserialize, Serialize};

/// Where an applied command sits, and what its key-value operation
/// answered: what a node acknowledges to its client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The height that decided it.
    pub height: u64,
    /// Its position in the list of applied commands.
    pub position: u64,
    /// The result of its key-value operation (`None`: its payload is not
    /// one, see [`KvOp::decode`](super::KvOp::decode)).
    pub kv: Option<KvResult>,
}

/// The applied commands, in order: their count and the digest over them.
#[derive(Debug, Clone, Default)]
pub struct CommandList {
    len: u64,
    digest: ChainHead,
    /// The height being applied (not part of the state's receipt: it only
    /// names where outputs were applied).
    height: u64,
    /// The key-value map: a function of the commands applied, so covered
    /// by their digest.
    kv: KvMap,
}

impl StateMachine for CommandList {
    /// The height and the command's position.
    type Output = Ack;

    fn apply(&mut self, command: &Command) -> Ack {
        self.digest = self.digest.next(&command.payload_receipt());
        self.len += 1;
        Ack {
            height: self.height,
            position: self.len - 1,
            kv: self.kv.apply_payload(command.bytes()),
        }
    }

    fn begin_height(&mut self, height: u64) {
        self.height = height;
    }

    fn state_receipt(&self) -> Receipt {
        Receipt::from_bytes(self.digest.as_bytes())
    }

    /// The count, u64 LE, the digest (32 bytes), then the key-value map
    /// (nothing if it is empty).
    fn snapshot(&self) -> Result<Vec<u8>, String> {
        let mut out = self.len.to_le_bytes().to_vec();
        out.extend_from_slice(self.digest.as_bytes());
        if self.kv != KvMap::default() {
            out.extend(self.kv.snapshot()?);
        }
        Ok(out)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let (len, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or("a command list snapshot is at least 40 bytes")?;
        let (digest, kv) = rest
            .split_first_chunk::<32>()
            .ok_or("a command list snapshot is at least 40 bytes")?;
        let kv = match kv.is_empty() {
            true => KvMap::default(),
            false => KvMap::from_snapshot(kv)?,
        };
        self.len = u64::from_le_bytes(*len);
        self.digest = ChainHead::from_bytes(*digest);
        self.kv = kv;
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
        assert!(
            acks.iter().all(|a| a.kv.is_none()),
            "no key-value operation"
        );
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

#[cfg(test)]
mod kv_tests {
    use super::*;
    use crate::node::{KvError, KvOp};

    fn command(sequence: u64, op: &KvOp) -> Command {
        let keys = hologram_receipt::KeyPair::from_seed([0xc4; 32]);
        Command::sign(&keys, sequence, 0, op.encode().unwrap()).unwrap()
    }

    #[test]
    fn key_value_operations_answer_in_the_ack_and_survive_a_snapshot() {
        let mut list = CommandList::new();
        let write = KvOp::Write {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        let read = KvOp::Read { key: b"k".to_vec() };
        assert_eq!(list.apply(&command(0, &write)).kv, Some(KvResult::Written));
        let got = list.apply(&command(1, &read));
        assert_eq!(
            (got.position, got.kv),
            (1, Some(KvResult::Value(Some(b"v".to_vec()))))
        );
        let mut malformed = crate::node::KV_MAGIC.to_vec();
        malformed.push(0xff);
        let keys = hologram_receipt::KeyPair::from_seed([0xc4; 32]);
        let bad = Command::sign(&keys, 2, 0, malformed).unwrap();
        assert_eq!(
            list.apply(&bad).kv,
            Some(KvResult::Refused(KvError::Malformed))
        );
        let bytes = list.snapshot().unwrap();
        let mut restored = CommandList::new();
        restored.restore(&bytes).unwrap();
        assert_eq!(restored.len(), 3);
        assert_eq!(restored.state_receipt(), list.state_receipt());
        assert_eq!(
            restored.apply(&command(3, &read)).kv,
            Some(KvResult::Value(Some(b"v".to_vec()))),
            "the map came back with the snapshot"
        );
        // A snapshot of before the map (40 bytes) restores an empty map;
        // a corrupt map is refused.
        restored.restore(&bytes[..40]).unwrap();
        assert_eq!(
            restored.apply(&command(4, &read)).kv,
            Some(KvResult::Value(None))
        );
        let mut corrupt = bytes.clone();
        corrupt.push(1);
        assert!(CommandList::new().restore(&corrupt).is_err());
        assert!(CommandList::new().restore(&bytes[..39]).is_err());
    }
}
