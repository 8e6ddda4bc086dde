//! Snapshots of a replicated state machine, the [`Checkpoint`] that binds
//! one into consensus, and their parts in the CAM.

mod checkpoint;
pub(crate) mod fetch;
mod machine;
mod parts;

pub use checkpoint::{Checkpoint, CHECKPOINT_CANONICAL_LEN};
pub(crate) use fetch::SnapshotFetch;
pub use machine::{Executor, SnapshotConfig};
pub use parts::{SnapshotParts, MAX_SNAPSHOT_PART_BYTES};

use crate::codec::Reader;
use crate::membership::Membership;
use crate::session::{SessionLimits, SessionTable};
use crate::ConsensusError;
use hologram_receipt::{ChainHead, ReceiptChain};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The prefix of a snapshot's canonical bytes.
const SNAPSHOT_MAGIC: &[u8; 20] = b"hologram snapshot v2";

/// The most bytes one output in a snapshot's session table may take.
const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// A replicated state machine's state at a height: what a replica restores
/// instead of replaying the log below it.
///
/// It holds everything that makes the replica what it is at `height`: the
/// user's machine (its own bytes, [`StateMachine::snapshot`](crate::StateMachine::snapshot)),
/// the session table (without it a restored replica would apply retried
/// commands again), the receipt chain (length and head, so the restored
/// replica continues the same chain) and the validator sets it was taken
/// under ([`Membership`]: the set in force, the changes decided and not
/// in force yet, the version, the group's genesis fingerprint), so that a
/// restored node follows the sets its peers follow.
///
/// Canonical bytes (hand-defined; equal states have equal bytes, which is
/// what lets validators compare snapshots by address):
///
/// ```text
/// "hologram snapshot v2" (20) ‖ height u64 LE ‖ membership (its canonical bytes, at `height`) ‖
/// chain length u64 LE ‖ chain head (32) ‖
/// session limits: max sessions u64 LE ‖ window u64 LE ‖ expiry heights u64 LE ‖
/// session count u32 LE ‖ for each session, by client id ascending:
///     client (32) ‖ first unanswered u64 LE ‖ last active height u64 LE ‖
///     answer count u32 LE ‖ for each answer, by sequence ascending:
///         sequence u64 LE ‖ output length u32 LE ‖ output (postcard)
/// machine length u64 LE ‖ machine bytes
/// ```
///
/// [`decode`](Self::decode) checks every count against the session limits
/// and the bytes left before allocating, refuses out-of-order sessions and
/// answers, outputs over 1 MiB and trailing bytes.
#[derive(Debug, Clone)]
pub struct Snapshot<O> {
    /// The heights below this one are applied.
    pub height: u64,
    /// The validator sets at `height` (its next height is `height`).
    pub membership: Membership,
    /// The receipt chain over every command applied.
    pub chain: ReceiptChain,
    /// The session table.
    pub sessions: SessionTable<O>,
    /// The user's machine, as it serialized itself.
    pub machine: Vec<u8>,
}

impl<O: Clone + Serialize + DeserializeOwned> Snapshot<O> {
    /// The canonical bytes (see the type docs).
    pub fn encode(&self) -> Result<Vec<u8>, ConsensusError> {
        Self::encode_parts(
            self.height,
            &self.membership,
            self.chain,
            &self.sessions,
            &self.machine,
        )
    }

    /// The canonical bytes of a snapshot of these parts.
    pub(crate) fn encode_parts(
        height: u64,
        membership: &Membership,
        chain: ReceiptChain,
        sessions: &SessionTable<O>,
        machine: &[u8],
    ) -> Result<Vec<u8>, ConsensusError> {
        let mut out = Vec::with_capacity(SNAPSHOT_MAGIC.len() + 128 + machine.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&height.to_le_bytes());
        membership.write_canonical(&mut out);
        out.extend_from_slice(&chain.len().to_le_bytes());
        out.extend_from_slice(chain.head().as_bytes());
        sessions
            .encode_into(&mut out, |o| {
                postcard::to_allocvec(o).map_err(|e| format!("an output does not encode: {e}"))
            })
            .map_err(ConsensusError::SnapshotMalformed)?;
        out.extend_from_slice(&(machine.len() as u64).to_le_bytes());
        out.extend_from_slice(machine);
        Ok(out)
    }

    /// Decodes canonical bytes, for a machine with session `limits`
    /// ([`ConsensusError::SnapshotMalformed`] on anything else).
    pub fn decode(bytes: &[u8], limits: SessionLimits) -> Result<Self, ConsensusError> {
        Self::read(bytes, limits).map_err(ConsensusError::SnapshotMalformed)
    }

    fn read(bytes: &[u8], limits: SessionLimits) -> Result<Self, String> {
        let mut r = Reader::new(bytes);
        let (height, membership) = Self::read_head(&mut r)?;
        let len = r.u64("chain length")?;
        let head = ChainHead::from_bytes(r.array("chain head")?);
        let sessions = SessionTable::decode(&mut r, limits, |b| {
            if b.len() > MAX_OUTPUT_BYTES {
                return Err(format!("output of {} bytes", b.len()));
            }
            postcard::from_bytes(b).map_err(|e| format!("output does not decode: {e}"))
        })?;
        let machine_len = r.u64("machine length")?;
        let machine_len = usize::try_from(machine_len)
            .ok()
            .filter(|&n| n <= r.rest.len())
            .ok_or_else(|| format!("machine of {machine_len} bytes, {} left", r.rest.len()))?;
        let machine = r.take(machine_len, "machine")?.to_vec();
        r.finish()?;
        Ok(Self {
            height,
            membership,
            chain: ReceiptChain::from_parts(head, len),
            sessions,
            machine,
        })
    }
}

/// The height and validator sets of a snapshot's canonical bytes, read
/// without the rest (whose outputs' type a reader may not know).
pub(crate) fn read_membership(bytes: &[u8]) -> Result<Membership, ConsensusError> {
    let mut r = Reader::new(bytes);
    Snapshot::<()>::read_head(&mut r)
        .map(|(_, m)| m)
        .map_err(ConsensusError::SnapshotMalformed)
}

impl<O> Snapshot<O> {
    /// Reads the magic, the height and the sets (which must be at that height).
    fn read_head(r: &mut Reader<'_>) -> Result<(u64, Membership), String> {
        if r.take(SNAPSHOT_MAGIC.len(), "magic")? != SNAPSHOT_MAGIC {
            return Err("not a snapshot".into());
        }
        let height = r.u64("height")?;
        let membership = Membership::read(r)?;
        if membership.next_height() != height {
            return Err(format!(
                "validator sets at height {} in a snapshot of height {height}",
                membership.next_height()
            ));
        }
        Ok((height, membership))
    }
}

#[cfg(test)]
mod tests;
