//! The one wire codec of the hologram crates: postcard (serde), bounded.
//!
//! Every protocol's messages travel as the postcard encoding of their serde
//! derives. [`decode`] reads exactly one value from bytes a peer sent:
//!
//! 1. input longer than the protocol's bound is refused before a byte of it
//!    is read ([`WireError::TooLarge`]), so no peer makes a node parse (or
//!    allocate for) more than its bound;
//! 2. input that is not a valid encoding is refused ([`WireError::Malformed`]);
//!    postcard never allocates from an announced length, it reads what is there;
//! 3. bytes left over after the value are refused ([`WireError::Trailing`]),
//!    so one value has one encoding.
//!
//! Bounds serde does not see (a list's length, a payload's size) are the
//! message's own to check after decoding; [`WireError::TooMany`] and
//! [`WireError::TooLarge`] name them. [`Wire`] bundles a type's name, bound
//! and those checks for types decoded from exactly one buffer.
//!
//! Canonical bytes (what is hashed and signed) are never this encoding: they
//! are defined by hand where they are used.
//!
//! ```
//! use hologram_lattice::wire::{self, WireError};
//!
//! let bytes = wire::encode("pair", &(7u32, "seven")).unwrap();
//! let pair: (u32, &str) = wire::decode("pair", &bytes, 64).unwrap();
//! assert_eq!(pair, (7, "seven"));
//!
//! let mut longer = bytes.clone();
//! longer.push(0);
//! assert!(matches!(
//!     wire::decode::<(u32, &str)>("pair", &longer, 64),
//!     Err(WireError::Trailing { extra: 1, .. })
//! ));
//! assert!(matches!(
//!     wire::decode::<(u32, &str)>("pair", &bytes, 4),
//!     Err(WireError::TooLarge { max: 4, .. })
//! ));
//! ```

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use thiserror::Error;

/// Why bytes are not a wire value, or a value could not be encoded.
///
/// `what` names the value (the message or record type) in every variant.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input, or a part of the decoded value, is longer than its bound.
    /// For the whole input this is checked before anything is read.
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The input is not a valid encoding.
    #[error("malformed {what}: {source}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// What postcard reported.
        source: postcard::Error,
    },
    /// A value decoded but bytes were left over.
    #[error("{what} has {extra} trailing bytes")]
    Trailing {
        /// What was decoded.
        what: &'static str,
        /// How many bytes were left unread.
        extra: usize,
    },
    /// A decoded list holds more items than allowed.
    #[error("{what} holds {count} items, at most {max} allowed")]
    TooMany {
        /// What the list holds.
        what: &'static str,
        /// How many it holds.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// A value could not be encoded.
    #[error("{what} could not be encoded: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// What postcard reported.
        source: postcard::Error,
    },
}

/// Decodes exactly `bytes` as a `T` named `what`: [`WireError::TooLarge`]
/// above `max` bytes (checked first, nothing read), [`WireError::Malformed`]
/// for an invalid encoding, [`WireError::Trailing`] for bytes left over.
///
/// `T` may borrow from `bytes` (a `&[u8]` field stays a view of the input).
pub fn decode<'a, T: Deserialize<'a>>(
    what: &'static str,
    bytes: &'a [u8],
    max: usize,
) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            what,
            len: bytes.len(),
            max,
        });
    }
    let (value, rest) = postcard::take_from_bytes::<T>(bytes)
        .map_err(|source| WireError::Malformed { what, source })?;
    if !rest.is_empty() {
        return Err(WireError::Trailing {
            what,
            extra: rest.len(),
        });
    }
    Ok(value)
}

/// The postcard encoding of `value` (named `what` in the error).
pub fn encode<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Vec<u8>, WireError> {
    encode_into(what, value, Vec::new())
}

/// The postcard encoding of `value` appended to `out` (a prefix already
/// written, or a buffer of the right capacity).
pub fn encode_into<T: Serialize + ?Sized>(
    what: &'static str,
    value: &T,
    out: Vec<u8>,
) -> Result<Vec<u8>, WireError> {
    postcard::to_extend(value, out).map_err(|source| WireError::Encode { what, source })
}

/// The bytes of the postcard varint of `n` (1 to 10), for computing the
/// bound of an encoding.
pub const fn varint_len(n: usize) -> usize {
    let mut len = 1;
    let mut rest = n >> 7;
    while rest > 0 {
        len += 1;
        rest >>= 7;
    }
    len
}

/// Refuses a decoded list of `count` items when it holds more than `max`.
pub fn check_count(what: &'static str, count: usize, max: usize) -> Result<(), WireError> {
    if count > max {
        return Err(WireError::TooMany { what, count, max });
    }
    Ok(())
}

/// A type with a bounded wire encoding, decoded from exactly one buffer.
pub trait Wire: Serialize + DeserializeOwned {
    /// The type's name in errors.
    const NAME: &'static str;
    /// The longest valid encoding; longer input is refused unread.
    const MAX_WIRE_LEN: usize;
    /// The error of [`Wire::check_decoded`] and [`Wire::from_wire`].
    type Error: From<WireError> + std::error::Error;

    /// Bounds a decoded value must meet beyond what serde checks.
    fn check_decoded(&self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The postcard encoding.
    fn to_wire(&self) -> Result<Vec<u8>, WireError> {
        encode(Self::NAME, self)
    }

    /// Decodes exactly `bytes` (see [`decode`]), then checks the value with
    /// [`Wire::check_decoded`].
    fn from_wire(bytes: &[u8]) -> Result<Self, Self::Error> {
        let value: Self = decode(Self::NAME, bytes, Self::MAX_WIRE_LEN)?;
        value.check_decoded()?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests;
