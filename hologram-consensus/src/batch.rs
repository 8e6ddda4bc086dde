//! Batches: what consensus orders, and their canonical bytes.

use crate::command::Command;
use crate::membership::SetChange;
use crate::snapshot::Checkpoint;
use crate::ConsensusError;
use hologram_receipt::{Receipt, ReceiptBuilder};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
/// The most commands one batch holds.
pub const MAX_BATCH_COMMANDS: usize = 1 << 16;
/// The largest sum of command bytes in one batch.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// The buffer through which [`Batch::receipt`] streams canonical bytes.
const RECEIPT_BUFFER: usize = 64 << 10;

/// The prefix of a batch's canonical bytes.
pub(crate) const BATCH_MAGIC: &[u8; 17] = b"hologram batch v4";
/// The prefix of a batch's canonical bytes when it names its validator set.
pub(crate) const NAMED_BATCH_MAGIC: &[u8; 17] = b"hologram batch v5";

/// The flags of a named batch's trailer: a checkpoint follows.
pub(crate) const FLAG_CHECKPOINT: u8 = 1;
/// The flags of a named batch's trailer: a set change follows.
pub(crate) const FLAG_SET_CHANGE: u8 = 2;

/// The canonical bytes of one command besides its payload and its proof's
/// siblings: key, sequence, first unanswered, signature, proof index and
/// count, length.
pub(crate) const COMMAND_HEADER: usize = 32 + 8 + 8 + 64 + 4 + 4;

/// The value one height decides: commands in order. Cheap to clone (the
/// commands are shared).
///
/// A [`Batch`] is the value one height decides: a sequence of signed
/// [`Command`]s. Its canonical bytes (defined here,
/// by hand) are
///
/// ```text
/// "hologram batch v4" (17 bytes) ‖ count u32 LE ‖ for each command:
///     client public key (32 bytes) ‖ sequence u64 LE ‖ first unanswered u64 LE ‖
///     signature R ‖ s (64 bytes) ‖ proof (index u16 LE ‖ count u16 LE ‖ siblings) ‖
///     payload len u32 LE ‖ payload
/// [‖ checkpoint canonical bytes (72)]
/// ```
///
/// where the trailing [`Checkpoint`] is there only when the batch carries
/// one ([`Batch::checkpoint`]; the count before the commands makes its
/// presence unambiguous, and a batch without one has the bytes it always
/// had).
///
/// A batch a replica's leader proposes also names the validator set it is
/// proposed under ([`Batch::set_name`], the set's fingerprint: CometBFT's
/// `ValidatorsHash`), so that its certificate says which set made it, and
/// may carry a [`SetChange`] ([`Batch::set_change`]; see
/// [`Membership`](crate::Membership)). Such a batch's canonical bytes are
///
/// ```text
/// "hologram batch v5" (17 bytes) ‖ set fingerprint (32) ‖ count u32 LE ‖ commands (as above) ‖
/// flags u8 (1: checkpoint, 2: set change) ‖ [checkpoint (72)] ‖ [set change canonical bytes]
/// ```
///
/// and its receipt — what validators vote on — is
/// `Receipt::from_bytes(canonical bytes)` (SPEC §6), so two honest nodes
/// compute the same receipt for the same batch and the receipt binds every
/// byte of it, each command's client and signature included (a decided log
/// carries the proof of who issued each command). Version 1 had no client
/// or signature; version 2 no sequence numbers; version 3 no batch proofs
/// (see [`BatchProof`](crate::BatchProof)).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Batch {
    commands: Arc<[Command]>,
    checkpoint: Option<Checkpoint>,
    set: Option<[u8; 32]>,
    set_change: Option<SetChange>,
}

/// How a batch travels: the wire format of a `struct { commands:
/// Vec<Command>, checkpoint: Option<Checkpoint> }`.
#[derive(Serialize)]
struct BatchRef<'a> {
    commands: &'a [Command],
    checkpoint: Option<&'a Checkpoint>,
    set: Option<&'a [u8; 32]>,
    set_change: Option<&'a SetChange>,
}

/// [`BatchRef`], decoded.
#[derive(Deserialize)]
struct BatchOwned {
    commands: Vec<Command>,
    checkpoint: Option<Checkpoint>,
    set: Option<[u8; 32]>,
    set_change: Option<SetChange>,
}

impl Serialize for Batch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        BatchRef {
            commands: &self.commands,
            checkpoint: self.checkpoint.as_ref(),
            set: self.set.as_ref(),
            set_change: self.set_change.as_ref(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = BatchOwned::deserialize(d)?;
        if b.set_change.is_some() && b.set.is_none() {
            return Err(serde::de::Error::custom(
                "a batch carrying a set change must name its set",
            ));
        }
        Ok(Self {
            commands: b.commands.into(),
            checkpoint: b.checkpoint,
            set: b.set,
            set_change: b.set_change,
        })
    }
}

