//! The deduplication protocol's messages, with decoding bounded before reading.

use crate::wire::{decode_bounded, MAX_OBJECT_BYTES};
use crate::CamError;
use hologram_lattice::Address;
use serde::{Deserialize, Serialize};

/// The largest encoded message.
pub const MAX_MESSAGE_BYTES: usize = MAX_OBJECT_BYTES + 64;

/// One reference to an object: who took it, and that client's operation
/// number. References are counted as sets, so a reference delivered twice,
/// or to a replica that already has it, counts once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Reference {
    /// The client that took the reference.
    pub client: hologram_lattice::PeerId,
    /// The client's operation number.
    pub op: u64,
}

/// Messages between a [`DeduplicationNetwork`](super::DeduplicationNetwork)
/// client and the holders (carried under
/// [`Protocol::DEDUP`](hologram_lattice::transport::Protocol::DEDUP)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DedupMessage {
    /// Store an object, and with `reference`, count it (a repair or hand-off
    /// sends none).
    Put {
        /// The object's bytes (the holder verifies them against `address`).
        #[serde(with = "crate::wire::bytes")]
        data: Vec<u8>,
        /// The address the sender claims.
        address: Address,
        /// The reference to count, if any.
        reference: Option<Reference>,
    },
    /// Hand-off after the ring changed: hold this object with these references.
    Adopt {
        /// The object's bytes (verified against `address`).
        #[serde(with = "crate::wire::bytes")]
        data: Vec<u8>,
        /// The address the sender claims.
        address: Address,
        /// The references the previous holder counted.
        references: Vec<Reference>,
    },
    /// Count a reference to an object the holder has.
    AddRef(Address, Reference),
    /// Answer to `Put`, `Adopt`, `AddRef` and `Release`: the references the
    /// holder now counts for the object.
    Refs(u64),
    /// Does the holder have this object?
    Has(Address),
    /// Answer to `Has`.
    HasAnswer(bool),
    /// The object's bytes, please.
    Get(Address),
    /// Answer to `Get`.
    Found(#[serde(with = "crate::wire::bytes")] Vec<u8>),
    /// Answer to `Get`, `AddRef`, `Release` or `Free`: not held.
    NotFound,
    /// Drop a reference to the object.
    Release(Address, Reference),
    /// Remove the object if the holder counts no reference to it.
    Free(Address),
    /// Answer to `Free`: whether the object was removed.
    Freed(bool),
}

impl DedupMessage {
    /// The postcard encoding.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding into a Vec cannot fail for these types.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes a message, refusing more than [`MAX_MESSAGE_BYTES`] before reading.
    pub fn decode(bytes: &[u8]) -> Result<Self, CamError> {
        decode_bounded(bytes, MAX_MESSAGE_BYTES)
    }
}

/// Key-derivation context of a request's checksum.
pub const REQUEST_CHECK_CONTEXT: &str = "hologram dedup-request v1";

/// A request with the sender's operation number, so that a holder applies a
/// duplicated request once: it answers a repeat of `(sender, op)` with the
/// answer it gave the first time.
///
/// The encoding ends with an 8-byte checksum (BLAKE3-derive of the rest), so
/// that a request damaged on the way, for instance in its operation number,
/// is refused instead of being applied as a new operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The sender's operation number (unique per sender).
    pub op: u64,
    /// The request.
    pub message: DedupMessage,
}

fn checksum(body: &[u8]) -> [u8; 8] {
    let h = blake3::Hasher::new_derive_key(REQUEST_CHECK_CONTEXT)
        .update(body)
        .finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.as_bytes()[..8]);
    out
}

impl Request {
    /// The postcard encoding followed by its checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = postcard::to_allocvec(self).unwrap_or_default();
        let check = checksum(&out);
        out.extend_from_slice(&check);
        out
    }

    /// Decodes a request, refusing more than [`MAX_MESSAGE_BYTES`] before
    /// reading and anything whose checksum does not match.
    pub fn decode(bytes: &[u8]) -> Result<Self, CamError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(CamError::TooLarge {
                size: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        let split = bytes
            .len()
            .checked_sub(8)
            .ok_or_else(|| CamError::Decode("request shorter than its checksum".into()))?;
        let (body, check) = bytes.split_at(split);
        if checksum(body) != check {
            return Err(CamError::Decode("request checksum mismatch".into()));
        }
        decode_bounded(body, MAX_MESSAGE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = Request::decode(&bytes);
            let _ = DedupMessage::decode(&bytes);
        }

        #[test]
        fn any_flipped_bit_is_refused(op in any::<u64>(), bit in any::<usize>()) {
            let reference = Reference { client: hologram_lattice::NodeId::from_bytes([1; 32]), op };
            let r = Request { op, message: DedupMessage::Release(Address::of(b"x"), reference) };
            let mut bytes = r.encode();
            prop_assert_eq!(Request::decode(&bytes), Ok(r));
            let bit = bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(Request::decode(&bytes).is_err());
        }
    }
}
