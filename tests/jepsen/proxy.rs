//! A userspace fault proxy for UDP: one [`Relay`] per directed pair of nodes.
//! Node A's peers file names B at the relay's address; the relay forwards
//! what A sends to B's real port from a socket of its own, and relays B's
//! answers back to A. Each direction of each relay has its [`Faults`],
//! changed at run time: cut (partition), loss, duplication, delay with
//! jitter, and reordering (a datagram held back so later ones overtake it),
//! each drawn from a seeded RNG. Held datagrams wait in a bounded queue
//! (the newcomer is dropped, and counted, when it is full).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// The most datagrams a relay holds back (both directions).
pub const QUEUE_DATAGRAMS: usize = 4096;
/// The most bytes a relay holds back (both directions).
pub const QUEUE_BYTES: usize = 8 << 20;
/// How long a reordered datagram is held back, at most, beyond its delay.
pub const REORDER_HOLD: Duration = Duration::from_millis(15);
/// The largest datagram relayed.
const MAX_DATAGRAM: usize = 65_535;

/// What a direction of a relay does to each datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    /// Drop everything (a partition).
    pub cut: bool,
    /// The probability a datagram is dropped.
    pub loss: f64,
    /// The probability a datagram is sent twice.
    pub duplicate: f64,
    /// The delay of every datagram.
    pub delay: Duration,
    /// Up to this much more delay, uniformly.
    pub jitter: Duration,
    /// The probability a datagram is held back up to [`REORDER_HOLD`] more.
    pub reorder: f64,
}

/// Which way a datagram goes through a relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// From the node that dials (the relay's listening side) to its target.
    Forward = 0,
    /// From the target back to the node that dialed.
    Backward = 1,
}

/// Counters of one direction of a relay.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams sent on (duplicates included).
    pub sent: AtomicU64,
    /// Dropped by a cut.
    pub cut: AtomicU64,
    /// Dropped by loss.
    pub lost: AtomicU64,
    /// Sent twice.
    pub duplicated: AtomicU64,
    /// Held back (delayed or reordered).
    pub held: AtomicU64,
    /// Dropped because the queue was full.
    pub overflowed: AtomicU64,
}

impl Counters {
    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

struct Link {
    faults: Mutex<Faults>,
    counters: Counters,
}

/// One relay: where it listens, and its two directions.
pub struct Relay {
    /// The address to give the dialing node for the target.
    pub listen: SocketAddr,
    links: [Arc<Link>; 2],
}

impl Relay {
    /// Sets the faults of one direction.
    pub fn set(&self, direction: Direction, faults: Faults) {
        *self.links[direction as usize]
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = faults;
    }

    /// The counters of one direction.
    pub fn counters(&self, direction: Direction) -> &Counters {
        &self.links[direction as usize].counters
    }
}

/// Relays on a runtime thread of their own (so that a busy test does not
/// delay them), stopped when dropped.
pub struct Proxy {
    runtime: Option<tokio::runtime::Runtime>,
    relays: Vec<Relay>,
}

impl Proxy {
    /// A proxy with no relay yet.
    pub fn new() -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("a runtime for the proxy");
        Proxy {
            runtime: Some(runtime),
            relays: Vec::new(),
        }
    }

