//! A snapshot's bytes as objects of the CAM: content-defined chunks under a
//! manifest, so a large snapshot is stored and fetched chunk by chunk, each
//! chunk verified by its address.

use crate::ConsensusError;
use hologram_cam::{chunk_lengths, ChunkParams, Manifest, Object, MAX_OBJECT_BYTES};
use hologram_lattice::Address;

/// The largest part of a snapshot (its manifest or one chunk): a CAM
/// object. A manifest listing a larger chunk is refused.
pub const MAX_SNAPSHOT_PART_BYTES: usize = MAX_OBJECT_BYTES;

/// A snapshot as CAM objects: a [`Manifest`] (part 0) listing its
/// content-defined chunks (parts `1..`), each an [`Object`]. The snapshot's
/// address — what a [`Checkpoint`](crate::Checkpoint) names — is the
/// manifest's, so the certified address vouches for the manifest, which
/// vouches for every chunk by its address and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotParts {
    manifest: Object,
    chunks: Vec<Object>,
}

impl SnapshotParts {
    /// Cuts `bytes` into chunks with `params` (their `max` at most
    /// [`MAX_SNAPSHOT_PART_BYTES`]) under a manifest.
    pub fn split(bytes: &[u8], params: ChunkParams) -> Result<Self, ConsensusError> {
        if params.max > MAX_SNAPSHOT_PART_BYTES {
            return Err(ConsensusError::InvalidConfig(format!(
                "snapshot chunks of up to {} bytes, at most {MAX_SNAPSHOT_PART_BYTES} allowed",
                params.max
            )));
        }
        let mut chunks = Vec::new();
        let mut listed = Vec::new();
        let mut at = 0;
        for len in chunk_lengths(bytes, params) {
            let chunk = Object::new(bytes[at..at + len].to_vec());
            at += len;
            // len <= params.max <= MAX_SNAPSHOT_PART_BYTES fits in u32.
            listed.push((chunk.address(), len as u32));
            chunks.push(chunk);
        }
        let manifest = Manifest { chunks: listed }.encode();
        if manifest.len() > MAX_SNAPSHOT_PART_BYTES {
            return Err(ConsensusError::TooLarge {
                what: "snapshot manifest",
                size: manifest.len(),
                max: MAX_SNAPSHOT_PART_BYTES,
            });
        }
        Ok(Self {
            manifest: Object::new(manifest),
            chunks,
        })
    }

    /// Parts read back from a store, already verified by the caller (the
    /// manifest against the certified address, each chunk against it).
    pub(crate) fn from_objects(manifest: Object, chunks: Vec<Object>) -> Self {
        Self { manifest, chunks }
    }

    /// The snapshot's address: its manifest's.
    pub fn address(&self) -> Address {
        self.manifest.address()
    }

    /// Part `index`: 0 is the manifest, `i + 1` chunk `i`.
    pub fn part(&self, index: u32) -> Option<&Object> {
        match index {
            0 => Some(&self.manifest),
            i => self.chunks.get(usize::try_from(i - 1).ok()?),
        }
    }

    /// The number of parts (the manifest and the chunks).
    pub fn len(&self) -> u32 {
        // A manifest lists at most MAX_CHUNKS (< 2^32) chunks.
        1 + self.chunks.len() as u32
    }

    /// Always false: there is a manifest.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Every object: the manifest, then the chunks.
    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        std::iter::once(&self.manifest).chain(&self.chunks)
    }

    /// The snapshot's bytes, the chunks joined.
    pub fn bytes(&self) -> Vec<u8> {
        self.chunks
            .iter()
            .flat_map(|c| c.data().iter().copied())
            .collect()
    }
}
