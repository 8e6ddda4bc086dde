//! The CAM protocol's messages, with decoding bounded before reading.

use crate::CamError;
use hologram_lattice::Address;
use serde::{Deserialize, Serialize};

/// The largest object one message carries.
pub const MAX_OBJECT_BYTES: usize = 1 << 20;
/// The most providers one answer names.
pub const MAX_PROVIDERS: usize = 8;
/// The largest encoded message.
pub const MAX_MESSAGE_BYTES: usize = MAX_OBJECT_BYTES + 64;

/// Messages of the content-addressed storage protocol (carried under
/// [`Protocol::CAM`](hologram_lattice::transport::Protocol::CAM)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CamMessage {
    /// Request: the object at this address.
    Get(Address),
    /// Answer to `Get`: its bytes (the asker verifies them).
    Found(Vec<u8>),
    /// Answer to `Get`: not here.
    NotFound,
    /// Answer to `Get`: not here, but these peers announced it (at most
    /// [`MAX_PROVIDERS`]).
    Providers(Vec<hologram_lattice::PeerId>),
    /// One-way: the sender holds this address (a provider record).
    Provide(Address),
}

impl CamMessage {
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
        let message: CamMessage =
            postcard::from_bytes(bytes).map_err(|e| CamError::Decode(e.to_string()))?;
        if let CamMessage::Providers(peers) = &message {
            if peers.len() > MAX_PROVIDERS {
                return Err(CamError::Decode(format!(
                    "{} providers, at most {MAX_PROVIDERS}",
                    peers.len()
                )));
            }
        }
        Ok(message)
    }
}
