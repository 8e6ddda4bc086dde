//! Hostile peers and bad input: each refused with a clear error, no
//! handler reached, and the other peers' calls unaffected.

use super::raw::{self, header};
use super::{echo_node, id, keys, test_config, Echo, LONG};
use hologram::lattice::transport::{Protocol, Transport, TransportError};
use hologram::net::{AddressBook, QuicConfig, QuicTransport};
use rand::{RngExt, SeedableRng};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PING: u16 = Protocol::PING.0;

/// `from` asks `to` and must get its echo, quickly.
async fn served(from: &QuicTransport, to: u8) {
    let start = Instant::now();
    let answer = from
        .request(id(to), Protocol::PING, b"hi".to_vec(), LONG)
        .await;
    let expected = [from.local_id().as_bytes().as_slice(), b"hi"].concat();
    assert_eq!(
        answer,
        Ok(expected),
        "a call from {} to node {to}",
        from.local_id()
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "a call took {:?}",
        start.elapsed()
    );
}

/// Three nodes 1, 2, 3 sharing a book.
fn trio(config: QuicConfig) -> (AddressBook, Vec<(QuicTransport, Arc<Echo>)>) {
    let book = AddressBook::new();
    let nodes = (1..=3)
        .map(|n| echo_node(n, &book, config.clone()))
        .collect();
    (book, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_the_wrong_key_is_refused() {
    super::logs();
    let (book, nodes) = trio(test_config());
    let (a, (b, _), (c, c_echo)) = (&nodes[0].0, &nodes[1], &nodes[2]);
    // The book says node 2 listens where node 3 does.
    book.insert(id(2), c.local_addr());
    let refused = a
        .request(id(2), Protocol::PING, b"for 2".to_vec(), LONG)
        .await;
    match refused {
        Err(TransportError::Io(why)) => {
            assert!(why.contains("authentication of"), "{why}");
            assert!(
                why.contains(&format!("proved key {}, not the expected {}", id(3), id(2))),
                "{why}"
            );
        }
        other => panic!("a server with another key answered {other:?}"),
    }
    let sent = a.send(id(2), Protocol::PING, b"for 2".to_vec()).await;
    assert!(matches!(sent, Err(TransportError::Io(_))), "{sent:?}");
    assert_eq!(
        c_echo.handled(),
        0,
        "node 3 handled a frame meant for node 2"
    );
    served(a, 3).await;
    book.insert(id(2), b.local_addr());
    served(a, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_outside_the_allow_list_is_refused() {
    super::logs();
    let book = AddressBook::new();
    let mut config = test_config();
    config.allowed = Some(HashSet::from([id(1)]));
    let (_guarded, guarded_echo) = echo_node(4, &book, config);
    let (friend, _) = echo_node(1, &book, test_config());
    let (stranger, _) = echo_node(5, &book, test_config());
    let refused = stranger.request(id(4), Protocol::PING, vec![], LONG).await;
    match refused {
        Err(TransportError::Refused(why)) => {
            assert!(why.contains("closed the connection"), "{why}")
        }
        other => panic!("a stranger's call answered {other:?}"),
    }
    assert_eq!(guarded_echo.handled(), 0);
    served(&friend, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_key_reaches_no_handler() {
    super::logs();
    let (_book, nodes) = trio(test_config());
    let (a, (b, b_echo)) = (&nodes[0].0, &nodes[1]);
    // The handshake fails, at the latest when the server reads the client's
    // (absent) key: either the connection or its first stream fails.
    let outcome = match raw::connect(b.local_addr(), None).await {
        Err(e) => Err(e),
        Ok(conn) => {
            let call = async {
                let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
                send.write_all(&[header(PING, 2), b"hi".to_vec()].concat())
                    .await
                    .map_err(|e| e.to_string())?;
                send.finish().map_err(|e| e.to_string())?;
                recv.read_to_end(1024).await.map_err(|e| e.to_string())
            };
            tokio::time::timeout(LONG, call)
                .await
                .unwrap_or(Err("no answer".into()))
        }
    };
    let why = outcome.expect_err("a client without a key was answered");
    assert!(why.contains("handshake failed"), "{why}");
    assert_eq!(b_echo.handled(), 0);
    served(a, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_are_dropped() {
    super::logs();
    let (_book, nodes) = trio(test_config());
    let (a, (b, b_echo)) = (&nodes[0].0, &nodes[1]);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    for i in 0..3000 {
        let len = rng.random_range(1..1400);
        let mut datagram = vec![0u8; len];
        rng.fill(&mut datagram[..]);
        if i % 3 == 0 {
            // A long-header "Initial" look-alike, to get past the first byte.
            datagram[0] = 0xc0 | (datagram[0] & 0x0f);
        }
        socket.send_to(&datagram, b.local_addr()).unwrap();
        if i % 500 == 0 {
            served(a, 2).await;
        }
    }
    served(a, 2).await;
    assert_eq!(
        b_echo.handled(),
        7,
        "only the 7 real requests reached the handler"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_and_malformed_frames_are_refused() {
    super::logs();
    let (_book, nodes) = trio(test_config());
    let (a, (b, b_echo)) = (&nodes[0].0, &nodes[1]);
    let max = b.max_frame() as u32;
    let conn = raw::connect(b.local_addr(), Some(&keys(7))).await.unwrap();

    // Announces one byte over the limit: refused before the body is read.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&header(PING, max + 1)).await.unwrap();
    let answer = recv.read_to_end(4096).await.unwrap();
    assert_eq!(answer[0], 1, "status Refused");
    let why = String::from_utf8(answer[5..].to_vec()).unwrap();
    assert_eq!(
        why,
        format!("frame of {} bytes exceeds the {max}-byte limit", max + 1)
    );

    // A message announcing u32::MAX: dropped, the stream stopped.
    let mut message = conn.open_uni().await.unwrap();
    message.write_all(&header(PING, u32::MAX)).await.unwrap();
    let stopped = tokio::time::timeout(LONG, message.stopped()).await.unwrap();
    assert!(stopped.is_ok(), "{stopped:?}");

    // A truncated header, then a body longer than announced: each stream reset.
    for bytes in [vec![2, 0, 9], [header(PING, 2), b"hi!".to_vec()].concat()] {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&bytes).await.unwrap();
        send.finish().unwrap();
        let answer = recv.read_to_end(4096).await;
        assert!(
            matches!(
                answer,
                Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(_)))
            ),
            "{answer:?}"
        );
    }
    assert_eq!(b_echo.handled(), 0);
    // The same connection still serves a well-formed request: from is its key.
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(&[header(PING, 2), b"ok".to_vec()].concat())
        .await
        .unwrap();
    send.finish().unwrap();
    let answer = {
        let mut recv = recv;
        recv.read_to_end(4096).await.unwrap()
    };
    assert_eq!(answer[5..], [id(7).as_bytes().as_slice(), b"ok"].concat());
    served(a, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_never_complete_are_capped_and_dropped_at_the_deadline() {
    super::logs();
    let mut config = test_config();
    config.max_requests_per_peer = 8;
    let (_book, nodes) = trio(config);
    let (a, (b, b_echo)) = (&nodes[0].0, &nodes[1]);
    let conn = raw::connect(b.local_addr(), Some(&keys(7))).await.unwrap();
    let start = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&[2]).await.unwrap(); // one byte of a header, then nothing
        stalled.push((send, recv));
    }
    // The cap: a ninth stream gets no credit while the eight stall.
    let ninth = tokio::time::timeout(Duration::from_millis(300), conn.open_bi()).await;
    assert!(
        ninth.is_err(),
        "a ninth stream opened beside eight stalled ones"
    );
    served(a, 2).await;
    // At the frame deadline (1 s) each stalled stream is stopped.
    for (_, recv) in &mut stalled {
        let dropped = tokio::time::timeout(LONG, recv.read_to_end(16))
            .await
            .unwrap();
        assert!(
            dropped.is_err(),
            "a stalled stream was answered: {dropped:?}"
        );
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // Once the client's stack answers the stop (quinn resets a stopped
    // stream when its handle goes), the credit is back. A client that never
    // answers keeps its own credit taken: only its own requests wait.
    drop(stalled);
    let more = tokio::time::timeout(LONG, conn.open_bi()).await;
    assert!(
        matches!(more, Ok(Ok(_))),
        "no stream after the stalled ones were dropped"
    );
    assert_eq!(
        b_echo.handled(),
        1,
        "only node 1's request reached the handler"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_the_idlest_is_closed_and_busy_ones_kept() {
    super::logs();
    let mut config = test_config();
    config.max_connections = 2;
    let (_book, nodes) = trio(config);
    let (a, (b, _)) = (&nodes[0].0, &nodes[1]);
    // Two idle connections fill the cap (each served once, so the node
    // holds it); a third closes the one idle longest.
    let first = raw::connect(b.local_addr(), Some(&keys(7))).await.unwrap();
    raw::ping(&first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = raw::connect(b.local_addr(), Some(&keys(8))).await.unwrap();
    raw::ping(&second).await.unwrap();
    served(a, 2).await;
    let closed = tokio::time::timeout(LONG, first.closed()).await.unwrap();
    assert!(closed.to_string().contains("to make room"), "{closed}");

    // Two connections each busy with a stalled frame: a third is refused.
    let mut busy = Vec::new();
    for n in [7, 8] {
        let conn = raw::connect(b.local_addr(), Some(&keys(n))).await.unwrap();
        raw::ping(&conn).await.unwrap();
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&[2]).await.unwrap();
        busy.push((conn, send, recv));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = nodes[2]
        .0
        .request(id(2), Protocol::PING, vec![], LONG)
        .await;
    match refused {
        Err(TransportError::Refused(why)) => assert!(why.contains("connection limit"), "{why}"),
        other => panic!("a connection beyond the cap answered {other:?}"),
    }
}
