//! The example TCP transport (`examples/support/tcp.rs`) over 127.0.0.1:
//! the transport conformance suite (socket checks included), requests both
//! ways, messages, timeouts, size limits on both sides.

#[path = "../examples/support/tcp.rs"]
mod tcp;

use futures::future::BoxFuture;
use hologram::lattice::transport::conformance::{self, SocketTarget, TestNetwork};
use hologram::lattice::transport::{
    async_trait, Handler, HandlerError, Protocol, Transport, TransportError,
};
use hologram::lattice::PeerId;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tcp::{body_length, decode, encode, Kind, TcpConfig, TcpTransport, MAX_HEADER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const MAX: usize = 64 * 1024;
const LONG: Duration = Duration::from_secs(5);

/// Answers `name ‖ ":" ‖ payload` (or `answer_len` zero bytes), counts every
/// frame it is handed and forwards messages to the test.
struct Node {
    name: &'static str,
    answer_len: Option<usize>,
    handled: AtomicUsize,
    messages: mpsc::UnboundedSender<(PeerId, Protocol, Vec<u8>)>,
}

#[async_trait]
impl Handler for Node {
    async fn request(
        &self,
        _: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        self.handled.fetch_add(1, Ordering::SeqCst);
        if protocol != Protocol::PING {
            return Err(HandlerError::Refused(format!("protocol {}", protocol.0)));
        }
        Ok(match self.answer_len {
            Some(len) => vec![0; len],
            None => [self.name.as_bytes(), b":", &payload].concat(),
        })
    }

    async fn message(&self, from: PeerId, protocol: Protocol, payload: Vec<u8>) {
        self.handled.fetch_add(1, Ordering::SeqCst);
        let _ = self.messages.send((from, protocol, payload));
    }
}

type Inbox = mpsc::UnboundedReceiver<(PeerId, Protocol, Vec<u8>)>;

fn id(n: u8) -> PeerId {
    PeerId::from_bytes([n; 32])
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn node(
    n: u8,
    name: &'static str,
    answer_len: Option<usize>,
) -> (TcpTransport, Arc<Node>, Inbox) {
    node_with_limit(n, name, answer_len, MAX).await
}

async fn node_with_limit(
    n: u8,
    name: &'static str,
    answer_len: Option<usize>,
    max_frame: usize,
) -> (TcpTransport, Arc<Node>, Inbox) {
    let (messages, inbox) = mpsc::unbounded_channel();
    let handler = Arc::new(Node {
        name,
        answer_len,
        handled: AtomicUsize::new(0),
        messages,
    });
    let transport = TcpTransport::bind(
        id(n),
        localhost(),
        Arc::clone(&handler) as Arc<dyn Handler>,
        max_frame,
    )
    .await
    .unwrap();
    (transport, handler, inbox)
}

/// Two nodes that know each other's address.
async fn pair() -> (
    (TcpTransport, Arc<Node>, Inbox),
    (TcpTransport, Arc<Node>, Inbox),
) {
    let a = node(1, "a", None).await;
    let b = node(2, "b", None).await;
    a.0.add_peer(id(2), b.0.local_addr());
    b.0.add_peer(id(1), a.0.local_addr());
    (a, b)
}

/// Nodes on 127.0.0.1 that all know one another, with short limits.
struct TcpNetwork {
    config: TcpConfig,
    nodes: Vec<TcpTransport>,
    /// The limits told to the suite, if not the real ones (a lie, to show
    /// that the socket checks catch a transport without them).
    claimed: Option<TcpConfig>,
}

#[async_trait]
impl TestNetwork for TcpNetwork {
    async fn node(
        &mut self,
        id: PeerId,
        handler: Arc<dyn Handler>,
    ) -> Result<Arc<dyn Transport>, String> {
        let node = TcpTransport::bind_with(id, localhost(), handler, self.config.clone())
            .await
            .map_err(|e| e.to_string())?;
        for other in &self.nodes {
            other.add_peer(id, node.local_addr());
            node.add_peer(other.local_id(), other.local_addr());
        }
        self.nodes.push(node.clone());
        Ok(Arc::new(node))
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }

    fn sockets(&self, id: PeerId) -> Option<SocketTarget> {
        let node = self.nodes.iter().find(|node| node.local_id() == id)?;
        let config = self.claimed.as_ref().unwrap_or(node.config());
        Some(SocketTarget {
            addr: node.local_addr(),
            encode_request: Arc::new(|from, protocol, payload| {
                encode(Kind::Request, 1, protocol, from, payload).unwrap_or_default()
            }),
            frame_deadline: config.frame_deadline,
            idle_timeout: config.idle_timeout,
            max_inbound: config.max_inbound,
        })
    }
}

/// Limits short enough for the suite to wait out.
fn suite_limits() -> TcpConfig {
    TcpConfig {
        max_frame: 1 << 20,
        frame_deadline: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        max_inbound: 32,
        ..TcpConfig::default()
    }
}

/// Runs the suite on nodes with `config`, telling it `claimed`.
async fn suite(config: TcpConfig, claimed: Option<TcpConfig>) -> Result<(), conformance::Failure> {
    let nodes = Vec::new();
    conformance::run(&mut TcpNetwork {
        config,
        nodes,
        claimed,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    if let Err(failure) = suite(suite_limits(), None).await {
        panic!("{failure}");
    }
}

/// A node whose frame deadline is 30 s, claimed to be 1 s: the suite's
/// stalled frames outlive the claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_missing_frame_deadline() {
    let lax = TcpConfig {
        frame_deadline: Duration::from_secs(30),
        ..suite_limits()
    };
    let failure = suite(lax, Some(suite_limits())).await.unwrap_err();
    assert_eq!(failure.check, "socket: stalled frame", "{failure}");
}

/// A node that keeps 4,096 inbound connections, claimed to keep 32.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_missing_connection_cap() {
    let uncapped = TcpConfig {
        max_inbound: 4096,
        ..suite_limits()
    };
    let failure = suite(uncapped, Some(suite_limits())).await.unwrap_err();
    assert_eq!(failure.check, "socket: idle connections", "{failure}");
}

#[tokio::test]
async fn requests_both_ways_and_messages() {
    let ((a, _, mut a_inbox), (b, _, mut b_inbox)) = pair().await;
    let answer = a.request(id(2), Protocol::PING, b"hi".to_vec(), LONG).await;
    assert_eq!(answer.unwrap(), b"b:hi");
    let answer = b.request(id(1), Protocol::PING, b"yo".to_vec(), LONG).await;
    assert_eq!(answer.unwrap(), b"a:yo");

    // Many concurrent requests on one connection are paired correctly.
    let calls = (0..50u8).map(|i| a.request(id(2), Protocol::PING, vec![i], LONG));
    let answers = futures::future::join_all(calls).await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap(), [b"b:".as_slice(), &[i as u8]].concat());
    }

    a.send(
        id(2),
        hologram::consensus::BROADCAST_PROTOCOL,
        b"note".to_vec(),
    )
    .await
    .unwrap();
    b.send(id(1), hologram::consensus::BROADCAST_PROTOCOL, vec![])
        .await
        .unwrap();
    let got = tokio::time::timeout(LONG, b_inbox.recv()).await.unwrap();
    assert_eq!(
        got,
        Some((
            id(1),
            hologram::consensus::BROADCAST_PROTOCOL,
            b"note".to_vec()
        ))
    );
    let got = tokio::time::timeout(LONG, a_inbox.recv()).await.unwrap();
    assert_eq!(
        got,
        Some((id(2), hologram::consensus::BROADCAST_PROTOCOL, vec![]))
    );
}

