//! Commands and batches: what consensus orders, and their canonical bytes.
//!
//! A [`Command`] is opaque bytes; its [`CommandId`] is their BLAKE3 address,
//! so the same bytes are the same command (a client that wants to repeat an
//! operation includes a nonce). A [`Batch`] is the value one height decides:
//! a sequence of commands. Its canonical bytes (defined here, by hand) are
//!
//! ```text
//! "hologram batch v1" (17 bytes) ‖ count u32 LE ‖ for each command: len u32 LE ‖ bytes
//! ```
//!
//! and its receipt — what validators vote on — is
//! `Receipt::from_bytes(canonical bytes)` (SPEC §6), so two honest nodes
//! compute the same receipt for the same batch and the receipt binds every
//! byte of it.

use crate::ConsensusError;
use hologram_lattice::Address;
use hologram_receipt::{Receipt, ReceiptBuilder};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The largest command, in bytes.
pub const MAX_COMMAND_BYTES: usize = 64 << 10;
/// The most commands one batch holds.
pub const MAX_BATCH_COMMANDS: usize = 1 << 16;
/// The largest sum of command bytes in one batch.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// The buffer through which [`Batch::receipt`] streams canonical bytes.
const RECEIPT_BUFFER: usize = 64 << 10;

/// The prefix of a batch's canonical bytes.
const BATCH_MAGIC: &[u8; 17] = b"hologram batch v1";

/// A command's identity: the BLAKE3 address of its bytes.
pub type CommandId = Address;

/// An opaque command for the replicated state machine. Cheap to clone.
///
/// Its [`CommandId`] is computed once, when the command is made (by a client,
/// or by a replica decoding it from the wire), and travels with its clones.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Command {
    id: CommandId,
    bytes: Arc<[u8]>,
}

impl core::fmt::Debug for Command {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Command({} bytes, {})", self.bytes.len(), self.id())
    }
}

impl Command {
    /// A command of these bytes, at most [`MAX_COMMAND_BYTES`].
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Result<Self, ConsensusError> {
        let bytes = bytes.into();
        if bytes.len() > MAX_COMMAND_BYTES {
            return Err(ConsensusError::TooLarge {
                what: "command",
                size: bytes.len(),
                max: MAX_COMMAND_BYTES,
            });
        }
        Ok(Self {
            id: Address::of(&bytes),
            bytes,
        })
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The command's identity: the BLAKE3 address of its bytes (hashed
    /// when the command was made).
    pub fn id(&self) -> CommandId {
        self.id
    }
}

impl Serialize for Command {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.bytes)
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Command;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "a byte string of at most {MAX_COMMAND_BYTES} bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Command, E> {
                Command::new(v).map_err(E::custom)
            }
        }
        d.deserialize_bytes(Visit)
    }
}

/// The value one height decides: commands in order. Cheap to clone (the
/// commands are shared).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Batch {
    commands: Arc<[Command]>,
}

/// How a batch travels: a struct of one sequence (the wire format of a
/// `struct { commands: Vec<Command> }`).
#[derive(Serialize)]
struct BatchRef<'a> {
    commands: &'a [Command],
}

/// [`BatchRef`], decoded.
#[derive(Deserialize)]
struct BatchOwned {
    commands: Vec<Command>,
}

impl Serialize for Batch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        BatchRef {
            commands: &self.commands,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BatchOwned::deserialize(d).map(|b| Self {
            commands: b.commands.into(),
        })
    }
}

impl core::fmt::Debug for Batch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Batch({} commands)", self.commands.len())
    }
}

impl Batch {
    /// A batch of these commands, within [`MAX_BATCH_COMMANDS`] and
    /// [`MAX_BATCH_BYTES`].
    pub fn new(commands: Vec<Command>) -> Result<Self, ConsensusError> {
        let batch = Self {
            commands: commands.into(),
        };
        batch.check_bounds()?;
        Ok(batch)
    }

    /// The empty batch.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The commands, in order.
    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    /// The number of commands.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// Whether the batch has no command.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The sum of the commands' sizes.
    pub fn payload_bytes(&self) -> usize {
        self.commands.iter().map(|c| c.bytes.len()).sum()
    }

