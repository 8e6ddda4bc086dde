//! The fault proxy on plain UDP sockets: an echo server behind a relay.

use super::proxy::{Counters, Direction, Faults, Proxy, QUEUE_DATAGRAMS};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// An echo server: answers every datagram with itself; counts them.
async fn echo() -> (SocketAddr, Arc<AtomicU64>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let heard = Arc::new(AtomicU64::new(0));
    let count = heard.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            count.fetch_add(1, Ordering::Relaxed);
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    (addr, heard)
}

/// Sends datagrams `0..n` (as u32 LE) through `to`, `gap` apart, and
/// collects the echoes heard until `quiet` passes with none.
async fn exchange(to: SocketAddr, n: u32, gap: Duration, quiet: Duration) -> Vec<u32> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..n {
        socket.send_to(&i.to_le_bytes(), to).await.unwrap();
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 16];
    while let Ok(Ok((len, _))) = tokio::time::timeout(quiet, socket.recv_from(&mut buf)).await {
        got.push(u32::from_le_bytes(buf[..len].try_into().unwrap()));
    }
    got
}

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_clean_relay_forwards_and_relays_answers_back_in_order() {
    let (server, heard) = echo().await;
    let mut proxy = Proxy::new();
    let r = proxy.relay(server, 1);
    let got = exchange(proxy.get(r).listen, 200, Duration::ZERO, QUIET).await;
    assert_eq!(got, (0..200).collect::<Vec<u32>>());
    assert_eq!(heard.load(Ordering::Relaxed), 200);
    let relay = proxy.get(r);
    assert_eq!(Counters::get(&relay.counters(Direction::Forward).sent), 200);
    assert_eq!(
        Counters::get(&relay.counters(Direction::Backward).sent),
        200
    );
}

#[tokio::test]
async fn a_cut_drops_one_direction_and_heals_at_run_time() {
    let (server, heard) = echo().await;
    let mut proxy = Proxy::new();
    let r = proxy.relay(server, 2);
    let to = proxy.get(r).listen;
    let cut = Faults {
        cut: true,
        ..Faults::default()
    };
    proxy.get(r).set(Direction::Forward, cut);
    assert!(exchange(to, 20, Duration::ZERO, QUIET).await.is_empty());
    assert_eq!(
        heard.load(Ordering::Relaxed),
        0,
        "nothing reached the server"
    );
    assert_eq!(
        Counters::get(&proxy.get(r).counters(Direction::Forward).cut),
        20
    );
    // Only the answers cut: the server hears, the client does not.
    proxy.get(r).set(Direction::Forward, Faults::default());
    proxy.get(r).set(Direction::Backward, cut);
    assert!(exchange(to, 20, Duration::ZERO, QUIET).await.is_empty());
    assert_eq!(heard.load(Ordering::Relaxed), 20);
    proxy.heal();
    assert_eq!(exchange(to, 20, Duration::ZERO, QUIET).await.len(), 20);
}

#[tokio::test]
async fn loss_is_drawn_from_the_seed() {
    let (server, _) = echo().await;
    let mut proxy = Proxy::new();
    let lossy = Faults {
        loss: 0.5,
        ..Faults::default()
    };
    let mut delivered = Vec::new();
    for seed in [7, 7, 8] {
        let r = proxy.relay(server, seed);
        proxy.get(r).set(Direction::Forward, lossy);
        // One at a time, so the draws meet the datagrams in order.
        let got: HashSet<u32> = exchange(proxy.get(r).listen, 200, Duration::from_millis(1), QUIET)
            .await
            .into_iter()
            .collect();
        let lost = Counters::get(&proxy.get(r).counters(Direction::Forward).lost);
        assert_eq!(got.len() as u64 + lost, 200, "seed {seed}");
        assert!(
            (40..160).contains(&got.len()),
            "seed {seed}: {} of 200",
            got.len()
        );
        delivered.push(got);
    }
    assert_eq!(
        delivered[0], delivered[1],
        "the same seed loses the same datagrams"
    );
    assert_ne!(delivered[0], delivered[2], "another seed, others");
}

#[tokio::test]
async fn duplicates_arrive_twice() {
    let (server, heard) = echo().await;
    let mut proxy = Proxy::new();
    let r = proxy.relay(server, 3);
    proxy.get(r).set(
        Direction::Forward,
        Faults {
            duplicate: 1.0,
            ..Faults::default()
        },
    );
    let mut got = exchange(proxy.get(r).listen, 50, Duration::ZERO, QUIET).await;
    assert_eq!(heard.load(Ordering::Relaxed), 100);
    got.sort_unstable();
    let twice: Vec<u32> = (0..50).flat_map(|i| [i, i]).collect();
    assert_eq!(got, twice);
}

