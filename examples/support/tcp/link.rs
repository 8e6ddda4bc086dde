//! An outgoing connection to one peer: requests written, answers paired
//! with their requests by id.

use super::frame::{io_error, read_frame, Kind};
use hologram::lattice::transport::{HandlerError, TransportError};
use hologram::lattice::wire;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as SyncMutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Mutex};
use tokio::task::JoinHandle;

/// Requests waiting for their answers on one connection.
type Pending = SyncMutex<HashMap<u64, oneshot::Sender<Result<Vec<u8>, TransportError>>>>;

pub fn lock<T>(mutex: &SyncMutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An outgoing connection to one peer.
pub struct Link {
    writer: Mutex<OwnedWriteHalf>,
    pending: Arc<Pending>,
    broken: Arc<AtomicBool>,
    /// Set when the listener said goodbye: it answered every request it
    /// read, so those still waiting were never read.
    goodbye: Arc<AtomicBool>,
    /// Why the connection ended, once its reader has stopped.
    ended: Arc<SyncMutex<Option<TransportError>>>,
    next_id: AtomicU64,
    last_write: SyncMutex<Instant>,
    reader: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Link {
    /// Connects to `addr`; answers of up to `max_frame` bytes must each
    /// arrive whole within `frame_deadline` of their first byte.
    pub async fn dial(
        addr: SocketAddr,
        max_frame: usize,
        frame_deadline: Duration,
    ) -> Result<Link, TransportError> {
        let stream = TcpStream::connect(addr).await.map_err(io_error)?;
        stream.set_nodelay(true).map_err(io_error)?;
        let (reader, writer) = stream.into_split();
        let pending = Arc::new(Pending::default());
        let broken = Arc::new(AtomicBool::new(false));
        let goodbye = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(SyncMutex::new(None));
        let reader = tokio::spawn(read_answers(
            reader,
            (max_frame, frame_deadline),
            Arc::clone(&pending),
            [Arc::clone(&broken), Arc::clone(&goodbye)],
            Arc::clone(&ended),
        ));
        Ok(Link {
            writer: Mutex::new(writer),
            pending,
            broken,
            goodbye,
            ended,
            next_id: AtomicU64::new(1),
            last_write: SyncMutex::new(Instant::now()),
            reader,
        })
    }

    /// Whether the link can carry another call: not broken, and not idle
    /// for `stale` (the peer may be closing it for idleness).
    pub fn usable(&self, stale: Duration) -> bool {
        !self.broken.load(Ordering::Acquire) && lock(&self.last_write).elapsed() < stale
    }

    /// Whether the listener closed this connection with a goodbye, having
    /// answered every request it read.
    pub fn said_goodbye(&self) -> bool {
        self.goodbye.load(Ordering::Acquire)
    }

    /// Sends a request and waits for its answer (the caller bounds the wait).
    pub async fn call(
        &self,
        frame: impl FnOnce(u64) -> Result<Vec<u8>, TransportError>,
    ) -> Result<Vec<u8>, TransportError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, waiter) = oneshot::channel();
        lock(&self.pending).insert(id, answer);
        let _waiting = Waiting {
            pending: &self.pending,
            id,
        };
        self.write(&frame(id)?).await?;
        waiter
            .await
            .unwrap_or_else(|_| Err(TransportError::Io("connection lost".into())))
    }

    /// Writes a whole frame. A write that fails, or is cancelled halfway
    /// (its caller timed out), leaves a partial frame on the stream: the
    /// connection is then marked broken, refuses further writes and is
    /// dialed again by the next call.
    pub async fn write(&self, frame: &[u8]) -> Result<(), TransportError> {
        let mut writer = self.writer.lock().await;
        if self.broken.load(Ordering::Acquire) {
            let why = lock(&self.ended).clone();
            return Err(why.unwrap_or_else(|| TransportError::Io("connection broken".into())));
        }
        *lock(&self.last_write) = Instant::now();
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

/// Reads the answers on an outgoing connection until it breaks, then fails
/// every request still waiting.
async fn read_answers(
    mut reader: OwnedReadHalf,
    (max_frame, frame_deadline): (usize, Duration),
    pending: Arc<Pending>,
    [broken, goodbye]: [Arc<AtomicBool>; 2],
    ended: Arc<SyncMutex<Option<TransportError>>>,
) {
    let why = loop {
        let frame = match read_frame(&mut reader, max_frame, frame_deadline).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break TransportError::Io("connection closed by the peer".into()),
            Err(e) => break e,
        };
        let answer = match frame.kind {
            Kind::Response => Ok(frame.payload),
            Kind::Failed => {
                match wire::decode::<HandlerError>("error answer", &frame.payload, max_frame) {
                    Ok(e) => Err(e.into()),
                    Err(e) => Err(TransportError::Io(e.to_string())),
                }
            }
            Kind::TooLarge => match wire::decode::<u64>("answer size", &frame.payload, 10) {
                Ok(size) => Err(TransportError::TooLarge {
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    max: max_frame,
                }),
                Err(e) => Err(TransportError::Io(e.to_string())),
            },
            Kind::Goodbye => {
                goodbye.store(true, Ordering::Release);
                let why = String::from_utf8_lossy(&frame.payload);
                break TransportError::Refused(format!("the peer closed the connection: {why}"));
            }
            Kind::Request | Kind::Message => {
                break TransportError::Io(format!("unexpected {:?} frame", frame.kind))
            }
        };
        if let Some(waiter) = lock(&pending).remove(&frame.id) {
            let _ = waiter.send(answer);
        }
    };
    *lock(&ended) = Some(why.clone());
    broken.store(true, Ordering::Release);
    for (_, waiter) in lock(&pending).drain() {
        let _ = waiter.send(Err(why.clone()));
    }
}
