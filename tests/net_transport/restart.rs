//! A peer killed with SIGKILL (a child process: it sends no goodbye) and
//! restarted on the same address with the same key, mid-traffic.

use super::{echo_node, echo_node_at, id, test_config, LONG};
use hologram::lattice::transport::{Protocol, Transport, TransportError};
use hologram::net::{AddressBook, QuicTransport};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `n@addr`: the node the child process runs.
const CHILD: &str = "HOLOGRAM_NET_CHILD";
const SHORT: Duration = Duration::from_millis(300);

/// Not a test of its own: the node [`a_killed_peer_fails_calls_then_serves_again`]
/// runs in a child process. It serves for at most 60 s.
#[test]
#[ignore = "run as a child process by a_killed_peer_fails_calls_then_serves_again"]
fn child_node() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let (n, addr) = spec.split_once('@').expect("n@addr");
    let (n, addr): (u8, SocketAddr) = (n.parse().unwrap(), addr.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let _node = echo_node_at(n, addr, &AddressBook::new(), test_config());
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}

/// A child process running node `n` on `addr`, killed when dropped.
struct Node(Child);

impl Node {
    fn start(n: u8, addr: SocketAddr) -> Node {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "restart::child_node",
                "--test-threads=1",
            ])
            .env(CHILD, format!("{n}@{addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Node(child)
    }

    /// SIGKILL: no close frames, no goodbye.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_udp_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

/// Calls `to` until it answers; how long that took.
async fn until_served(from: &QuicTransport, to: u8, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let answer = from
            .request(id(to), Protocol::PING, b"up?".to_vec(), SHORT)
            .await;
        match answer {
            Ok(_) => return start.elapsed(),
            Err(e) => assert!(
                start.elapsed() < limit,
                "node {to} not back after {limit:?}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_transport_error(e: &TransportError) -> bool {
    matches!(
        e,
        TransportError::TimedOut { .. } | TransportError::Io(_) | TransportError::Unreachable(_)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_fails_calls_then_serves_again() {
    super::logs();
    let book = AddressBook::new();
    let (a, _) = echo_node(1, &book, test_config());
    let (_c, _) = echo_node(3, &book, test_config());
    let addr = free_udp_port();
    book.insert(id(2), addr);
    let mut b = Node::start(2, addr);
    let started = until_served(&a, 2, Duration::from_secs(20)).await;

    // Node 1 keeps calling node 3 throughout: each call must succeed quickly.
    let stop = Arc::new(AtomicBool::new(false));
    let others = tokio::spawn({
        let (a, stop) = (a.clone(), Arc::clone(&stop));
        async move {
            let mut calls = 0;
            while !stop.load(Ordering::SeqCst) {
                let start = Instant::now();
                let answer = a.request(id(3), Protocol::PING, vec![1], LONG).await;
                assert!(answer.is_ok(), "a call to node 3 failed: {answer:?}");
                assert!(
                    start.elapsed() < Duration::from_secs(1),
                    "{:?}",
                    start.elapsed()
                );
                calls += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            calls
        }
    });

    b.kill();
    let killed = Instant::now();
    for _ in 0..3 {
        let answer = a.request(id(2), Protocol::PING, vec![2], SHORT).await;
        match answer {
            Err(e) => assert!(is_transport_error(&e), "a call to a killed node: {e:?}"),
            Ok(_) => panic!("a killed node answered"),
        }
        let sent = a.send(id(2), Protocol::PING, vec![2]).await;
        assert!(
            sent.as_ref().map_or_else(is_transport_error, |_| true),
            "{sent:?}"
        );
    }

    let failing = killed.elapsed();
    // Back on the same address with the same key: its stateless resets end
    // the old connection at once (the idle timeout is 10 s), and the next
    // call dials again.
    let _b = Node::start(2, addr);
    let recovered = until_served(&a, 2, Duration::from_secs(20)).await;
    stop.store(true, Ordering::SeqCst);
    let calls = others.await.unwrap();
    assert!(calls > 10, "only {calls} calls to node 3");
    eprintln!(
        "node 2 served {started:?} after its first start; 3 requests and 3 sends to it after \
         SIGKILL took {failing:?}; served again {recovered:?} after its restart; {calls} calls \
         to node 3 meanwhile"
    );
    assert!(
        recovered < Duration::from_secs(8),
        "recovery took {recovered:?}"
    );
}
