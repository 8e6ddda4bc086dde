//! What names a broadcast ([`MessageId`]) and what its payload holds (the
//! envelope: issue time and body).

use hologram_lattice::NodeId;
use hologram_receipt::Receipt;
use serde::{Deserialize, Serialize};

/// Key-derivation context of [`MessageId`]s.
pub const MESSAGE_ID_CONTEXT: &str = "hologram broadcast-id v1";

/// Bytes of the envelope header: the issue time, `u64` little-endian.
pub const ENVELOPE_HEADER: usize = 8;

/// The identity of one broadcast:
/// `BLAKE3-derive("hologram broadcast-id v1", receipt canonical bytes (72) ‖ origin id (32))`.
///
/// The receipt binds the payload (and so the issue time and body), the origin
/// binds who sent it: the same body broadcast twice at different times, or by
/// two nodes, has two ids. An id is computed from what a message *claims*; it
/// names a genuine broadcast only once the message verifies.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId([u8; 32]);

impl MessageId {
    /// The id of the broadcast of `receipt` by `origin`.
    pub fn of(receipt: &Receipt, origin: &NodeId) -> Self {
        let hash = blake3::Hasher::new_derive_key(MESSAGE_ID_CONTEXT)
            .update(&receipt.to_canonical_bytes())
            .update(origin.as_bytes())
            .finalize();
        Self(*hash.as_bytes())
    }

    /// The id with these bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl core::fmt::Debug for MessageId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "MessageId({self})")
    }
}

impl core::fmt::Display for MessageId {
    /// The first 8 bytes in hex.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The payload of a broadcast's [`AuthenticatedMessage`](hologram_receipt::AuthenticatedMessage):
/// `issued_ms u64 LE (8) ‖ body`.
///
/// The origin's signature covers the receipt of these bytes, so the issue time
/// cannot be changed in flight; receivers use it to refuse messages older than
/// their duplicate-suppression window (which is what keeps that memory bounded).
pub fn encode_envelope(issued_ms: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENVELOPE_HEADER + body.len());
    out.extend_from_slice(&issued_ms.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Splits a payload into (issue time, body), or `None` when it is shorter
/// than the header.
pub fn decode_envelope(payload: &[u8]) -> Option<(u64, &[u8])> {
    let (head, body) = payload.split_first_chunk::<ENVELOPE_HEADER>()?;
    Some((u64::from_le_bytes(*head), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_bind_receipt_and_origin() {
        let (a, b) = (NodeId::from_bytes([1; 32]), NodeId::from_bytes([2; 32]));
        let r1 = Receipt::from_bytes(&encode_envelope(5, b"x"));
        let r2 = Receipt::from_bytes(&encode_envelope(6, b"x"));
        assert_ne!(MessageId::of(&r1, &a), MessageId::of(&r1, &b));
        assert_ne!(MessageId::of(&r1, &a), MessageId::of(&r2, &a));
        assert_eq!(MessageId::of(&r1, &a), MessageId::of(&r1, &a));
        let expected = blake3::Hasher::new_derive_key("hologram broadcast-id v1")
            .update(&r1.to_canonical_bytes())
            .update(a.as_bytes())
            .finalize();
        assert_eq!(MessageId::of(&r1, &a).as_bytes(), expected.as_bytes());
    }

    #[test]
    fn envelopes_round_trip_and_short_payloads_are_refused() {
        let p = encode_envelope(0x0102_0304_0506_0708, b"body");
        assert_eq!(&p[..8], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(
            decode_envelope(&p),
            Some((0x0102_0304_0506_0708, &b"body"[..]))
        );
        assert_eq!(decode_envelope(&p[..7]), None);
        assert_eq!(
            decode_envelope(&p[..8]),
            Some((0x0102_0304_0506_0708, &b""[..]))
        );
    }
}