    /// Checks the bounds a decoded batch must meet.
    pub fn check_bounds(&self) -> Result<(), ConsensusError> {
        if self.commands.len() > MAX_BATCH_COMMANDS {
            return Err(ConsensusError::TooLarge {
                what: "batch (commands)",
                size: self.commands.len(),
                max: MAX_BATCH_COMMANDS,
            });
        }
        let bytes = self.payload_bytes();
        if bytes > MAX_BATCH_BYTES {
            return Err(ConsensusError::TooLarge {
                what: "batch (bytes)",
                size: bytes,
                max: MAX_BATCH_BYTES,
            });
        }
        Ok(())
    }

    /// The canonical bytes (see the [module docs](crate::batch)).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(BATCH_MAGIC.len() + 4 + 4 * self.len() + self.payload_bytes());
        self.write_canonical(&mut out);
        out
    }

    /// The receipt validators vote on: `Receipt::from_bytes(canonical bytes)`.
    ///
    /// The canonical bytes are streamed into a [`ReceiptBuilder`] through a
    /// small buffer rather than built whole (the receipt of a concatenation
    /// is that of its pieces fed in order), on the calling thread.
    pub fn receipt(&self) -> Receipt {
        let mut builder = ReceiptBuilder::single_threaded();
        let mut buf = Vec::with_capacity(RECEIPT_BUFFER);
        buf.extend_from_slice(BATCH_MAGIC);
        buf.extend_from_slice(&(self.commands.len() as u32).to_le_bytes());
        for c in self.commands.iter() {
            if buf.len() + 4 + c.bytes.len() > RECEIPT_BUFFER {
                builder.update(&buf);
                buf.clear();
            }
            buf.extend_from_slice(&(c.bytes.len() as u32).to_le_bytes());
            buf.extend_from_slice(&c.bytes);
        }
        builder.update(&buf);
        builder.finish()
    }

    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(BATCH_MAGIC);
        // Bounded by MAX_BATCH_COMMANDS and MAX_COMMAND_BYTES: both fit in u32.
        out.extend_from_slice(&(self.commands.len() as u32).to_le_bytes());
        for c in self.commands.iter() {
            out.extend_from_slice(&(c.bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&c.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_is_of_the_canonical_bytes() {
        let batch = Batch::new(vec![
            Command::new(b"set x 1".to_vec()).unwrap(),
            Command::new(b"".to_vec()).unwrap(),
        ])
        .unwrap();
        let bytes = batch.canonical_bytes();
        let mut expected = b"hologram batch v1".to_vec();
        expected.extend_from_slice(&2u32.to_le_bytes());
        expected.extend_from_slice(&7u32.to_le_bytes());
        expected.extend_from_slice(b"set x 1");
        expected.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(batch.receipt(), Receipt::from_bytes(&bytes));
        assert_ne!(batch.receipt(), Batch::empty().receipt());
    }

    #[test]
    fn the_streamed_receipt_is_that_of_the_whole_canonical_bytes() {
        // Commands of many sizes, so buffer flushes fall everywhere,
        // including commands of the largest size.
        let commands: Vec<Command> = (0..70u32)
            .map(|i| {
                let len = match i % 5 {
                    0 => MAX_COMMAND_BYTES,
                    1 => 0,
                    _ => (i as usize * 997) % 9000,
                };
                Command::new(vec![i as u8; len]).unwrap()
            })
            .collect();
        let batch = Batch::new(commands).unwrap();
        assert_eq!(
            batch.receipt(),
            Receipt::from_bytes(&batch.canonical_bytes())
        );
        let c = Command::new(b"abc".to_vec()).unwrap();
        assert_eq!(c.id(), Address::of(b"abc"));
        let wire = postcard::to_allocvec(&batch).unwrap();
        let back: Batch = postcard::from_bytes(&wire).unwrap();
        assert_eq!(back, batch);
        assert_eq!(back.commands()[3].id(), batch.commands()[3].id());
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(Command::new(vec![0u8; MAX_COMMAND_BYTES + 1]).is_err());
        let big = Command::new(vec![0u8; MAX_COMMAND_BYTES]).unwrap();
        let n = MAX_BATCH_BYTES / MAX_COMMAND_BYTES + 1;
        assert!(Batch::new(vec![big; n]).is_err());
        let oversized = vec![0u8; MAX_COMMAND_BYTES + 1];
        let wire = postcard::to_allocvec(&serde_bytes_like(&oversized)).unwrap();
        assert!(postcard::from_bytes::<Command>(&wire).is_err());
    }

    /// Encodes raw bytes the way a `Command` is encoded.
    fn serde_bytes_like(b: &[u8]) -> Command {
        Command {
            id: Address::of(b),
            bytes: b.into(),
        }
    }
}
