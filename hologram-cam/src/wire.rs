//! The CAM protocol's messages, with decoding bounded before reading.

use crate::CamError;
use hologram_lattice::Address;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The largest object one message carries.
pub const MAX_OBJECT_BYTES: usize = 1 << 20;
/// The most providers one answer names.
pub const MAX_PROVIDERS: usize = 8;
/// The largest encoded message.
pub const MAX_MESSAGE_BYTES: usize = MAX_OBJECT_BYTES + 64;

/// Messages of the content-addressed storage protocol (carried under
/// [`Protocol::CAM`](hologram_lattice::transport::Protocol::CAM)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CamMessage {
    /// Request: the object at this address.
    Get(Address),
    /// Answer to `Get`: its bytes (the asker verifies them). Shared, so a
    /// holder answers from its store without copying the object, and an
    /// asker keeps the decoded bytes as the object it caches.
    Found(#[serde(with = "bytes")] Arc<[u8]>),
    /// Answer to `Get`: not here.
    NotFound,
    /// Answer to `Get`: not here, but these peers announced it (at most
    /// [`MAX_PROVIDERS`]).
    Providers(Vec<hologram_lattice::PeerId>),
    /// One-way: the sender holds this address (a provider record).
    Provide(Address),
}

impl CamMessage {
    /// The postcard encoding, written into one buffer of the right size
    /// (a 1 MiB object is copied once, never into a growing buffer).
    pub fn encode(&self) -> Vec<u8> {
        let size_hint = match self {
            CamMessage::Found(data) => data.len() + 16,
            _ => 64,
        };
        // Encoding into a Vec cannot fail for these types.
        postcard::to_extend(self, Vec::with_capacity(size_hint)).unwrap_or_default()
    }

    /// Decodes a message, refusing more than [`MAX_MESSAGE_BYTES`] before reading.
    pub fn decode(bytes: &[u8]) -> Result<Self, CamError> {
        let message: CamMessage = decode_bounded(bytes, MAX_MESSAGE_BYTES)?;
        if let CamMessage::Providers(peers) = &message {
            if peers.len() > MAX_PROVIDERS {
                return Err(CamError::Decode(format!(
                    "{} providers, at most {MAX_PROVIDERS}",
                    peers.len()
                )));
            }
        }
        Ok(message)
    }
}

/// Decodes postcard, refusing more than `max` bytes before reading them.
pub(crate) fn decode_bounded<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    max: usize,
) -> Result<T, CamError> {
    if bytes.len() > max {
        return Err(CamError::TooLarge {
            size: bytes.len(),
            max,
        });
    }
    postcard::from_bytes(bytes).map_err(|e| CamError::Decode(e.to_string()))
}

/// Serde for byte buffers (`Vec<u8>`, `Arc<[u8]>`) as one byte string
/// (postcard: a length and a copy) rather than a sequence of separately
/// encoded bytes, which is many times slower for objects of a mebibyte.
/// Decoding copies the bytes once, straight into the buffer.
pub(crate) mod bytes {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Serializer;
    use std::marker::PhantomData;

    pub fn serialize<S: Serializer, B: AsRef<[u8]>>(v: &B, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v.as_ref())
    }

    pub fn deserialize<'de, D, B>(d: D) -> Result<B, D::Error>
    where
        D: Deserializer<'de>,
        B: for<'a> From<&'a [u8]> + From<Vec<u8>>,
    {
        struct Bytes<B>(PhantomData<B>);
        impl<'de, B: for<'a> From<&'a [u8]> + From<Vec<u8>>> Visitor<'de> for Bytes<B> {
            type Value = B;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<B, E> {
                Ok(B::from(v))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<B, E> {
                Ok(B::from(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<B, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(B::from(out))
            }
        }
        d.deserialize_byte_buf(Bytes(PhantomData))
    }
}
