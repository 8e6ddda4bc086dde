//! The inbound side: accepting connections within a cap, serving each one
//! with read and write deadlines, closing idle ones.

use super::frame::{encode, read_rest, Frame, Kind};
use super::link::lock;
use super::TcpConfig;
use futures::FutureExt;
use hologram::lattice::transport::{Handler, HandlerError, Protocol};
use hologram::lattice::PeerId;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinSet;

/// Requests one connection may have in its handler at once; past that the
/// connection is not read until one is answered.
const MAX_IN_FLIGHT: usize = 64;

/// What the node serves with: its id, limits and handler.
#[derive(Clone)]
struct Serving {
    id: PeerId,
    config: TcpConfig,
    handler: Arc<dyn Handler>,
}

/// One inbound connection, as the cap sees it.
struct Conn {
    /// Frames being read and requests being answered.
    busy: AtomicUsize,
    /// When it last became idle.
    idle_since: SyncMutex<Instant>,
    /// Tells the connection to close.
    close: Notify,
}

impl Conn {
    /// Marks the connection busy until the guard is dropped.
    fn busy(self: &Arc<Conn>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(self))
    }
}

struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            *lock(&self.0.idle_since) = Instant::now();
        }
    }
}

/// The open inbound connections, at most `max` of them.
#[derive(Default)]
struct Gate {
    open: SyncMutex<BTreeMap<u64, Arc<Conn>>>,
    next: AtomicUsize,
}

impl Gate {
    /// Admits a new connection. At the cap, the connection idle longest is
    /// told to close to make room; if every one is busy, `None`: refused.
    fn admit(&self, max: usize) -> Option<(u64, Arc<Conn>)> {
        let mut open = lock(&self.open);
        if open.len() >= max {
            let idlest = open
                .iter()
                .filter(|(_, conn)| conn.busy.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, conn)| *lock(&conn.idle_since))
                .map(|(key, _)| *key)?;
            if let Some(conn) = open.remove(&idlest) {
                conn.close.notify_one();
            }
        }
        let key = self.next.fetch_add(1, Ordering::Relaxed) as u64;
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            idle_since: SyncMutex::new(Instant::now()),
            close: Notify::new(),
        });
        open.insert(key, Arc::clone(&conn));
        Some((key, conn))
    }
}

/// Takes a connection out of the gate when its task ends.
struct Admitted<'a> {
    gate: &'a Gate,
    key: u64,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        lock(&self.gate.open).remove(&self.key);
    }
}

/// Accepts connections and serves each in its own task until dropped.
pub async fn listen(
    listener: TcpListener,
    id: PeerId,
    config: TcpConfig,
    handler: Arc<dyn Handler>,
) {
    let serving = Serving {
        id,
        config,
        handler,
    };
    let gate = Arc::new(Gate::default());
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => match gate.admit(serving.config.max_inbound) {
                Some((key, conn)) => {
                    let _ = stream.set_nodelay(true);
                    let (gate, serving) = (Arc::clone(&gate), serving.clone());
                    connections.spawn(async move {
                        let _admitted = Admitted { gate: &gate, key };
                        serve(stream, serving, conn).await
                    });
                }
                None => refuse(stream, serving.id, serving.config.max_inbound),
            },
            // Out of file descriptors, say: wait a little, do not spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
        while connections.try_join_next().is_some() {}
    }
}

/// Refuses a connection over the cap: a goodbye if the socket takes it at
/// once (it never waits), then the socket is closed.
fn refuse(stream: TcpStream, id: PeerId, max: usize) {
    let why = format!("at its limit of {max} inbound connections, all busy");
    if let Ok(frame) = encode(Kind::Goodbye, 0, Protocol(0), id, why.as_bytes()) {
        let _ = stream.try_write(&frame);
    }
}

/// Serves one inbound connection until it ends, misbehaves, stalls a frame
/// past the deadline, stays idle past the idle timeout or is told to close.
async fn serve(stream: TcpStream, serving: Serving, conn: Arc<Conn>) {
    let (mut reader, writer) = stream.into_split();
    let writer = Arc::new(Mutex::new(writer));
    let config = serving.config.clone();
    let mut answering = JoinSet::new();
    let why = loop {
        let mut first = [0u8; 1];
        let idle = tokio::time::sleep(config.idle_timeout);
        let read = tokio::select! {
            read = reader.read(&mut first), if answering.len() < MAX_IN_FLIGHT => read,
            Some(_) = answering.join_next(), if !answering.is_empty() => continue,
            () = conn.close.notified() => break "closed to make room for a new connection",
            () = idle, if answering.is_empty() => break "idle for too long",
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let busy = conn.busy();
        let frame = match read_rest(
            &mut reader,
            first[0],
            config.max_frame,
            config.frame_deadline,
        )
        .await
        {
            Ok(frame) => frame,
            // Too large, malformed or stalled: drop the connection and
            // whatever it had sent.
            Err(_) => return,
        };
        match frame.kind {
            Kind::Request => {
                let (serving, writer) = (serving.clone(), Arc::clone(&writer));
                let (conn, busy) = (Arc::clone(&conn), conn.busy());
                answering.spawn(async move {
                    answer(frame, &serving, &writer, &conn).await;
                    drop(busy);
                });
            }
            Kind::Message => {
                let message = serving
                    .handler
                    .message(frame.from, frame.protocol, frame.payload);
                // A panicking handler loses its message, not the connection.
                let _ = AssertUnwindSafe(message).catch_unwind().await;
            }
            Kind::Response | Kind::Failed | Kind::TooLarge | Kind::Goodbye => return,
        }
        drop(busy);
    };
    // Answer every request read so far, then say why before closing: a
    // dialer may then resend whatever it wrote after, unread. Requests that
    // take longer than the frame deadline are cut off without a goodbye.
    let drain = async { while answering.join_next().await.is_some() {} };
    if tokio::time::timeout(config.frame_deadline, drain)
        .await
        .is_err()
    {
        return;
    }
    if let Ok(frame) = encode(Kind::Goodbye, 0, Protocol(0), serving.id, why.as_bytes()) {
        let write = async { writer.lock().await.write_all(&frame).await };
        let _ = tokio::time::timeout(config.frame_deadline, write).await;
    }
}

/// Runs the handler on one request and writes its answer; a write that does
/// not finish within the frame deadline closes the connection.
async fn answer(request: Frame, serving: &Serving, writer: &Mutex<OwnedWriteHalf>, conn: &Conn) {
    let call = serving
        .handler
        .request(request.from, request.protocol, request.payload);
    let answered = AssertUnwindSafe(call)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(HandlerError::Failed("the handler panicked".into())));
    let max_frame = serving.config.max_frame;
    let (kind, payload) = match answered {
        Ok(out) if out.len() <= max_frame => (Kind::Response, out),
        // Encoding a u64 or a HandlerError into a Vec cannot fail; were it
        // to, the empty payload reads as malformed on the other side.
        Ok(out) => (
            Kind::TooLarge,
            postcard::to_allocvec(&(out.len() as u64)).unwrap_or_default(),
        ),
        Err(e) => (Kind::Failed, postcard::to_allocvec(&e).unwrap_or_default()),
    };
    let Ok(frame) = encode(kind, request.id, request.protocol, serving.id, &payload) else {
        return;
    };
    let write = async { writer.lock().await.write_all(&frame).await };
    match tokio::time::timeout(serving.config.frame_deadline, write).await {
        Ok(Ok(())) => {}
        // The peer does not read its answers (or is gone): close.
        _ => conn.close.notify_one(),
    }
}
