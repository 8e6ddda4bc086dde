//! [`QuicTransport`]: the endpoint, the outbound connections, and the
//! [`Transport`] calls over them.

use super::book::AddressBook;
use super::config::QuicConfig;
use super::frame::{
    answer_of, parse_answer_header, read_body, read_header, request_header, Answer, ANSWER_HEADER,
};
use super::serve::{accept_loop, close, peer_of, Shared};
use super::telemetry;
use super::verify::{client_tls, server_tls, ServerVerifier};
use super::NetError;
use hologram_lattice::transport::{
    async_trait, check_frame, Handler, Protocol, Transport, TransportError,
};
use hologram_lattice::PeerId;
use hologram_receipt::KeyPair;
use metrics::SharedString;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, ConnectionError, Endpoint, EndpointConfig, TransportErrorCode, VarInt};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// The name dialed in every handshake; the verifiers ignore it (a peer is
/// known by its key).
const SERVER_NAME: &str = "hologram";

/// A node's QUIC transport: an endpoint serving the node's [`Handler`], and
/// one connection per peer it calls, authenticated by node key both ways.
/// See the [module docs](super) for the wire format, limits and policies.
#[derive(Clone)]
pub struct QuicTransport {
    inner: Arc<Inner>,
}

/// A connection to a peer, when it was last used, and whether the peer
/// fell silent on it.
#[derive(Clone)]
struct Link {
    conn: Connection,
    last_used: Arc<Mutex<Instant>>,
    /// A call timed out without a single datagram from the peer meanwhile:
    /// it may have died (a killed peer sends no goodbye, and the
    /// connection would only close at the idle timeout), so the next call
    /// dials again. A slow handler's peer still acknowledges, so it keeps
    /// its connection.
    silent: Arc<AtomicBool>,
}

impl Link {
    fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
    }

    /// Usable for a new call to `addr`: open, to that address, and used
    /// within `fresh` (an older one may be about to close for idleness).
    fn usable(&self, addr: SocketAddr, fresh: Duration) -> bool {
        self.conn.close_reason().is_none()
            && !self.silent.load(Ordering::SeqCst)
            && self.conn.remote_address() == addr
            && lock(&self.last_used).elapsed() < fresh
    }
}

/// A peer's connection, if it has one, locked while it is dialed.
type Slot = Arc<tokio::sync::Mutex<Option<Link>>>;

struct Inner {
    keys: KeyPair,
    shared: Arc<Shared>,
    endpoint: Endpoint,
    local_addr: SocketAddr,
    /// Each peer's connection, behind a lock of its own: dialing one peer
    /// never holds up calls to another.
    links: Mutex<HashMap<PeerId, Slot>>,
    client_transport: Arc<quinn::TransportConfig>,
    closed: AtomicBool,
    accept: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.endpoint.close(close::SHUTDOWN, b"shut down");
        self.accept.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The key of the endpoint's stateless resets, derived from the node key: a
/// node restarted with the same key can reset the connections its previous
/// run held, so their peers learn at once that they are gone.
fn reset_key(keys: &KeyPair) -> ring::hmac::Key {
    let seed = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &keys.to_seed());
    let derived = ring::hmac::sign(&seed, b"hologram quic stateless reset v1");
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
}

/// The largest UDP payload that still leaves room for segmentation offload
/// (GSO): quinn hands the kernel up to 10 datagrams in one send, and the
/// kernel refuses a send of more than 64 KiB, so above this size a batch
/// would be dropped whole; such endpoints send datagram by datagram.
const GSO_PAYLOAD: usize = 6_500;

/// QUIC's limits from ours: `serving` for the endpoint's inbound side
/// (streams the peer may open), otherwise for dialed connections (on which
/// the peer opens none).
fn transport_config(
    config: &QuicConfig,
    serving: bool,
) -> Result<quinn::TransportConfig, NetError> {
    let mut t = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout).map_err(|_| {
        NetError::Config(format!(
            "idle timeout {:?} is too long",
            config.idle_timeout
        ))
    })?;
    t.max_idle_timeout(Some(idle));
    let (bidi, uni) = if serving {
        (config.max_requests_per_peer, config.max_messages_per_peer)
    } else {
        (0, 0)
    };
    t.max_concurrent_bidi_streams(VarInt::from_u32(bidi));
    t.max_concurrent_uni_streams(VarInt::from_u32(uni));
    let window = config
        .peer_buffer
        .max(config.max_frame)
        .min(u32::MAX as usize) as u32;
    t.receive_window(VarInt::from_u32(window));
    // Probing upward from 1200 bytes is safe on any path (a lost probe is
    // not taken for congestion); the peer's own `max_udp_payload` caps it.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(config.max_udp_payload);
    t.mtu_discovery_config(Some(mtu));
    if usize::from(config.max_udp_payload) > GSO_PAYLOAD {
        t.enable_segmentation_offload(false);
    }
    Ok(t)
}

