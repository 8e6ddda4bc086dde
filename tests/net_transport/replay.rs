//! A replayed handshake: an on-path host records every datagram a client
//! sent while it connected and made one call, then replays them to the
//! server, both from the client's own path and from a fresh address. TLS
//! 1.3 without tickets or 0-RTT gives a replayed `ClientHello` a fresh
//! handshake that only the holder of the client's key could finish, and
//! QUIC drops packets it has already seen: no replayed datagram may reach
//! the handler, and the server keeps serving.

use super::{echo_node, id, test_config, LONG};
use hologram::lattice::transport::{Protocol, Transport};
use hologram::net::AddressBook;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;

/// Relays datagrams between one client and `server`, recording what the
/// client sent. Returns the address the client must dial, the socket that
/// talks to the server (the client's path as the server sees it) and the
/// record.
async fn recording_relay(
    server: SocketAddr,
) -> (SocketAddr, Arc<UdpSocket>, Arc<Mutex<Vec<Vec<u8>>>>) {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let record = Arc::new(Mutex::new(Vec::new()));
    let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let (f, b, r, c) = (front.clone(), back.clone(), record.clone(), client.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = f.recv_from(&mut buf).await {
            *c.lock().unwrap() = Some(from);
            r.lock().unwrap().push(buf[..n].to_vec());
            let _ = b.send_to(&buf[..n], server).await;
        }
    });
    let (f, b) = (front.clone(), back.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, _)) = b.recv_from(&mut buf).await {
            let to = *client.lock().unwrap();
            if let Some(to) = to {
                let _ = f.send_to(&buf[..n], to).await;
            }
        }
    });
    (front.local_addr().unwrap(), back, record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_handshake_reaches_no_handler() {
    super::logs();
    let book = AddressBook::new();
    let (a, _) = echo_node(1, &book, test_config());
    let (b, b_echo) = echo_node(2, &book, test_config());
    let (c, _) = echo_node(3, &book, test_config());
    let (relay, path, record) = recording_relay(b.local_addr()).await;
    book.insert(id(2), relay);
    let answer = a
        .request(id(2), Protocol::PING, b"once".to_vec(), LONG)
        .await;
    assert!(answer.is_ok(), "the relayed call: {answer:?}");
    assert_eq!(b_echo.handled(), 1);
    let recorded = record.lock().unwrap().clone();
    assert!(recorded.len() >= 2, "recorded {} datagrams", recorded.len());

    // Replayed on the client's own path, then from a fresh address, twice.
    let fresh = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for _ in 0..2 {
        for datagram in &recorded {
            path.send_to(datagram, b.local_addr()).await.unwrap();
            fresh.send_to(datagram, b.local_addr()).await.unwrap();
        }
    }
    // Past the frame deadline of anything the replay might have started.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        b_echo.handled(),
        1,
        "a replayed datagram reached the handler"
    );
    // The server still serves others, and the client itself.
    book.insert(id(2), b.local_addr());
    for from in [&c, &a] {
        let answer = tokio::time::timeout(
            LONG,
            from.request(id(2), Protocol::PING, b"after".to_vec(), LONG),
        )
        .await;
        assert!(
            matches!(answer, Ok(Ok(_))),
            "a call from {} after the replay: {answer:?}",
            from.local_id()
        );
    }
    assert_eq!(b_echo.handled(), 3);
}
