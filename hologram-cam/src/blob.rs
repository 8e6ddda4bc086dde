//! Large objects: content-defined chunks stored as objects of their own,
//! under a manifest object, read back chunk by chunk.

use crate::chunking::{chunk_lengths, ChunkParams};
use crate::wire::MAX_OBJECT_BYTES;
use crate::{CamError, DistributedCAM, Store};
use hologram_lattice::{wire, Address};
use serde::{Deserialize, Serialize};

/// Prefix of every encoded manifest.
const MANIFEST_MAGIC: &[u8; 8] = b"hgmanif1";
/// The most chunks one manifest lists (a 1 MiB manifest object).
pub const MAX_CHUNKS: usize = (MAX_OBJECT_BYTES - 64) / 40;

/// A blob as stored: a single object, or a manifest of chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlobRef {
    /// The whole blob is one object at this address.
    Object(Address),
    /// The blob is chunked; the manifest object is at this address.
    Manifest(Address),
}

/// The chunks of a large blob, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Each chunk's address and length.
    pub chunks: Vec<(Address, u32)>,
}

impl Manifest {
    /// The blob's length.
    pub fn len(&self) -> u64 {
        self.chunks.iter().map(|&(_, l)| u64::from(l)).sum()
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The manifest's bytes: a magic prefix, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding into a Vec cannot fail for these types.
        wire::encode_into("manifest", self, MANIFEST_MAGIC.to_vec()).unwrap_or_default()
    }

    /// Decodes a manifest: at most [`MAX_OBJECT_BYTES`] in all (checked
    /// unread) and [`MAX_CHUNKS`] chunks.
    pub fn decode(bytes: &[u8]) -> Result<Self, CamError> {
        let body = bytes
            .strip_prefix(MANIFEST_MAGIC.as_slice())
            .ok_or_else(|| CamError::Decode("not a manifest".into()))?;
        let max = MAX_OBJECT_BYTES - MANIFEST_MAGIC.len();
        let manifest: Manifest = wire::decode("manifest", body, max)?;
        wire::check_count("manifest chunks", manifest.chunks.len(), MAX_CHUNKS)?;
        Ok(manifest)
    }
}

impl<S: Store + ?Sized + 'static> DistributedCAM<S> {
    /// Stores a blob: as one object when it fits `params.max`, else as
    /// content-defined chunks (each an object, so equal chunks of different
    /// blobs are stored once) under a manifest.
    pub async fn put_blob(&self, data: &[u8], params: ChunkParams) -> Result<BlobRef, CamError> {
        if data.len() <= params.max.min(self.max_object_bytes()) {
            return Ok(BlobRef::Object(self.put(data.to_vec()).await?));
        }
        let mut chunks = Vec::new();
        let mut at = 0;
        for len in chunk_lengths(data, params) {
            let chunk = &data[at..at + len];
            at += len;
            let len = u32::try_from(len).map_err(|_| CamError::TooLarge {
                size: len,
                max: MAX_OBJECT_BYTES,
            })?;
            chunks.push((self.put(chunk.to_vec()).await?, len));
        }
        if chunks.len() > MAX_CHUNKS {
            return Err(CamError::TooLarge {
                size: data.len(),
                max: MAX_CHUNKS * params.max,
            });
        }
        Ok(BlobRef::Manifest(
            self.put(Manifest { chunks }.encode()).await?,
        ))
    }

    /// Reads a blob into `sink`, one verified chunk at a time: memory stays
    /// at one chunk, and a chunk that no peer can provide intact stops the
    /// read at that chunk with its error. A chunk whose length differs from
    /// the manifest's is an error too.
    pub async fn read_blob(
        &self,
        blob: BlobRef,
        mut sink: impl FnMut(&[u8]) -> Result<(), CamError>,
    ) -> Result<u64, CamError> {
        let manifest = match blob {
            BlobRef::Object(address) => {
                let object = self.get(address).await?;
                sink(object.data())?;
                return Ok(object.len() as u64);
            }
            BlobRef::Manifest(address) => Manifest::decode(self.get(address).await?.data())?,
        };
        let mut total = 0u64;
        for (address, len) in manifest.chunks {
            let chunk = self.get(address).await?;
            if chunk.len() != len as usize {
                return Err(CamError::Decode(format!(
                    "chunk {address} has {} bytes, the manifest says {len}",
                    chunk.len()
                )));
            }
            sink(chunk.data())?;
            total += u64::from(len);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_manifest_decoder(mut bytes in prop::collection::vec(any::<u8>(), 0..600), magic in any::<bool>()) {
            if magic {
                let mut with = MANIFEST_MAGIC.to_vec();
                with.append(&mut bytes);
                bytes = with;
            }
            if let Ok(m) = Manifest::decode(&bytes) {
                prop_assert!(m.chunks.len() <= MAX_CHUNKS);
            }
        }
    }

    #[test]
    fn manifests_round_trip() {
        let m = Manifest {
            chunks: vec![(Address::of(b"a"), 1), (Address::of(b"bc"), 2)],
        };
        assert_eq!(Manifest::decode(&m.encode()), Ok(m.clone()));
        assert_eq!(m.len(), 3);
        assert!(Manifest::decode(b"hgmanif2").is_err());
    }
}
