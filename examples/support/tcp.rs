//! A [`Transport`] over TCP, on tokio: one page of what a real transport does.
//!
//! Shared by `examples/tcp_node.rs` and `tests/tcp_transport.rs` (each
//! includes this file with `#[path]`); it is not an example of its own, as
//! Cargo only discovers `examples/*.rs` and `examples/*/main.rs`.
//!
//! ## Frames
//!
//! Every frame on a connection is
//!
//! ```text
//! length: u32 LE ‖ header: postcard((kind: u8, id: u64, protocol: Protocol, from: PeerId)) ‖ payload
//! ```
//!
//! where `length` counts the header and the payload. `kind` is one of
//! [`Kind`]; `id` pairs a response with its request (0 for messages). A
//! reader checks `length` against the limit (`max_frame` plus
//! [`MAX_HEADER`]) *before* it allocates or reads the body, and closes the
//! connection on a larger one: a peer cannot make it buffer more than the
//! limit. A header that does not decode, a payload over `max_frame` or a
//! frame of the wrong kind for the connection also close it.
//!
//! ## Connections
//!
//! A node dials each peer once, when it first sends to it, using its address
//! book ([`TcpTransport::add_peer`]), and sends its requests and messages on
//! that connection; the peer answers each request on the same connection. So
//! two nodes that talk both ways hold two connections, each carrying one
//! direction's requests. Inbound requests are answered concurrently (one
//! task each); inbound messages are handled in order. A broken connection
//! fails its pending requests with [`TransportError::Io`] and is dialed
//! again by the next call.
//!
//! The `from` field is what the dialer claims to be: a real deployment
//! authenticates it (e.g. with the node's key in a handshake).

#![allow(dead_code)] // each includer uses a part of this module

use hologram::lattice::transport::{
    async_trait, check_frame, Handler, HandlerError, Protocol, Transport, TransportError,
};
use hologram::lattice::PeerId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as SyncMutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Mutex};
use tokio::task::{JoinHandle, JoinSet};

/// The most bytes a frame header takes (its postcard encoding is at most
/// 1 + 10 + 3 + 33 = 47 bytes).
pub const MAX_HEADER: usize = 64;

/// How long `send` waits to connect to a peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request; the payload is the handler's input.
    Request = 0,
    /// A successful response; the payload is the handler's output.
    Response = 1,
    /// A failed request; the payload is a postcard [`HandlerError`].
    Failed = 2,
    /// The answer was too large to send; the payload is its size, a postcard `u64`.
    TooLarge = 3,
    /// A one-way message.
    Message = 4,
}

impl Kind {
    fn from_u8(byte: u8) -> Option<Kind> {
        [
            Kind::Request,
            Kind::Response,
            Kind::Failed,
            Kind::TooLarge,
            Kind::Message,
        ]
        .into_iter()
        .find(|kind| *kind as u8 == byte)
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it is.
    pub kind: Kind,
    /// The request it belongs to.
    pub id: u64,
    /// Its protocol.
    pub protocol: Protocol,
    /// Who sent it (as claimed).
    pub from: PeerId,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Encodes a frame, length prefix included.
pub fn encode(
    kind: Kind,
    id: u64,
    protocol: Protocol,
    from: PeerId,
    payload: &[u8],
) -> Result<Vec<u8>, TransportError> {
    let header = postcard::to_allocvec(&(kind as u8, id, protocol, from))
        .map_err(|e| TransportError::Io(format!("cannot encode a header: {e}")))?;
    let length = header.len() + payload.len();
    let prefix = u32::try_from(length).map_err(|_| TransportError::TooLarge {
        size: length,
        max: u32::MAX as usize,
    })?;
    let mut frame = Vec::with_capacity(4 + length);
    frame.extend_from_slice(&prefix.to_le_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(payload);
    Ok(frame)
}

/// The body length a prefix announces, refused if over the limit for
/// payloads of `max_frame` bytes.
pub fn body_length(prefix: [u8; 4], max_frame: usize) -> Result<usize, TransportError> {
    let length = u32::from_le_bytes(prefix) as usize;
    check_frame(length, max_frame.saturating_add(MAX_HEADER))?;
    Ok(length)
}

/// Decodes a body (a frame without its prefix).
pub fn decode(mut body: Vec<u8>, max_frame: usize) -> Result<Frame, TransportError> {
    let ((kind, id, protocol, from), rest) =
        postcard::take_from_bytes::<(u8, u64, Protocol, PeerId)>(&body)
            .map_err(|e| TransportError::Io(format!("malformed frame header: {e}")))?;
    let kind =
        Kind::from_u8(kind).ok_or_else(|| TransportError::Io(format!("unknown kind {kind}")))?;
    check_frame(rest.len(), max_frame)?;
    let header = body.len() - rest.len();
    body.drain(..header);
    Ok(Frame {
        kind,
        id,
        protocol,
        from,
        payload: body,
    })
}

/// Reads one frame; `Ok(None)` at a clean end of the stream. The length is
/// checked before the body is allocated or read.
pub async fn read_frame(
    reader: &mut (impl AsyncRead + Unpin),
    max_frame: usize,
) -> Result<Option<Frame>, TransportError> {
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io_error(e)),
    }
    let mut body = vec![0u8; body_length(prefix, max_frame)?];
    reader.read_exact(&mut body).await.map_err(io_error)?;
    decode(body, max_frame).map(Some)
}

fn io_error(e: std::io::Error) -> TransportError {
    TransportError::Io(e.to_string())
}

/// Requests waiting for their answers on one connection.
type Pending = SyncMutex<HashMap<u64, oneshot::Sender<Result<Vec<u8>, TransportError>>>>;

/// An outgoing connection to one peer.
struct Link {
    writer: Mutex<OwnedWriteHalf>,
    pending: Arc<Pending>,
    broken: Arc<AtomicBool>,
    next_id: AtomicU64,
    reader: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Link {
    async fn dial(addr: SocketAddr, max_frame: usize) -> Result<Link, TransportError> {
        let stream = TcpStream::connect(addr).await.map_err(io_error)?;
        stream.set_nodelay(true).map_err(io_error)?;
        let (reader, writer) = stream.into_split();
        let pending = Arc::new(Pending::default());
        let broken = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_answers(
            reader,
            max_frame,
            Arc::clone(&pending),
            Arc::clone(&broken),
        ));
        Ok(Link {
            writer: Mutex::new(writer),
            pending,
            broken,
            next_id: AtomicU64::new(1),
            reader,
        })
    }

