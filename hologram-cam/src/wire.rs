//! The CAM protocol's messages, with decoding bounded before reading.

use crate::{CamError, SharedBytes};
use hologram_lattice::{wire, Address};
use serde::{Deserialize, Serialize};

const WHAT: &str = "CAM message";

/// The largest object one message carries.
pub const MAX_OBJECT_BYTES: usize = 1 << 20;
/// The most providers one answer names.
pub const MAX_PROVIDERS: usize = 8;
/// The largest encoded message.
pub const MAX_MESSAGE_BYTES: usize = MAX_OBJECT_BYTES + 64;

/// Messages of the content-addressed storage protocol (carried under
/// [`crate::CAM_PROTOCOL`](crate::CAM_PROTOCOL)).
///
/// `D` is how an object's bytes are held: [`SharedBytes`] in a message
/// made or decoded, `&[u8]` while [`CamMessage::decode`] borrows them from
/// its input (the encoding is the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CamMessage<D = SharedBytes> {
    /// Request: the object at this address.
    Get(Address),
    /// Answer to `Get`: its bytes (the asker verifies them). Shared, so a
    /// holder answers from its store without copying the object, and an
    /// asker keeps the bytes, still in the answer's buffer, as the object it
    /// caches.
    Found(D),
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
        wire::encode_into(WHAT, self, Vec::with_capacity(size_hint)).unwrap_or_default()
    }

    /// Decodes exactly `bytes` ([`wire::decode`]: more than
    /// [`MAX_MESSAGE_BYTES`] refused unread, trailing bytes refused); a
    /// `Found` object's bytes are copied out of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, CamError> {
        Self::decode_owned(bytes.to_vec())
    }

    /// [`CamMessage::decode`] of a buffer it takes: a `Found` object's bytes
    /// stay in it, not copied.
    pub fn decode_owned(bytes: Vec<u8>) -> Result<Self, CamError> {
        let owner = SharedBytes::from(bytes);
        let message: CamMessage<&[u8]> = wire::decode(WHAT, &owner, MAX_MESSAGE_BYTES)?;
        Ok(match message {
            CamMessage::Providers(peers) => {
                wire::check_count("providers", peers.len(), MAX_PROVIDERS)?;
                CamMessage::Providers(peers)
            }
            CamMessage::Get(address) => CamMessage::Get(address),
            CamMessage::Found(data) => CamMessage::Found(owner.slice_ref(data)),
            CamMessage::NotFound => CamMessage::NotFound,
            CamMessage::Provide(address) => CamMessage::Provide(address),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_lattice::wire::WireError;
    use proptest::prelude::*;

    proptest! {
        /// Both decoders agree on every input, and neither panics.
        #[test]
        fn owned_and_borrowed_decoding_agree(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(CamMessage::decode(&bytes), CamMessage::decode_owned(bytes.clone()));
        }

        #[test]
        fn found_round_trips(data in prop::collection::vec(any::<u8>(), 0..2048)) {
            let message = CamMessage::Found(SharedBytes::from(data));
            prop_assert_eq!(CamMessage::decode(&message.encode()), Ok(message.clone()));
            prop_assert_eq!(CamMessage::decode_owned(message.encode()), Ok(message));
        }
    }

    #[test]
    fn an_owned_answer_keeps_the_object_in_its_buffer() {
        let object = vec![7u8; 1 << 20];
        let encoded = CamMessage::Found(SharedBytes::from(object.clone())).encode();
        let (start, len) = (encoded.as_ptr() as usize, encoded.len());
        let Ok(CamMessage::Found(data)) = CamMessage::decode_owned(encoded) else {
            panic!("a Found decodes");
        };
        assert_eq!(&data[..], &object[..]);
        let at = data.as_ptr() as usize;
        assert!(at > start && at + data.len() == start + len, "not a view");
    }

    #[test]
    fn too_many_providers_are_refused() {
        let peers = vec![hologram_lattice::NodeId::from_bytes([1; 32]); MAX_PROVIDERS + 1];
        let encoded = CamMessage::<SharedBytes>::Providers(peers).encode();
        let refused = Err(CamError::Wire(WireError::TooMany {
            what: "providers",
            count: MAX_PROVIDERS + 1,
            max: MAX_PROVIDERS,
        }));
        assert_eq!(CamMessage::decode(&encoded), refused);
        assert_eq!(CamMessage::decode_owned(encoded), refused);
    }

    #[test]
    fn trailing_and_oversized_input_is_refused() {
        let mut encoded = CamMessage::Found(SharedBytes::from(vec![1, 2, 3])).encode();
        encoded.push(0);
        let trailing = Err(CamError::Wire(WireError::Trailing {
            what: WHAT,
            extra: 1,
        }));
        assert_eq!(CamMessage::decode(&encoded), trailing);
        assert_eq!(CamMessage::decode_owned(encoded), trailing);
        let huge = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            CamMessage::decode(&huge),
            Err(CamError::Wire(WireError::TooLarge {
                max: MAX_MESSAGE_BYTES,
                ..
            }))
        ));
    }
}