#[tokio::test]
async fn delay_holds_datagrams_and_reordering_lets_later_ones_overtake() {
    let (server, _) = echo().await;
    let mut proxy = Proxy::new();
    let r = proxy.relay(server, 4);
    let delayed = Faults {
        delay: Duration::from_millis(60),
        ..Faults::default()
    };
    proxy.get(r).set(Direction::Backward, delayed);
    let start = Instant::now();
    let got = exchange(proxy.get(r).listen, 1, Duration::ZERO, QUIET).await;
    assert_eq!(got, vec![0]);
    assert!(start.elapsed() >= Duration::from_millis(60));
    // Reordering: every datagram arrives, not all in order.
    proxy.get(r).set(
        Direction::Backward,
        Faults {
            reorder: 0.5,
            jitter: Duration::from_millis(2),
            ..Faults::default()
        },
    );
    let got = exchange(proxy.get(r).listen, 200, Duration::from_micros(200), QUIET).await;
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..200).collect::<Vec<u32>>(),
        "every datagram arrives"
    );
    assert_ne!(got, sorted, "some overtook others");
}

#[tokio::test]
async fn the_queue_of_held_datagrams_is_bounded() {
    let (server, heard) = echo().await;
    let mut proxy = Proxy::new();
    let r = proxy.relay(server, 5);
    proxy.get(r).set(
        Direction::Forward,
        Faults {
            delay: Duration::from_millis(500),
            ..Faults::default()
        },
    );
    let extra = 500;
    let n = (QUEUE_DATAGRAMS + extra) as u32;
    // Sent in small bursts, so the relay's socket buffer does not overflow.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let start = Instant::now();
    for i in 0..n {
        socket
            .send_to(&i.to_le_bytes(), proxy.get(r).listen)
            .await
            .unwrap();
        if i % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let sending = start.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let counters = proxy.get(r).counters(Direction::Forward);
    let (held, overflowed, sent) = (
        Counters::get(&counters.held),
        Counters::get(&counters.overflowed),
        Counters::get(&counters.sent),
    );
    assert!(held + overflowed <= u64::from(n));
    assert!(overflowed > 0, "the queue held {held}");
    if sending < Duration::from_millis(450) {
        // Nothing was due before the last one arrived: the queue was full.
        assert_eq!(held, QUEUE_DATAGRAMS as u64, "{overflowed} overflowed");
    }
    assert_eq!(sent, held, "every held datagram sent when due");
    // (The echo server's own socket may drop some of the burst.)
    assert!(heard.load(Ordering::Relaxed) <= held);
}

/// The nodes' ports (seed 82 of a soak once failed with `Address already
/// in use`: a port chosen by binding port 0 and released was handed out
/// again, to one of the proxy's relay sockets bound right after, before its
/// node bound it). The ports are outside the kernel's ephemeral range, so
/// no socket bound to port 0 can take one while it is released; each is
/// claimed for this process, so our other test processes skip it (a soak
/// beside other campaigns once saw a restarted node's port taken).
#[test]
fn node_ports_are_never_handed_out_for_port_zero() {
    use crate::localhost::{ephemeral_range, free_udp_addrs};
    let (low, high) = ephemeral_range();
    let ports: Vec<u16> = free_udp_addrs(8).iter().map(SocketAddr::port).collect();
    for port in &ports {
        assert!(
            !(low..=high).contains(port),
            "port {port} is in the ephemeral range {low}-{high}"
        );
    }
    assert_eq!(ports.iter().collect::<HashSet<_>>().len(), 8, "{ports:?}");
    // Each claimed for this process, against our other test processes.
    let claims = std::env::temp_dir().join("hologram-test-ports");
    for port in &ports {
        let holder = std::fs::read_to_string(claims.join(port.to_string())).unwrap();
        assert_eq!(holder, std::process::id().to_string(), "port {port}");
    }
    // Not given twice by this process.
    let again: Vec<u16> = free_udp_addrs(8).iter().map(SocketAddr::port).collect();
    assert!(again.iter().all(|p| !ports.contains(p)), "{again:?}");
    // Released: as many sockets as a campaign's relays and clients and more,
    // bound to port 0, take none of them.
    let taken: Vec<std::net::UdpSocket> = (0..512)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for socket in &taken {
        let port = socket.local_addr().unwrap().port();
        assert!(!ports.contains(&port) && !again.contains(&port), "{port}");
    }
    // And each is still free for its node.
    let bound: Vec<std::net::UdpSocket> = (ports.iter().chain(&again))
        .map(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).unwrap())
        .collect();
    assert_eq!(bound.len(), 16);
}