#[tokio::test]
async fn handler_errors_come_back_typed() {
    let ((a, _, _), (_b, _, _)) = pair().await;
    let refused = a
        .request(id(2), hologram::cam::CAM_PROTOCOL, vec![], LONG)
        .await;
    assert_eq!(refused, Err(TransportError::Refused("protocol 2".into())));
}

#[tokio::test]
async fn unknown_and_absent_peers_are_unreachable() {
    let (a, _, _) = node(1, "a", None).await;
    let unknown = a.request(id(9), Protocol::PING, vec![], LONG).await;
    assert_eq!(unknown, Err(TransportError::Unreachable(id(9))));
    // An address where nothing listens any more.
    let closed = TcpListener::bind(localhost())
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    a.add_peer(id(8), closed);
    let absent = a.request(id(8), Protocol::PING, vec![], LONG).await;
    assert_eq!(absent, Err(TransportError::Unreachable(id(8))));
    let absent = a.send(id(8), Protocol::PING, vec![]).await;
    assert_eq!(absent, Err(TransportError::Unreachable(id(8))));
}

#[tokio::test]
async fn a_silent_peer_times_out() {
    let (a, _, _) = node(1, "a", None).await;
    let silent = TcpListener::bind(localhost()).await.unwrap();
    a.add_peer(id(7), silent.local_addr().unwrap());
    // Accept and read everything, answer nothing.
    let sink = tokio::spawn(async move {
        let (mut stream, _) = silent.accept().await.unwrap();
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.unwrap_or(0)
    });
    let timeout = Duration::from_millis(100);
    let start = Instant::now();
    let answer = a
        .request(id(7), Protocol::PING, b"anyone?".to_vec(), timeout)
        .await;
    assert_eq!(
        answer,
        Err(TransportError::TimedOut {
            peer: id(7),
            timeout
        })
    );
    assert!(start.elapsed() >= timeout && start.elapsed() < LONG);
    drop(a);
    // The request did reach the silent peer: its frame was written whole.
    let read = tokio::time::timeout(LONG, sink).await.unwrap().unwrap();
    let expected = encode(Kind::Request, 1, Protocol::PING, id(1), b"anyone?").unwrap();
    assert_eq!(read, expected.len());
}

