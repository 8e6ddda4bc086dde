//! The inbound side: accepting connections within the cap, and serving each
//! peer's requests and messages to the node's handler within its budgets.

use super::book::AddressBook;
use super::config::QuicConfig;
use super::frame::{
    parse_request_header, read_body, read_header, Answer, FrameError, REQUEST_HEADER,
};
use super::identity::{peer_of_chain, PeerAuthError};
use super::telemetry;
use hologram_lattice::transport::{Handler, HandlerError, Protocol};
use hologram_lattice::PeerId;
use quinn::{Connection, Endpoint, Incoming, RecvStream, SendStream, VarInt};
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn, Instrument};

/// Connection close codes.
pub(crate) mod close {
    use quinn::VarInt;
    /// The endpoint shut down.
    pub(crate) const SHUTDOWN: VarInt = VarInt::from_u32(0);
    /// The peer's identity could not be read after the handshake.
    pub(crate) const UNAUTHENTICATED: VarInt = VarInt::from_u32(1);
    /// The same peer connected again; this older connection is dropped.
    pub(crate) const REPLACED: VarInt = VarInt::from_u32(2);
    /// Closed, idle, to make room for a new connection at the cap.
    pub(crate) const EVICTED: VarInt = VarInt::from_u32(3);
}

/// Stream stop/reset codes.
mod stream {
    use quinn::VarInt;
    /// The frame was malformed or over the limit.
    pub(super) const BAD_FRAME: VarInt = VarInt::from_u32(1);
    /// The frame did not arrive, or the answer was not taken, in time.
    pub(super) const DEADLINE: VarInt = VarInt::from_u32(2);
}

/// What the inbound side shares: the node, its handler and its budgets.
pub(crate) struct Shared {
    pub(crate) id: PeerId,
    pub(crate) config: QuicConfig,
    pub(crate) handler: Arc<dyn Handler>,
    /// Where peers listen (shared with the transport), and their labels.
    pub(crate) book: AddressBook,
    /// Frame bytes read from all peers and not yet handled.
    total: Arc<Semaphore>,
    inbound: Mutex<HashMap<PeerId, Arc<Inbound>>>,
    epoch: Instant,
}

/// An inbound connection, as the cap sees it.
struct Inbound {
    conn: Connection,
    /// Milliseconds since `epoch` at its last stream.
    last_active: AtomicU64,
    /// Streams being read or answered.
    busy: AtomicUsize,
}

