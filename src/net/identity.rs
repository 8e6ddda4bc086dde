//! A node's key as TLS sees it: the raw public key (RFC 7250) a node
//! presents, the private key it signs its handshakes with, and the parsing
//! of the key a peer presents.
//!
//! A [`PeerId`] is an Ed25519 public key, so the identity a QUIC handshake
//! proves is the node id itself: there is no certificate, name or authority
//! in between. The key travels as a DER `SubjectPublicKeyInfo`, which for
//! Ed25519 (RFC 8410) is always the same 12 bytes followed by the 32 key
//! bytes; anything else is refused.

use hologram_lattice::PeerId;
use hologram_receipt::verifying_key;
use hologram_receipt::KeyPair;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use std::fmt;
use std::sync::Arc;

/// DER `SubjectPublicKeyInfo` of an Ed25519 key, before the 32 key bytes
/// (RFC 8410 §4): SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING }.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// DER PKCS#8 v1 `PrivateKeyInfo` of an Ed25519 key, before the 32 seed
/// bytes (RFC 8410 §7).
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why a peer's handshake was refused: the key it presented is not one this
/// node accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerAuthError {
    /// The peer presented something other than an Ed25519 public key (an
    /// X.509 certificate, garbage, another algorithm), of this many bytes.
    NotAnEd25519Key {
        /// The length of what was presented.
        len: usize,
    },
    /// The peer presented more than one certificate.
    Chain {
        /// How many it presented.
        len: usize,
    },
    /// The presented bytes are not a usable Ed25519 key (not a curve point,
    /// or a weak one).
    InvalidKey(PeerId),
    /// The dialed peer proved a key other than the one the address book
    /// promised.
    WrongKey {
        /// The node the caller meant to reach.
        expected: PeerId,
        /// The key the peer proved.
        presented: PeerId,
    },
    /// An inbound peer whose key is not in the allow-list.
    NotAllowed(PeerId),
}

impl fmt::Display for PeerAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAuthError::NotAnEd25519Key { len } => write!(
                f,
                "the peer presented {len} bytes that are not an Ed25519 public key"
            ),
            PeerAuthError::Chain { len } => write!(
                f,
                "the peer presented a chain of {len} certificates, not one raw key"
            ),
            PeerAuthError::InvalidKey(id) => {
                write!(
                    f,
                    "the peer presented {id}, which is not a valid Ed25519 key"
                )
            }
            PeerAuthError::WrongKey {
                expected,
                presented,
            } => write!(
                f,
                "the peer proved key {presented}, not the expected {expected}"
            ),
            PeerAuthError::NotAllowed(id) => {
                write!(f, "peer {id} is not in this node's allow-list")
            }
        }
    }
}

impl std::error::Error for PeerAuthError {}

/// The DER `SubjectPublicKeyInfo` of node `id`'s key.
pub(crate) fn spki(id: &PeerId) -> Vec<u8> {
    [&SPKI_PREFIX[..], id.as_bytes()].concat()
}

/// The node id whose key `der` (a raw public key as presented in a
/// handshake) encodes, if it is exactly an Ed25519 `SubjectPublicKeyInfo`
/// of a valid key.
pub(crate) fn peer_of_spki(der: &[u8]) -> Result<PeerId, PeerAuthError> {
    let not_a_key = || PeerAuthError::NotAnEd25519Key { len: der.len() };
    let key = der.strip_prefix(&SPKI_PREFIX[..]).ok_or_else(not_a_key)?;
    let key: [u8; 32] = key.try_into().map_err(|_| not_a_key())?;
    let id = PeerId::from_bytes(key);
    verifying_key(&id).map_err(|_| PeerAuthError::InvalidKey(id))?;
    Ok(id)
}

/// The peer a certificate list presented in a handshake proves: exactly one
/// raw Ed25519 key.
pub(crate) fn peer_of_chain(
    end_entity: &[u8],
    intermediates: usize,
) -> Result<PeerId, PeerAuthError> {
    if intermediates > 0 {
        return Err(PeerAuthError::Chain {
            len: intermediates + 1,
        });
    }
    peer_of_spki(end_entity)
}

/// The raw public key and signing key a node presents in its handshakes.
pub(crate) fn certified_key(keys: &KeyPair) -> Result<Arc<CertifiedKey>, rustls::Error> {
    let pkcs8 = [&PKCS8_PREFIX[..], &keys.to_seed()].concat();
    let signing = rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(pkcs8))?;
    let key = CertificateDer::from(spki(&keys.node_id()));
    Ok(Arc::new(CertifiedKey::new(vec![key], signing)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_nodes_key_round_trips() {
        let keys = KeyPair::from_seed([3; 32]);
        assert_eq!(peer_of_spki(&spki(&keys.node_id())), Ok(keys.node_id()));
        assert!(certified_key(&keys).is_ok());
    }

    #[test]
    fn an_invalid_point_is_refused() {
        // The identity point's encoding is a valid point of small order: weak.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let id = PeerId::from_bytes(weak);
        assert_eq!(peer_of_spki(&spki(&id)), Err(PeerAuthError::InvalidKey(id)));
    }

    #[test]
    fn a_chain_is_refused() {
        let id = KeyPair::from_seed([4; 32]).node_id();
        assert_eq!(
            peer_of_chain(&spki(&id), 1),
            Err(PeerAuthError::Chain { len: 2 })
        );
    }

    proptest! {
        /// Any bytes: an error or the key they encode, never a panic; only
        /// exactly prefix ‖ 32 bytes can decode.
        #[test]
        fn any_bytes_decode_safely(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            match peer_of_spki(&bytes) {
                Ok(id) => {
                    prop_assert_eq!(bytes.len(), 44);
                    prop_assert_eq!(&bytes[..12], &SPKI_PREFIX[..]);
                    prop_assert_eq!(&bytes[12..], id.as_bytes());
                }
                Err(PeerAuthError::NotAnEd25519Key { len }) => prop_assert_eq!(len, bytes.len()),
                Err(PeerAuthError::InvalidKey(_)) => prop_assert_eq!(bytes.len(), 44),
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }

        /// A real key with one byte of its encoding changed never decodes to
        /// the original key.
        #[test]
        fn a_changed_key_is_another_or_none(seed in any::<[u8; 32]>(), at in 0usize..44, flip in 1u8..) {
            let id = KeyPair::from_seed(seed).node_id();
            let mut der = spki(&id);
            der[at] ^= flip;
            prop_assert_ne!(peer_of_spki(&der).ok(), Some(id));
        }
    }
}