/// A peer whose listener accepts nothing more: its backlog is full, so a
/// dial hangs. The request's timeout covers the dial, and calls to other
/// peers go on meanwhile.
#[tokio::test]
async fn the_timeout_covers_connecting_and_holds_up_no_other_peer() {
    let ((a, _, _), (_b, _, _)) = pair().await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(localhost()).unwrap();
    let full = socket.listen(1).unwrap();
    let full_addr = full.local_addr().unwrap();
    // Fill the accept queue; the next dial's handshake is not completed.
    let mut queued = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(full_addr)).await
        {
            Ok(Ok(stream)) => queued.push(stream),
            _ => break,
        }
    }
    a.add_peer(id(7), full_addr);
    let timeout = Duration::from_millis(500);
    let start = Instant::now();
    let stuck = a.request(id(7), Protocol::PING, b"hello?".to_vec(), timeout);
    let other = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let asked = Instant::now();
        let answer = a.request(id(2), Protocol::PING, b"hi".to_vec(), LONG).await;
        (answer, asked.elapsed())
    };
    let (stuck, (answer, took)) = tokio::join!(stuck, other);
    assert_eq!(
        stuck,
        Err(TransportError::TimedOut {
            peer: id(7),
            timeout
        })
    );
    assert!(start.elapsed() < timeout + Duration::from_millis(400));
    assert_eq!(answer.unwrap(), b"b:hi");
    assert!(
        took < Duration::from_millis(300),
        "a call to another peer waited {took:?}"
    );
}

#[tokio::test]
async fn a_write_cut_short_by_its_timeout_breaks_the_connection() {
    let (a, _, _) = node_with_limit(1, "a", None, 64 << 20).await;
    // A peer that accepts but does not read: a 32 MiB frame fills the socket
    // buffers and the write stalls until the timeout cancels it halfway.
    let stalled = TcpListener::bind(localhost()).await.unwrap();
    a.add_peer(id(7), stalled.local_addr().unwrap());
    let timeout = Duration::from_millis(100);
    let cut = a
        .request(id(7), Protocol::PING, vec![0; 32 << 20], timeout)
        .await;
    assert_eq!(
        cut,
        Err(TransportError::TimedOut {
            peer: id(7),
            timeout
        })
    );
    let (_first, _) = stalled.accept().await.unwrap();

    // The next call does not write after the partial frame: it dials again,
    // and its frame arrives whole on the new connection.
    let next = a
        .request(id(7), Protocol::PING, b"small".to_vec(), timeout)
        .await;
    assert_eq!(
        next,
        Err(TransportError::TimedOut {
            peer: id(7),
            timeout
        })
    );
    let (mut second, _) = tokio::time::timeout(LONG, stalled.accept())
        .await
        .unwrap()
        .unwrap();
    let frame = tcp::read_frame(&mut second, MAX, LONG)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (frame.kind, frame.payload),
        (Kind::Request, b"small".to_vec())
    );
}