impl Shared {
    /// The remote address of `peer`'s live inbound connection.
    pub(crate) fn inbound_address(&self, peer: &PeerId) -> Option<std::net::SocketAddr> {
        let inbound = lock(&self.inbound);
        let entry = inbound.get(peer)?;
        match entry.conn.close_reason() {
            None => Some(entry.conn.remote_address()),
            Some(_) => None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts a stream as busy while it lives.
struct Busy(Arc<Inbound>);

impl Busy {
    fn new(entry: &Arc<Inbound>, shared: &Shared) -> Busy {
        entry.busy.fetch_add(1, Ordering::SeqCst);
        entry
            .last_active
            .store(shared.epoch.elapsed().as_millis() as u64, Ordering::SeqCst);
        Busy(Arc::clone(entry))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    pub(crate) fn new(
        id: PeerId,
        config: QuicConfig,
        handler: Arc<dyn Handler>,
        book: AddressBook,
    ) -> Shared {
        let total = config.total_buffer.max(config.max_frame);
        Shared {
            id,
            config,
            handler,
            book,
            total: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
            inbound: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }

    /// Whether a new connection may be accepted: below the cap, or after
    /// closing the connection idle longest (one with no stream in flight).
    fn make_room(&self) -> bool {
        let mut inbound = lock(&self.inbound);
        if inbound.len() < self.config.max_connections {
            return true;
        }
        let idlest = inbound
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::SeqCst) == 0)
            .min_by_key(|(_, c)| c.last_active.load(Ordering::SeqCst))
            .map(|(peer, _)| *peer);
        match idlest.and_then(|peer| inbound.remove(&peer).map(|c| (peer, c))) {
            Some((peer, evicted)) => {
                info!(%peer, "closing the idlest inbound connection to make room");
                evicted
                    .conn
                    .close(close::EVICTED, b"closed, idle, to make room");
                true
            }
            None => false,
        }
    }
}

/// Accepts connections until the endpoint closes.
pub(crate) async fn accept_loop(endpoint: Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        if !shared.make_room() {
            warn!(
                remote = %incoming.remote_address(),
                limit = shared.config.max_connections,
                "refused a connection: every inbound connection is busy"
            );
            incoming.refuse();
            continue;
        }
        let span = tracing::info_span!("inbound", remote = %incoming.remote_address());
        tokio::spawn(serve_incoming(incoming, Arc::clone(&shared)).instrument(span));
    }
}

/// The authenticated peer of a connection: the key its handshake proved.
pub(crate) fn peer_of(conn: &Connection) -> Result<PeerId, PeerAuthError> {
    let chain = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(PeerAuthError::NotAnEd25519Key { len: 0 })?;
    match chain.split_first() {
        Some((first, rest)) => peer_of_chain(first, rest.len()),
        None => Err(PeerAuthError::NotAnEd25519Key { len: 0 }),
    }
}

async fn serve_incoming(incoming: Incoming, shared: Arc<Shared>) {
    // Anyone can try: refusals are logged at a bounded rate.
    let refused = |why: &str, error: &dyn std::fmt::Display| {
        if let Some(suppressed) = telemetry::DROPPED_LOG.allow() {
            warn!(%error, suppressed, "refused {why}");
        }
    };
    let handshake = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(e) => return refused("a connection", &e),
    };
    let conn = match tokio::time::timeout(shared.config.connect_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return refused("a handshake", &e),
        Err(_) => return refused("a handshake", &"it did not complete in time"),
    };
    let peer = match peer_of(&conn) {
        Ok(peer) => peer,
        Err(e) => {
            refused("a connection without a usable key", &e);
            return conn.close(close::UNAUTHENTICATED, b"no usable key");
        }
    };
    let entry = Arc::new(Inbound {
        conn: conn.clone(),
        last_active: AtomicU64::new(shared.epoch.elapsed().as_millis() as u64),
        busy: AtomicUsize::new(0),
    });
    if let Some(old) = lock(&shared.inbound).insert(peer, Arc::clone(&entry)) {
        debug!(%peer, "a peer connected again: closing its older connection");
        old.conn
            .close(close::REPLACED, b"replaced by a newer connection");
    }
    debug!(%peer, "connection accepted");
    ::metrics::counter!("hologram_transport_connections_total", "direction" => "in").increment(1);
    let budget = Arc::new(Semaphore::new(
        shared
            .config
            .peer_buffer
            .max(shared.config.max_frame)
            .min(Semaphore::MAX_PERMITS),
    ));
    let messages = tokio::spawn(
        serve_messages(
            conn.clone(),
            peer,
            Arc::clone(&entry),
            Arc::clone(&budget),
            Arc::clone(&shared),
        )
        .in_current_span(),
    );
    let reason = loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                let busy = Busy::new(&entry, &shared);
                let task =
                    serve_request(send, recv, peer, Arc::clone(&budget), Arc::clone(&shared));
                tokio::spawn(
                    async move {
                        task.await;
                        drop(busy);
                    }
                    .in_current_span(),
                );
            }
            Err(e) => break e,
        }
    };
    debug!(%peer, %reason, "connection closed");
    messages.abort();
    let mut inbound = lock(&shared.inbound);
    if inbound
        .get(&peer)
        .is_some_and(|c| c.conn.stable_id() == conn.stable_id())
    {
        inbound.remove(&peer);
    }
}

