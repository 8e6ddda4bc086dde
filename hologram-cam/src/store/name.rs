//! [`Name`]: a key of a store's named key space.

use crate::CamError;

/// A key of a [`Store`](super::Store)'s **named key space**: 1 to
/// [`Name::MAX_BYTES`] bytes, chosen by the caller (not derived from
/// content).
///
/// The named key space sits beside the content-addressed objects and is
/// separate from them: an object stored under a name is not listed by
/// `scan`, not found by `get` or `contains`, and not removed by `remove`.
/// It is how a component keeps state that must be found without a scan
/// (the consensus log's blocks and voting record) in a store it shares with
/// a CAM. Give your names a prefix of your own (e.g. your crate's name).
///
/// ```
/// use hologram_cam::Name;
///
/// let name = Name::new(b"my-app/head".to_vec())?;
/// assert_eq!(name.as_bytes(), b"my-app/head");
/// assert!(Name::new(Vec::new()).is_err());
/// assert!(Name::new(vec![b'x'; Name::MAX_BYTES + 1]).is_err());
/// # Ok::<(), hologram_cam::CamError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Box<[u8]>);

impl Name {
    /// The longest name, in bytes.
    pub const MAX_BYTES: usize = 64;

    /// A name of these bytes; an empty one or one longer than
    /// [`Name::MAX_BYTES`] is refused with [`CamError::BadName`].
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, CamError> {
        let bytes = bytes.into();
        if bytes.is_empty() || bytes.len() > Self::MAX_BYTES {
            return Err(CamError::BadName {
                len: bytes.len(),
                max: Self::MAX_BYTES,
            });
        }
        Ok(Self(bytes.into_boxed_slice()))
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}
