//! Fetching a certified snapshot part by part: each part is verified
//! against the address the certified checkpoint (for the manifest) or the
//! manifest (for a chunk) names before it is kept.

use super::{Checkpoint, MAX_SNAPSHOT_PART_BYTES};
use crate::message::Decision;
use crate::ConsensusError;
use hologram_cam::Manifest;
use hologram_lattice::Address;

/// A snapshot being fetched: the certified decision naming it, what was
/// verified so far, and the next part wanted.
#[derive(Debug)]
pub(crate) struct SnapshotFetch {
    /// The decision whose batch carries the checkpoint (verified against
    /// the validator set before the fetch started).
    pub(crate) decision: Decision,
    pub(crate) checkpoint: Checkpoint,
    manifest: Option<Manifest>,
    bytes: Vec<u8>,
    /// The next part wanted: 0 the manifest, `i + 1` chunk `i`.
    pub(crate) next: u32,
    /// Which validator to ask next (rotates on every unanswered request
    /// and every lie).
    pub(crate) peer: usize,
    /// When the last request was sent.
    pub(crate) asked: Option<u64>,
}

/// What a verified part completed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fetched {
    /// More parts are needed.
    More,
    /// Every part is in: the snapshot's bytes.
    Done(Vec<u8>),
}

impl SnapshotFetch {
    /// A fetch of the snapshot `decision`'s batch names (it must carry a
    /// checkpoint), starting with validator `peer`.
    pub(crate) fn new(decision: Decision, checkpoint: Checkpoint, peer: usize) -> Self {
        Self {
            decision,
            checkpoint,
            manifest: None,
            bytes: Vec::new(),
            next: 0,
            peer,
            asked: None,
        }
    }

    /// Takes part `index` of the snapshot at `address` if it is the part
    /// wanted and verifies: a specific error if its bytes do not hash to
    /// the address named for it, if a chunk's length differs from its
    /// manifest's, or if the manifest does not decode or lists a chunk over
    /// [`MAX_SNAPSHOT_PART_BYTES`]; nothing is kept then. `None` for a part
    /// not wanted now (another snapshot, a duplicate).
    pub(crate) fn accept(
        &mut self,
        address: Address,
        index: u32,
        data: &[u8],
    ) -> Option<Result<Fetched, ConsensusError>> {
        if address != self.checkpoint.snapshot || index != self.next {
            return None;
        }
        Some(self.verify(index, data))
    }

    fn verify(&mut self, index: u32, data: &[u8]) -> Result<Fetched, ConsensusError> {
        let (expected, len) = match &self.manifest {
            None => (self.checkpoint.snapshot, None),
            Some(m) => {
                let (a, len) = m.chunks[(index - 1) as usize];
                (a, Some(len))
            }
        };
        if let Some(len) = len {
            if data.len() != len as usize {
                return Err(ConsensusError::SnapshotChunkLength {
                    part: index,
                    expected: u64::from(len),
                    actual: data.len() as u64,
                });
            }
        }
        let actual = Address::of(data);
        if actual != expected {
            return Err(ConsensusError::SnapshotAddress {
                part: index,
                expected,
                actual,
            });
        }
        match &self.manifest {
            None => {
                let m = Manifest::decode(data)
                    .map_err(|e| ConsensusError::SnapshotMalformed(format!("manifest: {e}")))?;
                if let Some((a, len)) = m
                    .chunks
                    .iter()
                    .find(|(_, l)| *l as usize > MAX_SNAPSHOT_PART_BYTES)
                {
                    return Err(ConsensusError::SnapshotMalformed(format!(
                        "manifest lists chunk {a} of {len} bytes, at most {MAX_SNAPSHOT_PART_BYTES} allowed"
                    )));
                }
                self.manifest = Some(m);
            }
            Some(_) => self.bytes.extend_from_slice(data),
        }
        self.next += 1;
        let chunks = self.manifest.as_ref().map_or(0, |m| m.chunks.len());
        if self.next as usize > chunks {
            return Ok(Fetched::Done(std::mem::take(&mut self.bytes)));
        }
        Ok(Fetched::More)
    }
}