/// A frame read within its deadline, and the budget its bytes hold.
struct Frame {
    protocol: Protocol,
    payload: Vec<u8>,
    _held: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

/// Reads one request or message frame: its length checked before its body,
/// the bytes held against the peer's and the node's budgets, the whole
/// within the frame deadline.
async fn read_frame(
    recv: &mut RecvStream,
    from: &PeerId,
    budget: &Arc<Semaphore>,
    shared: &Shared,
) -> Result<Frame, FrameError> {
    let config = &shared.config;
    let read = async {
        let header = read_header::<REQUEST_HEADER>(recv).await?;
        let (protocol, len) = parse_request_header(header, config.max_frame)?;
        let permits = u32::try_from(len).map_err(|_| FrameError::TooLarge {
            size: len,
            max: config.max_frame,
        })?;
        let closed = |_| FrameError::Stream("the transport is closed".into());
        let peer = Arc::clone(budget)
            .acquire_many_owned(permits)
            .await
            .map_err(closed)?;
        let total = Arc::clone(&shared.total)
            .acquire_many_owned(permits)
            .await
            .map_err(closed)?;
        let payload = read_body(recv, len).await?;
        telemetry::received(protocol, &shared.book.label(from), payload.len());
        Ok(Frame {
            protocol,
            payload,
            _held: (peer, total),
        })
    };
    match tokio::time::timeout(config.frame_deadline, read).await {
        Ok(frame) => frame,
        Err(_) => Err(FrameError::Stream(format!(
            "the frame did not arrive within {:?}",
            config.frame_deadline
        ))),
    }
}

fn stop_code(e: &FrameError) -> VarInt {
    match e {
        FrameError::Stream(_) => stream::DEADLINE,
        _ => stream::BAD_FRAME,
    }
}

async fn serve_request(
    mut send: SendStream,
    mut recv: RecvStream,
    peer: PeerId,
    budget: Arc<Semaphore>,
    shared: Arc<Shared>,
) {
    let frame = match read_frame(&mut recv, &peer, &budget, &shared).await {
        Ok(frame) => frame,
        Err(e) => {
            ::metrics::counter!("hologram_transport_frames_refused_total").increment(1);
            if let Some(suppressed) = telemetry::DROPPED_LOG.allow() {
                warn!(%peer, error = %e, suppressed, "dropped a request");
            }
            let _ = recv.stop(stop_code(&e));
            let answer = match e {
                FrameError::TooLarge { .. } => Answer::Refused(e.to_string()),
                _ => return drop(send.reset(stop_code(&e))),
            };
            return write_answer(send, answer, &shared, peer).await;
        }
    };
    let Frame {
        protocol,
        payload,
        _held,
    } = frame;
    let handler = Arc::clone(&shared.handler);
    let run = tokio::spawn(async move { handler.request(peer, protocol, payload).await });
    let answer = match run.await {
        Ok(Ok(answer)) if answer.len() > shared.config.max_frame => {
            Answer::TooLarge(answer.len() as u64)
        }
        Ok(Ok(answer)) => Answer::Ok(answer),
        Ok(Err(HandlerError::Refused(why))) => Answer::Refused(why),
        Ok(Err(e)) => Answer::Failed(e.to_string()),
        Err(e) => {
            warn!(%peer, protocol = protocol.0, error = %e, "a request's handler panicked");
            Answer::Failed("the handler panicked".into())
        }
    };
    drop(_held);
    write_answer(send, answer, &shared, peer).await;
}

async fn write_answer(mut send: SendStream, answer: Answer, shared: &Shared, peer: PeerId) {
    let (header, body) = answer.encode();
    let write = async {
        send.write_all(&header).await?;
        send.write_all(&body).await?;
        send.finish().map_err(|_| quinn::WriteError::ClosedStream)
    };
    match tokio::time::timeout(shared.config.frame_deadline, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(%peer, error = %e, "an answer was not delivered"),
        Err(_) => {
            warn!(%peer, "an answer was not taken within the frame deadline");
            let _ = send.reset(stream::DEADLINE);
        }
    }
}

/// Hands a peer's messages to the handler one at a time, in the order
/// their streams were opened.
async fn serve_messages(
    conn: Connection,
    peer: PeerId,
    entry: Arc<Inbound>,
    budget: Arc<Semaphore>,
    shared: Arc<Shared>,
) {
    while let Ok(mut recv) = conn.accept_uni().await {
        let _busy = Busy::new(&entry, &shared);
        match read_frame(&mut recv, &peer, &budget, &shared).await {
            Ok(Frame {
                protocol,
                payload,
                _held,
            }) => {
                let handler = Arc::clone(&shared.handler);
                let run =
                    tokio::spawn(async move { handler.message(peer, protocol, payload).await });
                if let Err(e) = run.await {
                    warn!(%peer, protocol = protocol.0, error = %e, "a message's handler panicked");
                }
            }
            Err(e) => {
                ::metrics::counter!("hologram_transport_frames_refused_total").increment(1);
                if let Some(suppressed) = telemetry::DROPPED_LOG.allow() {
                    warn!(%peer, error = %e, suppressed, "dropped a message");
                }
                let _ = recv.stop(stop_code(&e));
            }
        }
    }
}
