//! The one error type of this crate.

use hologram_lattice::transport::TransportError;
use hologram_lattice::wire::WireError;
use hologram_lattice::Address;
use thiserror::Error;

/// Everything that can go wrong in `hologram-cam`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CamError {
    /// Bytes do not hash to the address they were given or fetched under.
    #[error("object does not match its address: expected {expected}, got {actual}")]
    AddressMismatch {
        /// The address asked for.
        expected: Address,
        /// The address of the bytes received.
        actual: Address,
    },
    /// No peer could provide the object.
    #[error("object {0} not found")]
    NotFound(Address),
    /// The stored reference record of an object does not decode (disk
    /// corruption); it is not trusted.
    #[error("stored references of {address} are corrupt: {source}")]
    CorruptReferences {
        /// The object whose references they are.
        address: Address,
        /// Why they do not decode.
        source: Box<CamError>,
    },
    /// Stored bytes no longer hash to their key (disk corruption).
    #[error("stored object {0} is corrupt")]
    Corrupt(Address),
    /// An object exceeds a size limit.
    #[error("object of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The object's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// `put` of an object larger than one CAM answer can carry over this
    /// transport: no peer could fetch it. Large data goes through
    /// `DistributedCAM::put_blob`, which stores it as chunks under a manifest.
    #[error("object of {size} bytes exceeds the {max} bytes one CAM answer carries over this transport: store it with `put_blob` (chunks under a manifest)")]
    ObjectTooLargeForPut {
        /// The object's size.
        size: usize,
        /// The largest object `put` accepts (`DistributedCAM::max_object_bytes`).
        max: usize,
    },
    /// `get` found no usable answer and at least one peer's answer was over
    /// the frame or message limit (the object exists but cannot travel as
    /// one object; it should have been stored with `put_blob`).
    #[error("object {address}: the answers of {peers} peer(s) exceeded the message limit; nothing else found it (store objects that large with `put_blob`)")]
    AnswerTooLarge {
        /// The address asked for.
        address: Address,
        /// How many peers answered with, or were refused, an over-limit answer.
        peers: usize,
    },
    /// A name of the store's named key space is empty or too long.
    #[error("a store name must be 1 to {max} bytes, this one has {len}")]
    BadName {
        /// The name's length.
        len: usize,
        /// The longest name allowed.
        max: usize,
    },
    /// The storage engine failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// Stored data is in a format version this build does not read (written
    /// by a newer one): nothing was changed.
    #[error("{what} is in format version {found}; this build reads versions up to {supported}")]
    UnsupportedFormat {
        /// What holds it (e.g. the store's file).
        what: String,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A peer could not be reached or answered with an error.
    #[error("transport error: {0}")]
    Transport(#[from] TransportError),
    /// A message or manifest did not decode, or a list in it is longer than
    /// allowed (see [`hologram_lattice::wire`]).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Bytes that decoded do not check out (a checksum, a length or a
    /// reference list that does not match).
    #[error("malformed message: {0}")]
    Decode(String),
}
