//! The one error type of this crate.

use hologram_lattice::transport::TransportError;
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
    /// The storage engine failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// A peer could not be reached or answered with an error.
    #[error("transport error: {0}")]
    Transport(#[from] TransportError),
    /// A message did not decode.
    #[error("malformed message: {0}")]
    Decode(String),
}