impl core::fmt::Debug for Batch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.checkpoint {
            None => write!(f, "Batch({} commands)", self.commands.len()),
            Some(c) => write!(
                f,
                "Batch({} commands, checkpoint at {})",
                self.commands.len(),
                c.height
            ),
        }
    }
}

impl Batch {
    /// A batch of these commands, within [`MAX_BATCH_COMMANDS`] and
    /// [`MAX_BATCH_BYTES`].
    pub fn new(commands: Vec<Command>) -> Result<Self, ConsensusError> {
        let batch = Self {
            commands: commands.into(),
            checkpoint: None,
            set: None,
            set_change: None,
        };
        batch.check_bounds()?;
        Ok(batch)
    }

    /// The empty batch.
    pub fn empty() -> Self {
        Self::default()
    }

    /// This batch carrying `checkpoint` (see [`Checkpoint`]).
    pub fn with_checkpoint(mut self, checkpoint: Option<Checkpoint>) -> Self {
        self.checkpoint = checkpoint;
        self
    }

    /// This batch naming the validator set of fingerprint `set` (the one
    /// it is proposed under) and carrying `change`, if any.
    pub fn with_set(mut self, set: [u8; 32], change: Option<SetChange>) -> Self {
        self.set = Some(set);
        self.set_change = change;
        self
    }

    /// The fingerprint of the validator set the batch names, if it names one.
    pub fn set_name(&self) -> Option<[u8; 32]> {
        self.set
    }

    /// The validator-set change the batch carries, if any.
    pub fn set_change(&self) -> Option<&SetChange> {
        self.set_change.as_ref()
    }

    /// The checkpoint the batch carries, if any.
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
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

    /// The sum of the commands' payload sizes.
    pub fn payload_bytes(&self) -> usize {
        self.commands.iter().map(|c| c.bytes().len()).sum()
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
        self.set_change
            .as_ref()
            .map_or(Ok(()), SetChange::check_bounds)
    }

    /// Checks that `claimed` is this batch's [`receipt`](Self::receipt)
    /// ([`ConsensusError::BatchMismatch`] if not).
    pub fn check_names(&self, claimed: &Receipt) -> Result<(), ConsensusError> {
        let computed = self.receipt();
        if computed != *claimed {
            return Err(ConsensusError::BatchMismatch {
                claimed: Box::new(*claimed),
                computed: Box::new(computed),
            });
        }
        Ok(())
    }

    /// The canonical bytes (defined in the docs of [`Batch`]).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            BATCH_MAGIC.len() + 4 + COMMAND_HEADER * self.len() + self.payload_bytes() + 72,
        );
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
        self.write_head(&mut buf);
        for c in self.commands.iter() {
            if buf.len() + COMMAND_HEADER + c.proof().canonical_len() + c.bytes().len()
                > RECEIPT_BUFFER
            {
                builder.update(&buf);
                buf.clear();
            }
            write_command(&mut buf, c);
        }
        self.write_tail(&mut buf);
        builder.update(&buf);
        builder.finish()
    }

    fn write_canonical(&self, out: &mut Vec<u8>) {
        self.write_head(out);
        for c in self.commands.iter() {
            write_command(out, c);
        }
        self.write_tail(out);
    }

    /// The canonical bytes before the commands: magic, set name, count.
    fn write_head(&self, out: &mut Vec<u8>) {
        match &self.set {
            None => out.extend_from_slice(BATCH_MAGIC),
            Some(set) => {
                out.extend_from_slice(NAMED_BATCH_MAGIC);
                out.extend_from_slice(set);
            }
        }
        // Bounded by MAX_BATCH_COMMANDS and MAX_COMMAND_BYTES: both fit in u32.
        out.extend_from_slice(&(self.commands.len() as u32).to_le_bytes());
    }

    /// The canonical bytes after the commands: the checkpoint, and for a
    /// named batch the flags first and the set change last.
    fn write_tail(&self, out: &mut Vec<u8>) {
        if self.set.is_some() {
            let mut flags = 0;
            if self.checkpoint.is_some() {
                flags |= FLAG_CHECKPOINT;
            }
            if self.set_change.is_some() {
                flags |= FLAG_SET_CHANGE;
            }
            out.push(flags);
        }
        if let Some(c) = &self.checkpoint {
            out.extend_from_slice(&c.canonical_bytes());
        }
        if let Some(c) = &self.set_change {
            c.write_canonical(out);
        }
    }
}

