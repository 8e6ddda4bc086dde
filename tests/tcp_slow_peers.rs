//! Slow and idle peers against the example TCP transport
//! (`examples/support/tcp.rs`): connections that announce a large frame and
//! stall, and a flood of idle connections. Each test opens its connections
//! from this process with raw sockets, as a hostile host would.

#[path = "../examples/support/tcp.rs"]
mod tcp;

use hologram::lattice::transport::{
    async_trait, Handler, HandlerError, Protocol, Transport, TransportError,
};
use hologram::lattice::PeerId;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tcp::{encode, Kind, TcpConfig, TcpTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The tests measure this process's memory: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The size of a stalled frame's payload, as in the attack on the cluster node.
const ANNOUNCED: usize = 4_500_000;
const STALLED: usize = 40;

/// Answers every request with its payload and counts what it was handed.
struct Echo(AtomicUsize);

#[async_trait]
impl Handler for Echo {
    async fn request(&self, _: PeerId, _: Protocol, p: Vec<u8>) -> Result<Vec<u8>, HandlerError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(p)
    }

    async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn id(n: u8) -> PeerId {
    PeerId::from_bytes([n; 32])
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn node(n: u8, config: TcpConfig) -> (TcpTransport, Arc<Echo>) {
    let echo = Arc::new(Echo(AtomicUsize::new(0)));
    let handler = Arc::clone(&echo) as Arc<dyn Handler>;
    let node = TcpTransport::bind_with(id(n), localhost(), handler, config)
        .await
        .unwrap();
    (node, echo)
}

/// This process's resident memory in bytes (Linux), or `None`.
fn resident() -> Option<usize> {
    memory("VmRSS:")
}

/// This process's memory in bytes as `/proc/self/status` gives `field`.
fn memory(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether the node closed `stream` by `deadline` (bytes it sends first,
/// a goodbye, are read and ignored).
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Forty connections each announce a 4.5 MB frame, send all of it but its
/// last byte and stall. The node holds their bytes until the frame
/// deadline, then drops the connections and frees the buffers. (Without a
/// deadline they stayed open and pinned about 180 MB for good.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_frames_do_not_pin_memory_past_the_deadline() {
    let _serial = SERIAL.lock().await;
    let deadline = Duration::from_secs(2);
    let config = TcpConfig {
        max_frame: 5 << 20,
        frame_deadline: deadline,
        ..TcpConfig::default()
    };
    let (node, echo) = node(1, config).await;
    let before = resident();
    let frame = encode(Kind::Request, 1, Protocol::PING, id(9), &vec![7; ANNOUNCED]).unwrap();
    let started = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut stream = TcpStream::connect(node.local_addr()).await.unwrap();
        stream.write_all(&frame[..frame.len() - 1]).await.unwrap();
        stalled.push(stream);
    }
    // Each frame's deadline runs from its first byte; the last one began
    // no earlier than now.
    let sent = Instant::now();
    println!("40 frames sent in {:?}", sent - started);
    let during = resident();
    let by = sent + deadline + Duration::from_secs(2);
    let mut open = 0;
    for stream in &mut stalled {
        open += usize::from(!closed_by(stream, by).await);
    }
    assert_eq!(
        open, 0,
        "{open} of {STALLED} stalled connections still open after the deadline"
    );
    assert_eq!(
        echo.0.load(Ordering::SeqCst),
        0,
        "an incomplete frame was handled"
    );
    if let (Some(before), Some(during), Some(after)) = (before, during, resident()) {
        let mib = |bytes: usize| bytes as f64 / (1 << 20) as f64;
        println!(
            "resident: {:.1} MiB before, {:.1} MiB with the frames held, {:.1} MiB after the deadline",
            mib(before),
            mib(during),
            mib(after)
        );
        let held = STALLED * ANNOUNCED;
        assert!(
            after < before + held / 4,
            "{:.1} MiB still resident after the deadline ({:.1} MiB before)",
            mib(after),
            mib(before)
        );
    }
    // The node still serves.
    let (client, _) = self::node(2, TcpConfig::default()).await;
    client.add_peer(id(1), node.local_addr());
    let answer = client
        .request(
            id(1),
            Protocol::PING,
            b"still there?".to_vec(),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(answer.unwrap(), b"still there?");
}

/// Forty connections each announce a 4.5 MB frame but send only its first
/// kilobyte: the node's buffers hold what arrived, not what was announced.
/// Measured as this process's mapped (virtual) memory, which grows with an
/// allocation whether or not its pages are touched: allocating the
/// announced lengths up front maps about 180 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_lengths_are_not_allocated_up_front() {
    let _serial = SERIAL.lock().await;
    let config = TcpConfig {
        max_frame: 5 << 20,
        frame_deadline: Duration::from_secs(5),
        ..TcpConfig::default()
    };
    let (node, _) = node(3, config).await;
    let frame = encode(Kind::Request, 1, Protocol::PING, id(9), &vec![7; ANNOUNCED]).unwrap();
    let Some(before) = memory("VmSize:") else {
        return; // not Linux: nothing to measure
    };
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut stream = TcpStream::connect(node.local_addr()).await.unwrap();
        stream.write_all(&frame[..1024]).await.unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = memory("VmSize:").unwrap();
    println!(
        "mapped: {} KiB before, {} KiB during",
        before / 1024,
        during / 1024
    );
    assert!(
        during < before + STALLED * ANNOUNCED / 4,
        "{} KiB mapped with 40 KiB received, {} KiB before",
        during / 1024,
        before / 1024
    );
}

/// A thousand connections that send nothing: the node keeps at most its
/// cap of them, still answers a client that connects after them, and
/// closes the rest after the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_do_not_lock_out_a_client() {
    let _serial = SERIAL.lock().await;
    let idle = Duration::from_secs(3);
    let config = TcpConfig {
        idle_timeout: idle,
        ..TcpConfig::default()
    };
    let cap = config.max_inbound;
    let (node, _) = node(4, config).await;
    let opened = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..1000 {
        flood.push(TcpStream::connect(node.local_addr()).await.unwrap());
    }
    let (client, _) = self::node(5, TcpConfig::default()).await;
    client.add_peer(id(4), node.local_addr());
    let asked = Instant::now();
    let answer = client
        .request(
            id(4),
            Protocol::PING,
            b"hello".to_vec(),
            Duration::from_secs(2),
        )
        .await;
    assert_eq!(answer, Ok(b"hello".to_vec()), "the client was not answered");
    println!(
        "answered in {:?} with 1,000 idle connections",
        asked.elapsed()
    );

    let soon = Instant::now() + Duration::from_millis(500);
    let mut open = 0;
    for stream in &mut flood {
        open += usize::from(!closed_by(stream, soon.max(Instant::now())).await);
    }
    assert!(
        open <= cap,
        "{open} idle connections still open, over the cap of {cap}"
    );
    let later = opened + idle + Duration::from_secs(2);
    let mut lingering = 0;
    for stream in &mut flood {
        lingering += usize::from(!closed_by(stream, later).await);
    }
    assert_eq!(
        lingering, 0,
        "idle connections still open after the idle timeout"
    );
    // The client's own connection went idle too and was closed: the next
    // call dials again.
    tokio::time::sleep_until((opened + idle + Duration::from_secs(1)).into()).await;
    let again = client
        .request(
            id(4),
            Protocol::PING,
            b"again".to_vec(),
            Duration::from_secs(2),
        )
        .await;
    assert_eq!(again, Ok(b"again".to_vec()));
}

/// A node at its cap with every connection busy (here its only one, in the
/// middle of a frame) refuses a new one with a reason the caller gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_refuses_a_client_clearly() {
    let _serial = SERIAL.lock().await;
    let config = TcpConfig {
        max_inbound: 1,
        ..TcpConfig::default()
    };
    let (node, _) = node(8, config).await;
    let frame = encode(Kind::Request, 1, Protocol::PING, id(9), &[1; 1000]).unwrap();
    let mut busy = TcpStream::connect(node.local_addr()).await.unwrap();
    busy.write_all(&frame[..500]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (client, _) = self::node(9, TcpConfig::default()).await;
    client.add_peer(id(8), node.local_addr());
    let answer = client
        .request(
            id(8),
            Protocol::PING,
            b"room?".to_vec(),
            Duration::from_secs(2),
        )
        .await;
    match answer {
        Err(TransportError::Refused(why)) => assert!(why.contains("limit of 1 inbound"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Once the busy connection completes its frame, there is room again.
    busy.write_all(&frame[500..]).await.unwrap();
    drop(busy);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = client
        .request(
            id(8),
            Protocol::PING,
            b"room now?".to_vec(),
            Duration::from_secs(2),
        )
        .await;
    assert_eq!(answer, Ok(b"room now?".to_vec()));
}