#[tokio::test]
async fn oversize_payloads_are_refused_before_sending() {
    let ((a, _, _), (_b, b_node, _)) = pair().await;
    let too_large = Err(TransportError::TooLarge {
        size: MAX + 1,
        max: MAX,
    });
    assert_eq!(
        a.request(id(2), Protocol::PING, vec![0; MAX + 1], LONG)
            .await,
        too_large
    );
    assert_eq!(
        a.send(id(2), Protocol::PING, vec![0; MAX + 1]).await,
        Err(TransportError::TooLarge {
            size: MAX + 1,
            max: MAX
        })
    );
    let at_limit = a
        .request(id(2), Protocol::PING, vec![0; MAX - 2], LONG)
        .await;
    assert_eq!(at_limit.map(|answer| answer.len()), Ok(MAX));
    assert_eq!(b_node.handled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn oversize_answers_are_refused_by_the_responder() {
    let (a, _, _) = node(1, "a", None).await;
    let (big, _, _) = node(2, "big", Some(MAX + 1)).await;
    a.add_peer(id(2), big.local_addr());
    let answer = a.request(id(2), Protocol::PING, vec![], LONG).await;
    assert_eq!(
        answer,
        Err(TransportError::TooLarge {
            size: MAX + 1,
            max: MAX
        })
    );
}

#[tokio::test]
async fn an_oversize_frame_is_refused_before_it_is_read() {
    let (b, b_node, _) = node(2, "b", None).await;
    let mut raw = TcpStream::connect(b.local_addr()).await.unwrap();
    // Announce a 1 GiB frame and send nothing of it: a reader that waited for
    // (or allocated) the body would keep the connection open.
    raw.write_all(&(1u32 << 30).to_le_bytes()).await.unwrap();
    let mut byte = [0u8; 1];
    let outcome = tokio::time::timeout(LONG, raw.read(&mut byte)).await;
    let closed = matches!(outcome, Ok(Ok(0)) | Ok(Err(_)));
    assert!(closed, "the listener kept the connection open: {outcome:?}");
    assert_eq!(b_node.handled.load(Ordering::SeqCst), 0);

    // A well-formed frame on a fresh connection is still served.
    let mut raw = TcpStream::connect(b.local_addr()).await.unwrap();
    let frame = encode(Kind::Message, 0, Protocol::PING, id(1), b"ok").unwrap();
    raw.write_all(&frame).await.unwrap();
    let start = Instant::now();
    while b_node.handled.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < LONG, "the message was not handled");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[test]
fn the_codec_round_trips_and_checks_lengths() {
    let frame = encode(
        Kind::Request,
        42,
        hologram::cam::CAM_PROTOCOL,
        id(3),
        b"payload",
    )
    .unwrap();
    let (prefix, body) = frame.split_at(4);
    let length = body_length(prefix.try_into().unwrap(), MAX).unwrap();
    assert_eq!(length, body.len());
    let decoded = decode(body.to_vec(), MAX).unwrap();
    assert_eq!(
        (
            decoded.kind,
            decoded.id,
            decoded.protocol,
            decoded.from,
            decoded.payload
        ),
        (
            Kind::Request,
            42,
            hologram::cam::CAM_PROTOCOL,
            id(3),
            b"payload".to_vec()
        )
    );
    // The header of the largest ids fits MAX_HEADER.
    let widest = encode(Kind::Message, u64::MAX, Protocol(u16::MAX), id(0xff), &[]).unwrap();
    assert!(widest.len() - 4 <= MAX_HEADER);

    assert!(matches!(
        body_length((1u32 << 30).to_le_bytes(), MAX),
        Err(TransportError::TooLarge { .. })
    ));
    assert!(matches!(
        decode(body.to_vec(), 6),
        Err(TransportError::TooLarge { size: 7, max: 6 })
    ));
    assert!(matches!(
        decode(vec![9, 0, 0], MAX),
        Err(TransportError::Io(_))
    ));
    assert!(matches!(
        decode(Vec::new(), MAX),
        Err(TransportError::Io(_))
    ));
}

mod codec_properties {
    use super::tcp::{body_length, decode, encode, Kind};
    use hologram::lattice::transport::Protocol;
    use hologram::lattice::PeerId;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes as a frame body: an error or a frame whose
        /// payload respects the limit, never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..300), max in 0usize..200) {
            if let Ok(frame) = decode(body, max) {
                prop_assert!(frame.payload.len() <= max);
            }
        }

        /// Any prefix over the limit is refused before a body is read.
        #[test]
        fn prefixes_are_bounded(prefix in any::<[u8; 4]>(), max in 0usize..1_000_000) {
            if let Ok(len) = body_length(prefix, max) {
                prop_assert!(len <= max + super::MAX_HEADER);
            }
        }

        /// Arbitrary bytes on a connection: `read_frame` returns frames
        /// within the limit, an error or the end, never a panic, and never
        /// more frames than the bytes could hold.
        #[test]
        fn arbitrary_streams_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), max in 0usize..300) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let frames = runtime.block_on(async {
                let mut reader = bytes.as_slice();
                let mut frames = Vec::new();
                while let Ok(Some(frame)) = super::tcp::read_frame(&mut reader, max, super::LONG).await {
                    frames.push(frame);
                }
                frames
            });
            prop_assert!(frames.len() <= bytes.len() / 5);
            for frame in frames {
                prop_assert!(frame.payload.len() <= max);
            }
        }

        /// Encoding then decoding gives the frame back.
        #[test]
        fn frames_round_trip(id in any::<u64>(), tag in any::<u16>(), from in any::<[u8; 32]>(),
                             payload in prop::collection::vec(any::<u8>(), 0..200)) {
            let frame = encode(Kind::Request, id, Protocol(tag), PeerId::from_bytes(from), &payload).unwrap();
            let body = frame[4..].to_vec();
            let len = body_length(frame[..4].try_into().unwrap(), 200).unwrap();
            prop_assert_eq!(len, body.len());
            let back = decode(body, 200).unwrap();
            prop_assert_eq!(back.id, id);
            prop_assert_eq!(back.protocol, Protocol(tag));
            prop_assert_eq!(back.payload, payload);
        }
    }
}