/// One command's canonical bytes: key ‖ numbers ‖ signature ‖ proof ‖
/// payload length u32 LE ‖ payload (the length fits: at most
/// [`MAX_COMMAND_BYTES`]).
fn write_command(out: &mut Vec<u8>, c: &Command) {
    out.extend_from_slice(c.client().as_bytes());
    out.extend_from_slice(&c.sequence().to_le_bytes());
    out.extend_from_slice(&c.first_unanswered().to_le_bytes());
    out.extend_from_slice(&c.signature().to_bytes());
    c.proof().write_canonical(out);
    out.extend_from_slice(&(c.bytes().len() as u32).to_le_bytes());
    out.extend_from_slice(c.bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::MAX_COMMAND_BYTES;
    use hologram_receipt::KeyPair;

    fn command(payload: &[u8]) -> Command {
        Command::sign(&KeyPair::from_seed([5; 32]), 0, 0, payload.to_vec()).unwrap()
    }

    #[test]
    fn receipt_is_of_the_canonical_bytes() {
        // Two commands signed at once: each proof's sibling is the other's id.
        let keys = KeyPair::from_seed([5; 32]);
        let pair = Command::sign_batch(
            &keys,
            [(0, 0, b"set x 1"[..].into()), (1, 0, b""[..].into())],
        )
        .unwrap();
        let batch = Batch::new(pair.clone()).unwrap();
        let bytes = batch.canonical_bytes();
        let mut expected = b"hologram batch v4".to_vec();
        expected.extend_from_slice(&2u32.to_le_bytes());
        for (i, (c, payload)) in batch
            .commands()
            .iter()
            .zip([&b"set x 1"[..], b""])
            .enumerate()
        {
            expected.extend_from_slice(keys.node_id().as_bytes());
            expected.extend_from_slice(&c.sequence().to_le_bytes());
            expected.extend_from_slice(&c.first_unanswered().to_le_bytes());
            expected.extend_from_slice(&c.signature().to_bytes());
            expected.extend_from_slice(&(i as u16).to_le_bytes());
            expected.extend_from_slice(&2u16.to_le_bytes());
            expected.extend_from_slice(pair[1 - i].id().as_bytes());
            expected.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            expected.extend_from_slice(payload);
        }
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
                command(&vec![i as u8; len])
            })
            .collect();
        let batch = Batch::new(commands).unwrap();
        assert_eq!(
            batch.receipt(),
            Receipt::from_bytes(&batch.canonical_bytes())
        );
        let wire = postcard::to_allocvec(&batch).unwrap();
        let back: Batch = postcard::from_bytes(&wire).unwrap();
        assert_eq!(back, batch);
        assert_eq!(back.commands()[3].id(), batch.commands()[3].id());
    }

    #[test]
    fn the_receipt_binds_each_signature() {
        let c = command(b"x");
        let mut sig = c.signature().to_bytes();
        sig[40] ^= 1;
        let other = Command::from_parts(
            c.client(),
            c.sequence(),
            c.first_unanswered(),
            hologram_receipt::Signature::from_bytes(sig),
            crate::BatchProof::single(),
            c.bytes().to_vec(),
        )
        .unwrap();
        assert_eq!(other.id(), c.id());
        assert_ne!(
            Batch::new(vec![c]).unwrap().receipt(),
            Batch::new(vec![other]).unwrap().receipt()
        );
    }

    #[test]
    fn a_checkpoint_is_appended_to_the_canonical_bytes_and_travels() {
        use hologram_lattice::Address;
        use hologram_receipt::ChainHead;
        let plain = Batch::new(vec![command(b"a")]).unwrap();
        let checkpoint = Checkpoint {
            height: 7,
            snapshot: Address::of(b"snapshot"),
            chain_head: ChainHead::from_bytes([3; 32]),
        };
        let with = plain.clone().with_checkpoint(Some(checkpoint));
        let bytes = with.canonical_bytes();
        assert_eq!(
            &bytes[..bytes.len() - 72],
            plain.canonical_bytes().as_slice()
        );
        assert_eq!(&bytes[bytes.len() - 72..], &checkpoint.canonical_bytes());
        assert_eq!(with.receipt(), Receipt::from_bytes(&bytes));
        assert_ne!(with.receipt(), plain.receipt());
        let wire = postcard::to_allocvec(&with).unwrap();
        assert_eq!(postcard::from_bytes::<Batch>(&wire).unwrap(), with);
    }

    #[test]
    fn bounds_are_enforced() {
        let big = command(&vec![0u8; MAX_COMMAND_BYTES]);
        let n = MAX_BATCH_BYTES / MAX_COMMAND_BYTES + 1;
        assert!(Batch::new(vec![big; n]).is_err());
    }
}