    /// Writes a whole frame. A write that fails, or is cancelled halfway
    /// (its caller timed out), leaves a partial frame on the stream: the
    /// connection is then marked broken, refuses further writes and is
    /// dialed again by the next call.
    async fn write(&self, frame: &[u8]) -> Result<(), TransportError> {
        let mut writer = self.writer.lock().await;
        if self.broken.load(Ordering::Acquire) {
            return Err(TransportError::Io("connection broken".into()));
        }
        let unfinished = Unfinished(&self.broken);
        writer.write_all(frame).await.map_err(io_error)?;
        std::mem::forget(unfinished);
        Ok(())
    }
}

/// Marks a connection broken when dropped: by an error return or a
/// cancellation before the write it guards finished.
struct Unfinished<'a>(&'a AtomicBool);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Removes a request from the pending map when its caller stops waiting
/// (answered, timed out or cancelled).
struct Waiting<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.id);
    }
}

fn lock<T>(mutex: &SyncMutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads the answers on an outgoing connection until it breaks, then fails
/// every request still waiting.
async fn read_answers(
    mut reader: OwnedReadHalf,
    max_frame: usize,
    pending: Arc<Pending>,
    broken: Arc<AtomicBool>,
) {
    let why = loop {
        let frame = match read_frame(&mut reader, max_frame).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break TransportError::Io("connection closed by the peer".into()),
            Err(e) => break e,
        };
        let answer = match frame.kind {
            Kind::Response => Ok(frame.payload),
            Kind::Failed => match postcard::from_bytes::<HandlerError>(&frame.payload) {
                Ok(e) => Err(e.into()),
                Err(e) => Err(TransportError::Io(format!("malformed error: {e}"))),
            },
            Kind::TooLarge => match postcard::from_bytes::<u64>(&frame.payload) {
                Ok(size) => Err(TransportError::TooLarge {
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    max: max_frame,
                }),
                Err(e) => Err(TransportError::Io(format!("malformed size: {e}"))),
            },
            Kind::Request | Kind::Message => {
                break TransportError::Io(format!("unexpected {:?} frame", frame.kind))
            }
        };
        if let Some(waiter) = lock(&pending).remove(&frame.id) {
            let _ = waiter.send(answer);
        }
    };
    broken.store(true, Ordering::Release);
    for (_, waiter) in lock(&pending).drain() {
        let _ = waiter.send(Err(why.clone()));
    }
}

/// A node's TCP transport: a listener serving a [`Handler`], and the
/// connections it dials to its peers.
#[derive(Clone)]
pub struct TcpTransport {
    inner: Arc<Inner>,
}

struct Inner {
    id: PeerId,
    max_frame: usize,
    local_addr: SocketAddr,
    book: SyncMutex<HashMap<PeerId, SocketAddr>>,
    links: Mutex<HashMap<PeerId, Arc<Link>>>,
    listener: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Also drops (and so aborts) every inbound connection's task.
        self.listener.abort();
    }
}

