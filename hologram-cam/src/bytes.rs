//! [`SharedBytes`]: immutable bytes shared without copying, so that an
//! object received in a message is verified and kept in the message's own
//! buffer.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::ops::{Deref, Range};

/// Immutable bytes, cheap to clone: a view of part of one shared buffer
/// (a [`bytes::Bytes`] whose slicing never panics).
///
/// Made from a `Vec<u8>` without copying it, and sliced without copying
/// ([`SharedBytes::slice`], [`SharedBytes::slice_ref`]). Decoders use this
/// to hand out the bytes a message carries as views of the message itself:
/// a 1 MiB object arrives, is checked against its address and is cached
/// without a copy. A view keeps its whole buffer alive, so a decoder only
/// shares a buffer that the view fills nearly entirely (one object per
/// message); bytes cut from a batch are copied.
///
/// Equality, ordering and hashing are those of the bytes. On the wire it is
/// one byte string (postcard: a length and the bytes), not a sequence of
/// separately encoded bytes, which is many times slower for a mebibyte;
/// decoding copies the bytes once, into a buffer of their own, and decoders
/// that own their input share it instead (see [`SharedBytes::slice_ref`]).
///
/// ```
/// use hologram_cam::SharedBytes;
/// let message = SharedBytes::from(b"header:payload".to_vec());
/// let payload = message.slice(7..14);
/// assert_eq!(&payload[..], b"payload");
/// assert_eq!(message.slice_ref(&payload), payload);
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SharedBytes(Bytes);

impl SharedBytes {
    /// No bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of `bytes` in a buffer of its own.
    pub fn copy_from_slice(bytes: &[u8]) -> Self {
        Self(Bytes::copy_from_slice(bytes))
    }

    /// The bytes in `range` of these, sharing the buffer. A range outside
    /// these bytes is clamped to them (never a panic).
    pub fn slice(&self, range: Range<usize>) -> Self {
        let end = range.end.min(self.len());
        Self(self.0.slice(range.start.min(end)..end))
    }

    /// `sub` as a view of these bytes when it lies within them (as the
    /// slices a decoder borrows from its input do); otherwise a copy of it.
    pub fn slice_ref(&self, sub: &[u8]) -> Self {
        let offset = (sub.as_ptr() as usize).checked_sub(self.as_ptr() as usize);
        match offset {
            Some(offset) if offset + sub.len() <= self.len() => {
                self.slice(offset..offset + sub.len())
            }
            _ => Self::copy_from_slice(sub),
        }
    }

    /// The bytes as a vector (moved out without copying when this view is
    /// the whole of a buffer nothing else shares).
    pub fn into_vec(self) -> Vec<u8> {
        self.0.into()
    }
}

impl Deref for SharedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
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
        Self(Bytes::from(vec))
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

impl PartialEq<[u8]> for SharedBytes {
    fn eq(&self, other: &[u8]) -> bool {
        &self[..] == other
    }
}

impl std::fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedBytes({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Whether `part`'s bytes lie in `whole`'s memory (a view, not a copy).
    fn shares(part: &SharedBytes, whole: &SharedBytes) -> bool {
        let (p, w) = (part.as_ptr_range(), whole.as_ptr_range());
        w.start <= p.start && p.end <= w.end
    }

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
            // (An empty slice is the one static empty `Bytes`: no buffer to share.)
            prop_assert!(lo == hi || (shares(&again, &whole) && again.as_ptr() == part.as_ptr()));
            // A slice of another buffer is copied.
            let foreign = whole.slice_ref(&data[lo..hi]);
            prop_assert_eq!(&foreign[..], &data[lo..hi]);
            prop_assert!(!shares(&foreign, &whole) || data.is_empty() || lo == hi);
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
