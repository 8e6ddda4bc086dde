//! The deduplication protocol's messages, with decoding bounded before reading.

use crate::wire::MAX_OBJECT_BYTES;
use crate::CamError;
use hologram_lattice::Address;
use serde::{Deserialize, Serialize};

/// The largest encoded message.
pub const MAX_MESSAGE_BYTES: usize = MAX_OBJECT_BYTES + 64;

/// Messages between a [`DeduplicationNetwork`](super::DeduplicationNetwork)
/// client and the holders (carried under
/// [`Protocol::DEDUP`](hologram_lattice::transport::Protocol::DEDUP)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DedupMessage {
    /// Store an object; with `add_ref`, count one more reference to it
    /// (a new object starts at one). Without, only make sure it is held
    /// (read repair, hand-off).
    Put {
        /// The object's bytes (the holder verifies them against `address`).
        data: Vec<u8>,
        /// The address the sender claims.
        address: Address,
        /// Whether this is a new reference.
        add_ref: bool,
    },
    /// Hand-off after the ring changed: hold this object with at least
    /// `refs` references (the count the previous holder had).
    Adopt {
        /// The object's bytes (verified against `address`).
        data: Vec<u8>,
        /// The address the sender claims.
        address: Address,
        /// The references to keep.
        refs: u64,
    },
    /// Count one more reference to an object the holder has.
    AddRef(Address),
    /// Answer to `Put` and `AddRef`: the references now counted.
    Refs(u64),
    /// Does the holder have this object?
    Has(Address),
    /// Answer to `Has`.
    HasAnswer(bool),
    /// The object's bytes, please.
    Get(Address),
    /// Answer to `Get`.
    Found(Vec<u8>),
    /// Answer to `Get`, `AddRef` or `Release`: not held.
    NotFound,
    /// Drop one reference; the object is freed when none remain.
    Release(Address),
    /// Answer to `Release`: references remaining (0: freed).
    Released(u64),
}

impl DedupMessage {
    /// The postcard encoding.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding into a Vec cannot fail for these types.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes a message, refusing more than [`MAX_MESSAGE_BYTES`] before reading.
    pub fn decode(bytes: &[u8]) -> Result<Self, CamError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(CamError::TooLarge {
                size: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        postcard::from_bytes(bytes).map_err(|e| CamError::Decode(e.to_string()))
    }
}
