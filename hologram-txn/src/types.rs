//! Transaction ids, keys and operations, with their canonical bytes.
//!
//! A transaction writes keys; the writes to one participant are a list of
//! [`Op`]s. Keys are placed on shards by the R96 digest of their receipt
//! (SPEC §8): [`Key::placement`] is `Receipt::from_bytes(key).r96.as_u64()`.
//!
//! Canonical bytes (what prepare receipts hash) are defined here by hand,
//! little-endian, every variable-length field length-prefixed:
//!
//! | item | bytes |
//! |---|---|
//! | key | `len u16 ‖ bytes` |
//! | `Put` | `0 ‖ key ‖ len u32 ‖ value` |
//! | `Delete` | `1 ‖ key` |
//! | `Add` | `2 ‖ key ‖ delta i64` |

use crate::TxnError;
use hologram_receipt::Receipt;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// The longest value, in bytes.
pub const MAX_VALUE_LEN: usize = 64 << 10;
/// The most operations one participant applies in one transaction.
pub const MAX_OPS: usize = 64;
/// The most participants of one transaction.
pub const MAX_PARTICIPANTS: usize = 16;

/// A transaction's identity: 16 random bytes chosen by its client.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TxnId(pub [u8; 16]);

impl TxnId {
    /// A fresh random id.
    pub fn random(rng: &mut (impl Rng + ?Sized)) -> Self {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        TxnId(id)
    }
}

impl core::fmt::Display for TxnId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl core::fmt::Debug for TxnId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "TxnId({self})")
    }
}

/// A key: 1 to [`MAX_KEY_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key(Vec<u8>);

impl Key {
    /// The key with these bytes, if they are within bounds.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, TxnError> {
        let key = Key(bytes.into());
        key.check()?;
        Ok(key)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key's receipt (`Receipt::from_bytes` of its bytes).
    pub fn receipt(&self) -> Receipt {
        Receipt::from_bytes(&self.0)
    }

    /// Where the key lives in the u64 placement space: its receipt's
    /// `r96.as_u64()` (SPEC §8). Keys that are permutations of each other
    /// share a digest and so a placement.
    pub fn placement(&self) -> u64 {
        self.receipt().r96.as_u64()
    }

    /// Checks the bounds a decoded key must meet.
    pub(crate) fn check(&self) -> Result<(), TxnError> {
        if self.0.is_empty() {
            return Err(TxnError::Empty("key"));
        }
        bound("key", self.0.len(), MAX_KEY_LEN)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        // `check` bounds the length to MAX_KEY_LEN, which fits a u16.
        out.extend_from_slice(&(self.0.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.0);
    }
}

impl core::fmt::Display for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match core::str::from_utf8(&self.0) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => write!(f, "{s:?}"),
            _ => self.0.iter().try_for_each(|b| write!(f, "{b:02x}")),
        }
    }
}

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Key({self})")
    }
}

/// One write of a transaction to one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Sets the key's value.
    Put {
        /// The key.
        key: Key,
        /// The new value (at most [`MAX_VALUE_LEN`] bytes).
        value: Vec<u8>,
    },
    /// Removes the key.
    Delete {
        /// The key.
        key: Key,
    },
    /// Adds `delta` to a counter: the value as an `i64` LE (absent is 0).
    /// Rejected at prepare when the value is not 8 bytes, the sum overflows,
    /// or it would be negative (so balances never go below zero).
    Add {
        /// The key.
        key: Key,
        /// What to add (negative to subtract).
        delta: i64,
    },
}

impl Op {
    /// The key written.
    pub fn key(&self) -> &Key {
        match self {
            Op::Put { key, .. } | Op::Delete { key } | Op::Add { key, .. } => key,
        }
    }

