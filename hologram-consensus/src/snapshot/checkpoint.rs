//! [`Checkpoint`]: what a decided batch says of a snapshot.

use crate::codec::Reader;
use hologram_lattice::Address;
use hologram_receipt::ChainHead;
use serde::{Deserialize, Serialize};

/// The length of a checkpoint's canonical bytes.
pub const CHECKPOINT_CANONICAL_LEN: usize = 8 + 32 + 32;

/// A snapshot named by a decided batch: the heights it covers, its address
/// in the CAM and the receipt chain's head at it.
///
/// A leader puts the newest checkpoint its own replicated state machine
/// computed into the batches it proposes
/// ([`Batch::checkpoint`](crate::Batch::checkpoint)); an honest validator
/// prevotes such a batch only if its own machine computed the same
/// checkpoint (the application-hash check of CometBFT's block header, the
/// `valid(v)` of Tendermint). A decided batch's commit certificate holds
/// the precommits of `2f + 1` validators, each of which needed a polka of
/// `2f + 1` prevotes, so at least `f + 1` honest validators checked the
/// checkpoint: any node that trusts the validator set trusts it, and with
/// it the snapshot's bytes, which must hash to [`snapshot`](Self::snapshot).
/// A validator that runs no machine (a [`Replica`](crate::Replica) whose
/// node did not [enable snapshots](crate::Replica::enable_snapshots), a
/// [`LocalValidator`](crate::LocalValidator)) never supports a batch
/// carrying a checkpoint; a leader puts one only in round 0, so a height
/// whose validators cannot all check it still decides in a later round.
///
/// Canonical bytes ([`CHECKPOINT_CANONICAL_LEN`]): `height u64 LE ‖
/// snapshot address (32) ‖ chain head (32)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The heights below this one are applied in the snapshot (it is the
    /// replicated state machine's next height).
    pub height: u64,
    /// The address of the snapshot's manifest object (see
    /// [`SnapshotParts`](crate::SnapshotParts)).
    pub snapshot: Address,
    /// The head of the receipt chain after those heights.
    pub chain_head: ChainHead,
}

impl Checkpoint {
    /// The canonical bytes (see the type docs).
    pub fn canonical_bytes(&self) -> [u8; CHECKPOINT_CANONICAL_LEN] {
        let mut out = [0u8; CHECKPOINT_CANONICAL_LEN];
        out[..8].copy_from_slice(&self.height.to_le_bytes());
        out[8..40].copy_from_slice(self.snapshot.as_bytes());
        out[40..].copy_from_slice(self.chain_head.as_bytes());
        out
    }

    /// Reads canonical bytes.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, String> {
        Ok(Self {
            height: r.u64("checkpoint height")?,
            snapshot: Address::from_bytes(r.array("checkpoint snapshot")?),
            chain_head: ChainHead::from_bytes(r.array("checkpoint chain head")?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn canonical_bytes_round_trip(height in any::<u64>(), a in any::<[u8; 32]>(), h in any::<[u8; 32]>()) {
            let c = Checkpoint { height, snapshot: Address::from_bytes(a), chain_head: ChainHead::from_bytes(h) };
            let bytes = c.canonical_bytes();
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(Checkpoint::read(&mut r).unwrap(), c);
            prop_assert!(r.finish().is_ok());
            for cut in 0..bytes.len() {
                prop_assert!(Checkpoint::read(&mut Reader::new(&bytes[..cut])).is_err());
            }
        }
    }
}
