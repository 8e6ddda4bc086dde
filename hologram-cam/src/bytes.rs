//! [`SharedBytes`]: immutable bytes shared without copying, so that an
//! object received in a message is verified and kept in the message's own
//! buffer.

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::ops::{Deref, Range};
use std::sync::Arc;

/// Immutable bytes, cheap to clone: a view of part of one shared buffer.
///
/// Made from a `Vec<u8>` without copying it, and sliced without copying
/// ([`SharedBytes::slice`], [`SharedBytes::slice_ref`]). Decoders use this
/// to hand out the bytes a message carries as views of the message itself:
/// a 1 MiB object arrives, is checked against its address and is cached
/// without a copy. A view keeps its whole buffer alive, so a decoder only
/// shares a buffer that the view fills nearly entirely (one object per
/// message); bytes cut from a batch are copied.
///
/// Equality, ordering and hashing are those of the bytes.
///
/// ```
/// use hologram_cam::SharedBytes;
/// let message = SharedBytes::from(b"header:payload".to_vec());
/// let payload = message.slice(7..14);
/// assert_eq!(&payload[..], b"payload");
/// assert_eq!(message.slice_ref(&payload), payload);
/// ```
#[derive(Clone)]
pub struct SharedBytes {
    buffer: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl SharedBytes {
    /// No bytes.
    pub fn new() -> Self {
        Self::from(Vec::new())
    }

    /// A copy of `bytes` in a buffer of its own.
    pub fn copy_from_slice(bytes: &[u8]) -> Self {
        Self::from(bytes.to_vec())
    }

    /// The bytes in `range` of these, sharing the buffer. A range outside
    /// these bytes is clamped to them (never a panic).
    pub fn slice(&self, range: Range<usize>) -> Self {
        let len = self.len();
        let end = range.end.min(len);
        let start = range.start.min(end);
        Self {
            buffer: Arc::clone(&self.buffer),
            start: self.start + start,
            end: self.start + end,
        }
    }

    /// `sub` as a view of these bytes when it lies within them (as the
    /// slices a decoder borrows from its input do); otherwise a copy of it.
    pub fn slice_ref(&self, sub: &[u8]) -> Self {
        let here = self.as_ref().as_ptr() as usize;
        let there = sub.as_ptr() as usize;
        match there.checked_sub(here) {
            Some(offset) if offset + sub.len() <= self.len() => {
                self.slice(offset..offset + sub.len())
            }
            _ => Self::copy_from_slice(sub),
        }
    }

    /// The bytes as a vector (moved out without copying when this view is
    /// the whole of a buffer nothing else shares).
    pub fn into_vec(self) -> Vec<u8> {
        let whole = self.start == 0 && self.end == self.buffer.len();
        match Arc::try_unwrap(self.buffer) {
            Ok(vec) if whole => vec,
            Ok(vec) => vec[self.start..self.end].to_vec(),
            Err(shared) => shared[self.start..self.end].to_vec(),
        }
    }
}

impl Default for SharedBytes {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for SharedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // `start <= end <= buffer.len()` holds by construction.
        &self.buffer[self.start..self.end]
    }
}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::borrow::Borrow<[u8]> for SharedBytes {
    fn borrow(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for SharedBytes {
    fn from(vec: Vec<u8>) -> Self {
        Self {
            end: vec.len(),
            start: 0,
            buffer: Arc::new(vec),
        }
    }
}

impl From<&[u8]> for SharedBytes {
    fn from(bytes: &[u8]) -> Self {
        Self::copy_from_slice(bytes)
    }
}

impl<const N: usize> From<&[u8; N]> for SharedBytes {
    fn from(bytes: &[u8; N]) -> Self {
        Self::copy_from_slice(bytes)
    }
}

impl From<String> for SharedBytes {
    fn from(s: String) -> Self {
        Self::from(s.into_bytes())
    }
}

impl From<&str> for SharedBytes {
    fn from(s: &str) -> Self {
        Self::copy_from_slice(s.as_bytes())
    }
}

impl PartialEq for SharedBytes {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

impl Eq for SharedBytes {}

impl PartialEq<[u8]> for SharedBytes {
    fn eq(&self, other: &[u8]) -> bool {
        &self[..] == other
    }
}

impl PartialOrd for SharedBytes {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedBytes {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self[..].cmp(&other[..])
    }
}

impl std::hash::Hash for SharedBytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self[..].hash(state)
    }
}

impl std::fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedBytes({} bytes)", self.len())
    }
}

/// One byte string (postcard: a length and the bytes), not a sequence of
/// separately encoded bytes, which is many times slower for a mebibyte.
impl Serialize for SharedBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self)
    }
}

/// Decoding copies the bytes once, into a buffer of their own; decoders
/// that own their input share it instead (see [`SharedBytes::slice_ref`]).
impl<'de> Deserialize<'de> for SharedBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = SharedBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<SharedBytes, E> {
                Ok(SharedBytes::copy_from_slice(v))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<SharedBytes, E> {
                Ok(SharedBytes::from(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SharedBytes, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(SharedBytes::from(out))
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn slices_are_views_and_foreign_slices_copies(
            data in prop::collection::vec(any::<u8>(), 0..300),
            a in any::<usize>(),
            b in any::<usize>(),
        ) {
            let whole = SharedBytes::from(data.clone());
            let (a, b) = (a % (data.len() + 1), b % (data.len() + 1));
            let (lo, hi) = (a.min(b), a.max(b));
            let part = whole.slice(lo..hi);
            prop_assert_eq!(&part[..], &data[lo..hi]);
            // A view of a view is a view of the same buffer.
            let again = whole.slice_ref(&part);
            prop_assert_eq!(&again, &part);
            prop_assert!(Arc::ptr_eq(&again.buffer, &whole.buffer));
            // A slice of another buffer is copied.
            let foreign = whole.slice_ref(&data[lo..hi]);
            prop_assert_eq!(&foreign[..], &data[lo..hi]);
            prop_assert!(!Arc::ptr_eq(&foreign.buffer, &whole.buffer) || data.is_empty() || lo == hi);
            // Out-of-range slices clamp.
            prop_assert_eq!(whole.slice(hi..usize::MAX).len(), data.len() - hi);
            prop_assert_eq!(part.clone().into_vec(), data[lo..hi].to_vec());
        }
    }

    #[test]
    fn round_trips_as_a_byte_string() {
        let bytes = SharedBytes::from(vec![1u8, 2, 3]);
        let wire = postcard::to_allocvec(&bytes).unwrap();
        assert_eq!(wire, vec![3, 1, 2, 3]);
        let back: SharedBytes = postcard::from_bytes(&wire).unwrap();
        assert_eq!(back, bytes);
    }
}