    /// Appends the op's canonical bytes (see the module docs).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::Put { key, value } => {
                out.push(0);
                key.encode(out);
                out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                out.extend_from_slice(value);
            }
            Op::Delete { key } => {
                out.push(1);
                key.encode(out);
            }
            Op::Add { key, delta } => {
                out.push(2);
                key.encode(out);
                out.extend_from_slice(&delta.to_le_bytes());
            }
        }
    }

    /// The value after applying the op to `current`, or why it cannot apply.
    pub fn apply(&self, current: Option<&[u8]>) -> Result<Option<Vec<u8>>, TxnError> {
        match self {
            Op::Put { value, .. } => Ok(Some(value.clone())),
            Op::Delete { .. } => Ok(None),
            Op::Add { key, delta } => {
                let old = match current {
                    None => 0,
                    Some(bytes) => {
                        let raw: [u8; 8] = bytes.try_into().map_err(|_| TxnError::Rejected {
                            key: key.clone(),
                            reason: format!("counter holds {} bytes, not 8", bytes.len()),
                        })?;
                        i64::from_le_bytes(raw)
                    }
                };
                match old.checked_add(*delta) {
                    Some(new) if new >= 0 => Ok(Some(new.to_le_bytes().to_vec())),
                    Some(new) => Err(TxnError::Rejected {
                        key: key.clone(),
                        reason: format!("{old} + {delta} = {new} would be negative"),
                    }),
                    None => Err(TxnError::Rejected {
                        key: key.clone(),
                        reason: format!("{old} + {delta} overflows"),
                    }),
                }
            }
        }
    }

    /// Checks the bounds a decoded op must meet.
    pub(crate) fn check(&self) -> Result<(), TxnError> {
        self.key().check()?;
        if let Op::Put { value, .. } = self {
            bound("value", value.len(), MAX_VALUE_LEN)?;
        }
        Ok(())
    }
}

/// `Err(TooLarge)` when `len > max`.
pub(crate) fn bound(what: &'static str, len: usize, max: usize) -> Result<(), TxnError> {
    if len > max {
        Err(TxnError::TooLarge { what, len, max })
    } else {
        Ok(())
    }
}

/// Reads a counter value written by [`Op::Add`] (`None` when absent or not 8 bytes).
pub fn counter(value: Option<&[u8]>) -> Option<i64> {
    match value {
        None => Some(0),
        Some(bytes) => <[u8; 8]>::try_from(bytes).ok().map(i64::from_le_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::new(s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn keys_are_bounded() {
        assert_eq!(Key::new(vec![]), Err(TxnError::Empty("key")));
        assert!(Key::new(vec![7; MAX_KEY_LEN]).is_ok());
        assert_eq!(
            Key::new(vec![7; MAX_KEY_LEN + 1]),
            Err(TxnError::TooLarge {
                what: "key",
                len: MAX_KEY_LEN + 1,
                max: MAX_KEY_LEN
            })
        );
    }

    #[test]
    fn placement_is_the_r96_digest_of_the_key() {
        let k = key("HELLO WORLD");
        assert_eq!(
            k.placement(),
            hologram_lattice::R96Digest::of(b"HELLO WORLD").as_u64()
        );
        // Order-blind, as SPEC §3 says of the digest.
        assert_eq!(k.placement(), key("WORLD HELLO").placement());
    }

    #[test]
    fn add_never_goes_negative_nor_overflows() {
        let a = Op::Add {
            key: key("a"),
            delta: -5,
        };
        assert!(matches!(a.apply(None), Err(TxnError::Rejected { .. })));
        let ten = 10i64.to_le_bytes();
        assert_eq!(
            a.apply(Some(&ten)).unwrap(),
            Some(5i64.to_le_bytes().to_vec())
        );
        assert!(matches!(
            a.apply(Some(b"abc")),
            Err(TxnError::Rejected { .. })
        ));
        let big = Op::Add {
            key: key("a"),
            delta: i64::MAX,
        };
        assert!(big.apply(Some(&ten)).is_err());
        assert_eq!(counter(Some(&ten)), Some(10));
        assert_eq!(counter(None), Some(0));
        assert_eq!(counter(Some(b"x")), None);
    }

    #[test]
    fn canonical_bytes_are_as_documented() {
        let mut out = Vec::new();
        Op::Add {
            key: key("ab"),
            delta: -2,
        }
        .encode(&mut out);
        let mut expected = vec![2, 2, 0, b'a', b'b'];
        expected.extend_from_slice(&(-2i64).to_le_bytes());
        assert_eq!(out, expected);
        out.clear();
        Op::Put {
            key: key("k"),
            value: vec![9, 8],
        }
        .encode(&mut out);
        assert_eq!(out, vec![0, 1, 0, b'k', 2, 0, 0, 0, 9, 8]);
        out.clear();
        Op::Delete { key: key("k") }.encode(&mut out);
        assert_eq!(out, vec![1, 1, 0, b'k']);
    }
}