    /// A new relay to `target` on a free port of 127.0.0.1, its faults drawn
    /// from `seed`; returns its index.
    pub fn relay(&mut self, target: SocketAddr, seed: u64) -> usize {
        let runtime = self.runtime.as_ref().expect("running");
        let _inside = runtime.enter();
        let bind = || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a relay socket");
            socket.set_nonblocking(true).unwrap();
            UdpSocket::from_std(socket).unwrap()
        };
        let (listen, upstream) = (bind(), bind());
        let links = [(); 2].map(|_| {
            Arc::new(Link {
                faults: Mutex::new(Faults::default()),
                counters: Counters::default(),
            })
        });
        let relay = Relay {
            listen: listen.local_addr().unwrap(),
            links: links.clone(),
        };
        runtime.spawn(run(listen, upstream, target, links, seed));
        self.relays.push(relay);
        self.relays.len() - 1
    }

    /// Relay `i`.
    pub fn get(&self, i: usize) -> &Relay {
        &self.relays[i]
    }

    /// Every relay.
    pub fn relays(&self) -> &[Relay] {
        &self.relays
    }

    /// Clears every fault of every relay.
    pub fn heal(&self) {
        for relay in &self.relays {
            relay.set(Direction::Forward, Faults::default());
            relay.set(Direction::Backward, Faults::default());
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A datagram held back until `due`.
struct Held {
    due: Instant,
    order: u64,
    direction: Direction,
    bytes: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

/// The relay's loop: takes datagrams from both sides, applies the faults of
/// their direction, sends them on now or when due.
async fn run(
    listen: UdpSocket,
    upstream: UdpSocket,
    target: SocketAddr,
    links: [Arc<Link>; 2],
    seed: u64,
) {
    let mut rngs = [
        ChaCha8Rng::seed_from_u64(seed),
        ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
    ];
    let (mut from_node, mut from_target) = (vec![0u8; MAX_DATAGRAM], vec![0u8; MAX_DATAGRAM]);
    // The node that dialed: the last address heard on the listening side.
    let mut dialer: Option<SocketAddr> = None;
    let mut queue: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    let (mut queued_bytes, mut order) = (0usize, 0u64);
    loop {
        let due = queue.peek().map(|Reverse(h)| h.due);
        let arrived = tokio::select! {
            got = listen.recv_from(&mut from_node) => match got {
                Ok((n, from)) => {
                    dialer = Some(from);
                    Some((Direction::Forward, from_node[..n].to_vec()))
                }
                Err(_) => None,
            },
            got = upstream.recv_from(&mut from_target) => match got {
                Ok((n, from)) if from == target => Some((Direction::Backward, from_target[..n].to_vec())),
                _ => None,
            },
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => None,
        };
        if let Some((direction, bytes)) = arrived {
            let link = &links[direction as usize];
            let faults = *link.faults.lock().unwrap_or_else(PoisonError::into_inner);
            let rng = &mut rngs[direction as usize];
            let counters = &link.counters;
            if faults.cut {
                counters.cut.fetch_add(1, Ordering::Relaxed);
            } else if faults.loss > 0.0 && rng.random_bool(faults.loss.min(1.0)) {
                counters.lost.fetch_add(1, Ordering::Relaxed);
            } else {
                let copies = if faults.duplicate > 0.0 && rng.random_bool(faults.duplicate.min(1.0))
                {
                    counters.duplicated.fetch_add(1, Ordering::Relaxed);
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let mut wait = faults.delay;
                    if !faults.jitter.is_zero() {
                        wait += faults.jitter.mul_f64(rng.random_range(0.0..1.0));
                    }
                    if faults.reorder > 0.0 && rng.random_bool(faults.reorder.min(1.0)) {
                        wait += REORDER_HOLD.mul_f64(rng.random_range(0.0..1.0));
                    }
                    if wait.is_zero() {
                        send(
                            &listen, &upstream, target, dialer, direction, &bytes, counters,
                        )
                        .await;
                    } else if queue.len() >= QUEUE_DATAGRAMS
                        || queued_bytes + bytes.len() > QUEUE_BYTES
                    {
                        counters.overflowed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        counters.held.fetch_add(1, Ordering::Relaxed);
                        queued_bytes += bytes.len();
                        order += 1;
                        queue.push(Reverse(Held {
                            due: Instant::now() + wait,
                            order,
                            direction,
                            bytes: bytes.clone(),
                        }));
                    }
                }
            }
        }
        let now = Instant::now();
        while queue.peek().is_some_and(|Reverse(h)| h.due <= now) {
            let Some(Reverse(held)) = queue.pop() else {
                break;
            };
            queued_bytes -= held.bytes.len();
            let counters = &links[held.direction as usize].counters;
            send(
                &listen,
                &upstream,
                target,
                dialer,
                held.direction,
                &held.bytes,
                counters,
            )
            .await;
        }
    }
}

async fn send(
    listen: &UdpSocket,
    upstream: &UdpSocket,
    target: SocketAddr,
    dialer: Option<SocketAddr>,
    direction: Direction,
    bytes: &[u8],
    counters: &Counters,
) {
    let sent = match (direction, dialer) {
        (Direction::Forward, _) => upstream.send_to(bytes, target).await,
        (Direction::Backward, Some(dialer)) => listen.send_to(bytes, dialer).await,
        (Direction::Backward, None) => return,
    };
    // A send to a process that is down fails or vanishes, as on a network.
    if sent.is_ok() {
        counters.sent.fetch_add(1, Ordering::Relaxed);
    }
}