/// Asks the kernel for `bytes` of send and receive buffer on `socket`; it
/// may grant less (its cap is no error).
fn size_socket_buffers(socket: &std::net::UdpSocket, bytes: usize) -> std::io::Result<()> {
    let state = quinn::udp::UdpSocketState::new(socket.into())?;
    state.set_recv_buffer_size(socket.into(), bytes)?;
    state.set_send_buffer_size(socket.into(), bytes)?;
    debug!(
        recv = state.recv_buffer_size(socket.into())?,
        send = state.send_buffer_size(socket.into())?,
        gso_segments = state.max_gso_segments(),
        gro_segments = state.gro_segments(),
        "UDP socket sized"
    );
    Ok(())
}

impl QuicTransport {
    /// Listens on `addr` (port 0 for any free port) as node `keys`, serving
    /// inbound frames with `handler`, dialing peers where `book` says, within
    /// the limits of `config`. Records its own address in `book` (so the node
    /// can call itself). Must be called within a tokio runtime.
    pub fn bind(
        keys: &KeyPair,
        addr: SocketAddr,
        handler: Arc<dyn Handler>,
        book: AddressBook,
        config: QuicConfig,
    ) -> Result<QuicTransport, NetError> {
        let id = keys.node_id();
        if config.max_frame > u32::MAX as usize {
            return Err(NetError::Config(format!(
                "max_frame {} is over the wire's limit of {} bytes",
                config.max_frame,
                u32::MAX
            )));
        }
        if !(1200..=65527).contains(&config.max_udp_payload) {
            return Err(NetError::Config(format!(
                "max_udp_payload {} is not within 1200..=65527",
                config.max_udp_payload
            )));
        }
        let tls_error = |e: rustls::Error| NetError::Tls(e.to_string());
        let allowed = config.allowed.clone().map(|mut allowed| {
            allowed.insert(id);
            allowed
        });
        let server_tls = server_tls(keys, allowed).map_err(tls_error)?;
        let server_crypto =
            QuicServerConfig::try_from(server_tls).map_err(|e| NetError::Tls(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(Arc::new(transport_config(&config, true)?));
        server.max_incoming(config.max_connections.max(1));
        let mut endpoint_config = EndpointConfig::new(Arc::new(reset_key(keys)));
        endpoint_config
            .max_udp_payload_size(config.max_udp_payload)
            .map_err(|_| {
                NetError::Config(format!(
                    "max_udp_payload {} is not within 1200..=65527",
                    config.max_udp_payload
                ))
            })?;
        let socket = std::net::UdpSocket::bind(addr).map_err(|e| NetError::Bind(addr, e))?;
        size_socket_buffers(&socket, config.socket_buffer).map_err(|e| NetError::Bind(addr, e))?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| NetError::Config("no tokio runtime is running".into()))?;
        let endpoint = Endpoint::new(endpoint_config, Some(server), socket, runtime)
            .map_err(|e| NetError::Bind(addr, e))?;
        let local_addr = endpoint.local_addr().map_err(|e| NetError::Bind(addr, e))?;
        let mut myself = local_addr;
        if myself.ip().is_unspecified() {
            myself.set_ip(match myself.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        book.insert(id, myself);
        let client_transport = Arc::new(transport_config(&config, false)?);
        let shared = Arc::new(Shared::new(id, config, handler, book));
        let accept = tokio::spawn(accept_loop(endpoint.clone(), Arc::clone(&shared)));
        info!(node = %id, %local_addr, "QUIC transport listening");
        Ok(QuicTransport {
            inner: Arc::new(Inner {
                keys: keys.clone(),
                shared,
                endpoint,
                local_addr,
                links: Mutex::new(HashMap::new()),
                client_transport,
                closed: AtomicBool::new(false),
                accept,
            }),
        })
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The address book this transport dials from.
    pub fn book(&self) -> &AddressBook {
        &self.inner.shared.book
    }

    /// Where `peer`'s live connection to this endpoint comes from, if it
    /// has one: since a transport sends from the socket it listens on, the
    /// address it listens at (behind no translation). The connection's
    /// handshake proved `peer`'s key.
    pub fn inbound_address(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.inner.shared.inbound_address(peer)
    }

    /// The limits this transport was bound with.
    pub fn config(&self) -> &QuicConfig {
        &self.inner.shared.config
    }

    /// Closes every connection and stops serving; later calls fail with
    /// [`TransportError::Closed`]. The port is free once every clone of the
    /// transport is dropped.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.endpoint.close(close::SHUTDOWN, b"shut down");
        self.inner.accept.abort();
        info!(node = %self.inner.shared.id, "QUIC transport closed");
    }

    /// The live connection to `to`, dialed if there is none.
    async fn link(&self, to: PeerId) -> Result<Link, TransportError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(TransportError::Closed);
        }
        let addr = self
            .inner
            .shared
            .book
            .get(&to)
            .ok_or(TransportError::Unreachable(to))?;
        let slot = Arc::clone(lock(&self.inner.links).entry(to).or_default());
        let mut slot = slot.lock().await;
        let fresh = self.inner.shared.config.idle_timeout / 2;
        if let Some(link) = slot.as_ref().filter(|link| link.usable(addr, fresh)) {
            return Ok(link.clone());
        }
        let link = self.dial(to, addr).await?;
        *slot = Some(link.clone());
        Ok(link)
    }

    async fn dial(&self, to: PeerId, addr: SocketAddr) -> Result<Link, TransportError> {
        let verifier = Arc::new(ServerVerifier::new(to));
        let tls = client_tls(&self.inner.keys, Arc::clone(&verifier))
            .map_err(|e| TransportError::Io(format!("TLS configuration: {e}")))?;
        let crypto = QuicClientConfig::try_from(tls)
            .map_err(|e| TransportError::Io(format!("TLS configuration: {e}")))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(Arc::clone(&self.inner.client_transport));
        let connecting = self
            .inner
            .endpoint
            .connect_with(config, addr, SERVER_NAME)
            .map_err(|e| match e {
                quinn::ConnectError::EndpointStopping => TransportError::Closed,
                other => TransportError::Io(format!("cannot dial {to} at {addr}: {other}")),
            })?;
        let conn = match connecting.await {
            Ok(conn) => conn,
            Err(e) => {
                if let Some(refusal) = verifier.refusal() {
                    warn!(peer = %to, %addr, error = %refusal, "refused a peer's handshake");
                    return Err(TransportError::Io(format!(
                        "authentication of {to} at {addr} failed: {refusal}"
                    )));
                }
                warn!(peer = %to, %addr, error = %e, "could not connect");
                return Err(connection_error(to, addr, e));
            }
        };
        // The verifier checked the key; check again what the connection holds.
        match peer_of(&conn) {
            Ok(peer) if peer == to => {}
            other => {
                conn.close(close::UNAUTHENTICATED, b"unexpected key");
                return Err(TransportError::Io(format!(
                    "authentication of {to} at {addr} failed: the connection proved {other:?}"
                )));
            }
        }
        debug!(peer = %to, %addr, "connected");
        ::metrics::counter!("hologram_transport_connections_total", "direction" => "out")
            .increment(1);
        Ok(Link {
            conn,
            last_used: Arc::new(Mutex::new(Instant::now())),
            silent: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Opens a stream to `to` with `open`, dialing again once if the
    /// connection turned out to be gone before anything was sent on it.
    /// Returns the connection's link with the stream.
    async fn open<S, F, Fut>(&self, to: PeerId, open: F) -> Result<(Link, S), TransportError>
    where
        F: Fn(Connection) -> Fut,
        Fut: std::future::Future<Output = Result<S, ConnectionError>>,
    {
        let link = self.link(to).await?;
        link.touch();
        match open(link.conn.clone()).await {
            Ok(stream) => Ok((link, stream)),
            Err(e) => {
                debug!(peer = %to, error = %e, "connection gone; dialing again");
                let link = self.link(to).await?;
                link.touch();
                match open(link.conn.clone()).await {
                    Ok(stream) => Ok((link, stream)),
                    Err(e) => Err(connection_error(to, link.conn.remote_address(), e)),
                }
            }
        }
    }

    /// A request and its answer, by `deadline` (the caller's timeout).
    async fn call(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: &[u8],
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let timed_out = TransportError::TimedOut { peer: to, timeout };
        let opened = tokio::time::timeout_at(
            deadline,
            self.open(to, |c| async move { c.open_bi().await }),
        );
        let (link, (mut send, mut recv)) = opened.await.map_err(|_| timed_out.clone())??;
        let conn = &link.conn;
        let heard = conn.stats().udp_rx.datagrams;
        let max = self.inner.shared.config.max_frame;
        let exchange = async {
            let header = request_header(protocol, payload.len())?;
            let io = |e: quinn::WriteError| TransportError::Io(format!("writing to {to}: {e}"));
            send.write_all(&header).await.map_err(io)?;
            send.write_all(payload).await.map_err(io)?;
            send.finish()
                .map_err(|_| TransportError::Io(format!("writing to {to}: stream closed")))?;
            let header = read_header::<ANSWER_HEADER>(&mut recv).await?;
            let (status, len) = parse_answer_header(header, max).inspect_err(|e| {
                let _ = recv.stop(VarInt::from_u32(1));
                warn!(peer = %to, error = %e, "refused an answer");
            })?;
            let body = read_body(&mut recv, len).await?;
            Ok::<_, TransportError>(answer_of(status, body)?)
        };
        let Ok(answer) = tokio::time::timeout_at(deadline, exchange).await else {
            if conn.stats().udp_rx.datagrams == heard {
                debug!(peer = %to, "no datagram from the peer during a whole call: will dial again");
                link.silent.store(true, Ordering::SeqCst);
            }
            return Err(timed_out);
        };
        match answer.map_err(|e| lost(to, conn, e))? {
            Answer::Ok(answer) => Ok(answer),
            Answer::Refused(why) => Err(TransportError::Refused(why)),
            Answer::Failed(why) => Err(TransportError::Remote(why)),
            Answer::TooLarge(size) => Err(TransportError::TooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                max,
            }),
        }
    }
}

/// A stream's error `e`, or why its connection closed if it did (the
/// peer refused the handshake after all, went away, or reset it).
fn lost(to: PeerId, conn: &Connection, e: TransportError) -> TransportError {
    match conn.close_reason() {
        Some(reason) => connection_error(to, conn.remote_address(), reason),
        None => e,
    }
}

/// The caller's error for a connection that failed or closed.
fn connection_error(to: PeerId, addr: SocketAddr, e: ConnectionError) -> TransportError {
    match e {
        ConnectionError::ConnectionClosed(close)
            if close.error_code == TransportErrorCode::CONNECTION_REFUSED =>
        {
            TransportError::Refused(format!(
                "{to} at {addr} refused the connection: it is at its connection limit"
            ))
        }
        ConnectionError::ConnectionClosed(close) => {
            TransportError::Refused(format!("{to} at {addr} closed the connection: {close}"))
        }
        ConnectionError::ApplicationClosed(close) => {
            TransportError::Io(format!("{to} at {addr} closed the connection: {close}"))
        }
        ConnectionError::TimedOut => TransportError::Unreachable(to),
        ConnectionError::LocallyClosed => TransportError::Closed,
        other => TransportError::Io(format!("connection to {to} at {addr}: {other}")),
    }
}

#[async_trait]
impl Transport for QuicTransport {
    fn local_id(&self) -> PeerId {
        self.inner.shared.id
    }

    fn max_frame(&self) -> usize {
        self.inner.shared.config.max_frame
    }

    /// The timeout covers dialing, the handshake, writing and the answer.
    async fn request(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        check_frame(payload.len(), self.max_frame())?;
        let deadline = tokio::time::Instant::now() + timeout;
        let peer = self.inner.shared.book.label(&to);
        telemetry::sent(protocol, &peer, payload.len(), true);
        let answer = self.call(to, protocol, &payload, deadline, timeout).await;
        if let Err(e) = &answer {
            telemetry::failed(protocol, &peer, e);
        }
        answer
    }

    async fn send(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        let peer = self.inner.shared.book.label(&to);
        let sent = self.send_message(to, protocol, &peer, payload).await;
        if let Err(e) = &sent {
            telemetry::failed(protocol, &peer, e);
        }
        sent
    }
}

impl QuicTransport {
    /// [`Transport::send`], uncounted.
    async fn send_message(
        &self,
        to: PeerId,
        protocol: Protocol,
        peer: &SharedString,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        let config = &self.inner.shared.config;
        check_frame(payload.len(), config.max_frame)?;
        telemetry::sent(protocol, peer, payload.len(), false);
        let header = request_header(protocol, payload.len())?;
        let (link, mut stream) = tokio::time::timeout(
            config.connect_timeout,
            self.open(to, |c| async move { c.open_uni().await }),
        )
        .await
        .unwrap_or(Err(TransportError::Unreachable(to)))?;
        let write = async {
            stream.write_all(&header).await?;
            stream.write_all(&payload).await?;
            stream.finish().map_err(|_| quinn::WriteError::ClosedStream)
        };
        match tokio::time::timeout(config.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(lost(
                to,
                &link.conn,
                TransportError::Io(format!("writing to {to}: {e}")),
            )),
            Err(_) => Err(TransportError::Io(format!(
                "the message was not written within {:?}",
                config.write_timeout
            ))),
        }
    }
}
