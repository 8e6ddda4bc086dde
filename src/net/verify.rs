//! The TLS configurations of a node: TLS 1.3 only, raw Ed25519 public keys
//! both ways, and the custom verifiers that accept a handshake only when the
//! peer proves the key it should.
//!
//! Outbound, the verifier knows which node the caller meant
//! ([`ServerVerifier`] holds the expected [`PeerId`]); inbound, it accepts
//! any valid key or only those of an allow-list ([`ClientVerifier`]). A
//! client that presents no key is refused by the server (client
//! authentication is mandatory). Session resumption and 0-RTT are off, so
//! every connection is a full handshake with fresh signatures by both keys:
//! a replayed handshake fails.

use super::identity::{certified_key, peer_of_chain, PeerAuthError};
use hologram_lattice::PeerId;
use hologram_receipt::KeyPair;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{AlwaysResolvesClientRawPublicKeys, Resumption};
use rustls::crypto::{
    verify_tls13_signature_with_raw_key, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The ALPN protocol of hologram's QUIC transport, version 1.
pub(crate) const ALPN: &[u8] = b"hologram/1";

/// The provider every config uses: `ring` (it builds without the C and
/// assembler tools `aws-lc-rs` needs). rustls 0.23.48 deprecates it for
/// lacking post-quantum key exchange; its X25519 key exchange and Ed25519
/// signatures are what every connection here uses.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn refuse(e: PeerAuthError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Checks the handshake signature: Ed25519 only, by the presented key.
fn verify_signature(
    algorithms: &WebPkiSupportedAlgorithms,
    message: &[u8],
    key: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ));
    }
    let spki = SubjectPublicKeyInfoDer::from(key.as_ref());
    verify_tls13_signature_with_raw_key(message, &spki, dss, algorithms)
}

/// The signature half of both verifiers: TLS 1.3 only, raw Ed25519 keys
/// only, the handshake signed by the presented key.
macro_rules! raw_ed25519_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.2 is not supported".into()))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_signature(&self.algorithms, message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ED25519]
        }

        fn requires_raw_public_keys(&self) -> bool {
            true
        }
    };
}

/// The client's check of a server: it must prove `expected`'s key.
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    expected: PeerId,
    algorithms: WebPkiSupportedAlgorithms,
    /// Why the last handshake was refused, for the caller's error.
    refusal: Mutex<Option<PeerAuthError>>,
}

impl ServerVerifier {
    pub(crate) fn new(expected: PeerId) -> ServerVerifier {
        ServerVerifier {
            expected,
            algorithms: provider().signature_verification_algorithms,
            refusal: Mutex::new(None),
        }
    }

    /// Why this verifier refused the server, if it did.
    pub(crate) fn refusal(&self) -> Option<PeerAuthError> {
        self.refusal.lock().map(|r| r.clone()).unwrap_or(None)
    }

    fn check(&self, end_entity: &[u8], intermediates: usize) -> Result<(), PeerAuthError> {
        let presented = peer_of_chain(end_entity, intermediates)?;
        if presented != self.expected {
            return Err(PeerAuthError::WrongKey {
                expected: self.expected,
                presented,
            });
        }
        Ok(())
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check(end_entity, intermediates.len()) {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(e) => {
                if let Ok(mut slot) = self.refusal.lock() {
                    *slot = Some(e.clone());
                }
                Err(refuse(e))
            }
        }
    }

    raw_ed25519_signatures!();
}

/// The server's check of a client: a valid key, in the allow-list if there
/// is one.
#[derive(Debug)]
pub(crate) struct ClientVerifier {
    allowed: Option<HashSet<PeerId>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let peer = peer_of_chain(end_entity, intermediates.len()).map_err(refuse)?;
        match &self.allowed {
            Some(allowed) if !allowed.contains(&peer) => {
                Err(refuse(PeerAuthError::NotAllowed(peer)))
            }
            _ => Ok(ClientCertVerified::assertion()),
        }
    }

    raw_ed25519_signatures!();
}

/// The TLS server side of node `keys`: presents its key, requires the
/// client's, accepting any valid key or only `allowed`.
pub(crate) fn server_tls(
    keys: &KeyPair,
    allowed: Option<HashSet<PeerId>>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = provider();
    let verifier = ClientVerifier {
        allowed,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(
            certified_key(keys)?,
        )));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(config)
}

/// The TLS client side of node `keys` dialing a peer checked by `verifier`.
pub(crate) fn client_tls(
    keys: &KeyPair,
    verifier: Arc<ServerVerifier>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(
            certified_key(keys)?,
        )));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = Resumption::disabled();
    config.enable_early_data = false;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No session tickets, no resumption, no 0-RTT: every connection is a
    /// full handshake signed by both keys, so a recorded one cannot be
    /// replayed or resumed without the keys.
    #[test]
    fn every_connection_is_a_full_handshake() {
        let keys = KeyPair::from_seed([5; 32]);
        let server = server_tls(&keys, None).unwrap();
        assert_eq!(server.send_tls13_tickets, 0);
        assert_eq!(server.max_early_data_size, 0);
        assert!(!server.session_storage.can_cache());
        let verifier = Arc::new(ServerVerifier::new(keys.node_id()));
        let client = client_tls(&keys, verifier).unwrap();
        // (The server keeps no sessions and issues no tickets, so nothing
        // can be resumed whatever a client offers.)
        assert!(!client.enable_early_data);
        assert_eq!(client.alpn_protocols, vec![ALPN.to_vec()]);
        assert_eq!(server.alpn_protocols, vec![ALPN.to_vec()]);
    }
}
