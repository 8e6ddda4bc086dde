//! A raw QUIC client for the hostile tests: it speaks to a node with any
//! key or none, and writes whatever bytes a test wants on its streams. Its
//! encodings of keys are written out here independently of the library's.

use hologram::receipt::KeyPair;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, Endpoint};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;

/// Accepts any server that signs with the raw key it shows.
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("no TLS 1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        #[allow(deprecated)]
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        let spki = cert.as_ref().into();
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// Connects to `addr` presenting `keys` (or no key at all).
pub async fn connect(addr: SocketAddr, keys: Option<&KeyPair>) -> Result<Connection, String> {
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer));
    let mut tls = match keys {
        None => builder.with_no_client_auth(),
        Some(keys) => {
            let spki = [
                &[
                    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
                ][..],
                keys.node_id().as_bytes(),
            ]
            .concat();
            let pkcs8 = [
                &[
                    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04,
                    0x22, 0x04, 0x20,
                ][..],
                &keys.to_seed(),
            ]
            .concat();
            let signing =
                rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(pkcs8))
                    .map_err(|e| e.to_string())?;
            let key = rustls::sign::CertifiedKey::new(vec![spki.into()], signing);
            builder.with_client_cert_resolver(Arc::new(
                rustls::client::AlwaysResolvesClientRawPublicKeys::new(Arc::new(key)),
            ))
        }
    };
    tls.alpn_protocols = vec![b"hologram/1".to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let endpoint =
        Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).map_err(|e| e.to_string())?;
    let connecting = endpoint
        .connect_with(quinn::ClientConfig::new(Arc::new(crypto)), addr, "hologram")
        .map_err(|e| e.to_string())?;
    connecting.await.map_err(|e| e.to_string())
}

/// A request header: protocol, announced length.
pub fn header(protocol: u16, len: u32) -> Vec<u8> {
    [&protocol.to_le_bytes()[..], &len.to_le_bytes()].concat()
}

/// A well-formed `PING` request on `conn`; the node's answer.
pub async fn ping(conn: &Connection) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let frame = [
        header(hologram::lattice::transport::Protocol::PING.0, 4),
        b"ping".to_vec(),
    ]
    .concat();
    send.write_all(&frame).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    recv.read_to_end(1024).await.map_err(|e| e.to_string())
}