impl TcpTransport {
    /// Listens on `addr` (use port 0 for any free port) and serves inbound
    /// frames of up to `max_frame` payload bytes with `handler`. Must be
    /// called within a tokio runtime.
    pub async fn bind(
        id: PeerId,
        addr: SocketAddr,
        handler: Arc<dyn Handler>,
        max_frame: usize,
    ) -> std::io::Result<TcpTransport> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let listener = tokio::spawn(listen(listener, id, max_frame, handler));
        Ok(TcpTransport {
            inner: Arc::new(Inner {
                id,
                max_frame,
                local_addr,
                book: SyncMutex::new(HashMap::new()),
                links: Mutex::new(HashMap::new()),
                listener,
            }),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Records where peer `id` listens.
    pub fn add_peer(&self, id: PeerId, addr: SocketAddr) {
        lock(&self.inner.book).insert(id, addr);
    }

    /// The live connection to `to`, dialed if there is none.
    async fn link(&self, to: PeerId) -> Result<Arc<Link>, TransportError> {
        let addr = lock(&self.inner.book)
            .get(&to)
            .copied()
            .ok_or(TransportError::Unreachable(to))?;
        let mut links = self.inner.links.lock().await;
        if let Some(link) = links.get(&to) {
            if !link.broken.load(Ordering::Acquire) {
                return Ok(Arc::clone(link));
            }
        }
        let link = Arc::new(
            Link::dial(addr, self.inner.max_frame)
                .await
                .map_err(|_| TransportError::Unreachable(to))?,
        );
        links.insert(to, Arc::clone(&link));
        Ok(link)
    }

    async fn call(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: &[u8],
    ) -> Result<Vec<u8>, TransportError> {
        let link = self.link(to).await?;
        let id = link.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, waiter) = oneshot::channel();
        lock(&link.pending).insert(id, answer);
        let _waiting = Waiting {
            pending: &link.pending,
            id,
        };
        let frame = encode(Kind::Request, id, protocol, self.inner.id, payload)?;
        link.write(&frame).await?;
        waiter
            .await
            .unwrap_or_else(|_| Err(TransportError::Io("connection lost".into())))
    }
}

#[async_trait]
impl Transport for TcpTransport {
    fn local_id(&self) -> PeerId {
        self.inner.id
    }

    fn max_frame(&self) -> usize {
        self.inner.max_frame
    }

    async fn request(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        check_frame(payload.len(), self.inner.max_frame)?;
        tokio::time::timeout(timeout, self.call(to, protocol, &payload))
            .await
            .unwrap_or(Err(TransportError::TimedOut { peer: to, timeout }))
    }

    async fn send(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        check_frame(payload.len(), self.inner.max_frame)?;
        let link = tokio::time::timeout(CONNECT_TIMEOUT, self.link(to))
            .await
            .unwrap_or(Err(TransportError::Unreachable(to)))?;
        let frame = encode(Kind::Message, 0, protocol, self.inner.id, &payload)?;
        link.write(&frame).await
    }
}

/// Accepts connections and serves each in its own task until dropped.
async fn listen(listener: TcpListener, id: PeerId, max_frame: usize, handler: Arc<dyn Handler>) {
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                connections.spawn(serve(stream, id, max_frame, Arc::clone(&handler)));
            }
            // Out of file descriptors, say: wait a little, do not spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
        while connections.try_join_next().is_some() {}
    }
}

/// Serves one inbound connection until it ends or misbehaves; dropping the
/// stream closes it.
async fn serve(stream: TcpStream, id: PeerId, max_frame: usize, handler: Arc<dyn Handler>) {
    let (mut reader, writer) = stream.into_split();
    let writer = Arc::new(Mutex::new(writer));
    let mut answering = JoinSet::new();
    while let Ok(Some(frame)) = read_frame(&mut reader, max_frame).await {
        match frame.kind {
            Kind::Request => {
                answering.spawn(answer(
                    frame,
                    id,
                    max_frame,
                    Arc::clone(&handler),
                    Arc::clone(&writer),
                ));
            }
            Kind::Message => {
                handler
                    .message(frame.from, frame.protocol, frame.payload)
                    .await
            }
            Kind::Response | Kind::Failed | Kind::TooLarge => break,
        }
        while answering.try_join_next().is_some() {}
    }
}

/// Runs the handler on one request and writes its answer.
async fn answer(
    request: Frame,
    id: PeerId,
    max_frame: usize,
    handler: Arc<dyn Handler>,
    writer: Arc<Mutex<OwnedWriteHalf>>,
) {
    let (kind, payload) = match handler
        .request(request.from, request.protocol, request.payload)
        .await
    {
        Ok(out) if out.len() <= max_frame => (Kind::Response, out),
        // Encoding a u64 or a HandlerError into a Vec cannot fail; were it
        // to, the empty payload reads as malformed on the other side.
        Ok(out) => (
            Kind::TooLarge,
            postcard::to_allocvec(&(out.len() as u64)).unwrap_or_default(),
        ),
        Err(e) => (Kind::Failed, postcard::to_allocvec(&e).unwrap_or_default()),
    };
    if let Ok(frame) = encode(kind, request.id, request.protocol, id, &payload) {
        // A write error means the connection is gone; its reader ends too.
        let _ = writer.lock().await.write_all(&frame).await;
    }
}
