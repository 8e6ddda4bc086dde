//! The generic driver over the in-memory network: inputs, timers, control,
//! malformed frames, a failed persist that sends nothing (or, without
//! write-ahead, settles nothing); the bounded queues.

use super::*;
use crate::transport::MemoryNetwork;
use crate::wire::WireError;
use futures::channel::mpsc;
use futures::executor::block_on;
use futures::future::join;
use queue::{PeerQueues, PEER_BYTES, PEER_MESSAGES, TOTAL_BYTES};

/// Answers `n` with `n + 1` until 10; tells the application what it got.
struct Counter {
    got: mpsc::UnboundedSender<u32>,
    round: Vec<u32>,
    fail_persist: bool,
    /// Whether its messages wait for its persist.
    write_ahead: bool,
    ticks: u32,
}

impl Node for Counter {
    type Message = u32;
    type Timer = ();

    fn on_start(&mut self, ctx: &mut Context<'_, u32, ()>) {
        ctx.set_timer(1, ());
    }

    fn on_message(&mut self, ctx: &mut Context<'_, u32, ()>, from: NodeId, n: u32) {
        self.round.push(n);
        if n < 10 {
            ctx.send(from, n + 1);
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, u32, ()>, (): ()) {
        self.ticks += 1;
        if self.ticks < 3 {
            ctx.set_timer(1, ());
        }
    }
}

/// The counter's message travels in the one codec.
impl Wire for u32 {
    const NAME: &'static str = "count";
    const MAX_WIRE_LEN: usize = 5;
    type Error = WireError;
}

impl Driven for Counter {
    const PROTOCOL: Protocol = Protocol(900);
    type Control = (NodeId, u32);
    type Error = &'static str;

    fn on_control(&mut self, ctx: &mut Context<'_, u32, ()>, (to, n): (NodeId, u32)) {
        ctx.send_all(vec![to], n);
    }

    async fn persist(&mut self) -> Result<(), &'static str> {
        if self.fail_persist && !self.round.is_empty() {
            return Err("the store failed");
        }
        Ok(())
    }

    fn write_ahead(&self) -> bool {
        self.write_ahead
    }

    fn settle(&mut self) {
        for n in self.round.drain(..) {
            let _ = self.got.unbounded_send(n);
        }
    }
}

struct Peer {
    driver: Driver<Counter>,
    handle: Handle<Counter>,
    got: mpsc::UnboundedReceiver<u32>,
    transport: Arc<dyn Transport>,
}

fn peer(net: &MemoryNetwork, i: u8, fail_persist: bool) -> Peer {
    peer_of(net, i, fail_persist, true)
}

fn peer_of(net: &MemoryNetwork, i: u8, fail_persist: bool, write_ahead: bool) -> Peer {
    let (handler, inbox) = inbox::<Counter>();
    let transport: Arc<dyn Transport> =
        Arc::new(net.join(NodeId::from_bytes([i; 32]), Arc::new(handler)));
    let (got_tx, got) = mpsc::unbounded();
    let node = Counter {
        got: got_tx,
        round: Vec::new(),
        fail_persist,
        write_ahead,
        ticks: 0,
    };
    let (driver, handle) = Driver::new(node, transport.clone(), net.timer().clone(), inbox);
    Peer {
        driver,
        handle,
        got,
        transport,
    }
}

#[test]
fn two_cores_talk_through_their_drivers_and_timers_fire() {
    let net = MemoryNetwork::new(1);
    let (mut a, mut b) = (peer(&net, 1, false), peer(&net, 2, false));
    let b_id = b.transport.local_id();
    a.handle.send((b_id, 0)).unwrap();
    let (a_handle, b_handle) = (a.handle.clone(), b.handle.clone());
    let stop = async {
        // A sees 1, 3, ..., 9; B sees 0, 2, ..., 10.
        let mut seen = Vec::new();
        while seen.len() < 5 {
            seen.extend(a.got.next().await);
        }
        let mut last = 0;
        while last < 10 {
            last = b.got.next().await.unwrap_or(10);
        }
        net.timer().sleep(Duration::from_millis(20)).await;
        a_handle.stop();
        b_handle.stop();
        seen
    };
    let runs = join(a.driver.run(), b.driver.run());
    let (seen, ((a_node, a_result), (b_node, b_result))) = block_on(join(stop, runs));
    assert_eq!(seen, vec![1, 3, 5, 7, 9]);
    assert!(a_result.is_ok() && b_result.is_ok());
    assert_eq!((a_node.ticks, b_node.ticks), (3, 3));
    assert!(
        a.handle.send((b_id, 0)).is_err(),
        "a stopped driver takes no input"
    );
}

/// Runs A and B until A's store fails (B stopped a little after, without
/// an error); the error A stopped on.
fn until_stopped(
    net: &MemoryNetwork,
    a: Driver<Counter>,
    b_handle: &Handle<Counter>,
    b: Driver<Counter>,
) -> &'static str {
    let watch = async {
        let (_, result) = a.run().await;
        net.timer().sleep(Duration::from_millis(20)).await;
        b_handle.stop();
        result
    };
    let (a_result, (_, b_result)) = block_on(join(watch, b.run()));
    assert!(b_result.is_ok());
    a_result.err().unwrap_or("A did not fail")
}

#[test]
fn malformed_frames_are_dropped_and_a_failed_persist_sends_nothing() {
    let net = MemoryNetwork::new(2);
    let (a, mut b) = (peer(&net, 1, true), peer(&net, 2, false));
    let (a_id, b_id) = (a.transport.local_id(), b.transport.local_id());
    // A frame that does not decode never reaches B's queue.
    block_on(a.transport.send(b_id, Counter::PROTOCOL, vec![0xff; 9])).unwrap();
    assert_eq!(b.handle.inbox_stats(), InboxStats::default());
    // B's 0 reaches A, whose store fails: A stops without answering.
    b.handle.send((a_id, 0)).unwrap();
    assert_eq!(
        until_stopped(&net, a.driver, &b.handle, b.driver),
        "the store failed"
    );
    assert_eq!(b.got.try_recv().ok(), None, "A sent nothing");
}

#[test]
fn without_write_ahead_a_round_sends_while_it_persists_and_settles_after() {
    let net = MemoryNetwork::new(3);
    let (mut a, mut b) = (peer_of(&net, 1, true, false), peer(&net, 2, false));
    let a_id = a.transport.local_id();
    // B's 0 reaches A, whose store fails: its answer, which needs no
    // write-ahead, went out with the write, but A settles nothing.
    b.handle.send((a_id, 0)).unwrap();
    assert_eq!(
        until_stopped(&net, a.driver, &b.handle, b.driver),
        "the store failed"
    );
    assert_eq!(b.got.try_recv().ok(), Some(1), "A's answer was sent");
    assert_eq!(a.got.try_recv().ok(), None, "A settled nothing");
}

fn id(i: u8) -> NodeId {
    NodeId::from_bytes([i; 32])
}

#[test]
fn a_flooding_peer_is_capped_and_others_are_served_in_turn() {
    let mut q = PeerQueues::default();
    let (flooder, honest) = (id(1), id(2));
    for h in 0..10_000u64 {
        q.push(flooder, h, 3);
    }
    assert_eq!(q.stats().queued, PEER_MESSAGES);
    assert_eq!(q.stats().dropped, 10_000 - PEER_MESSAGES as u64);
    for h in 0..3 {
        assert!(q.push(honest, h, 3));
    }
    // The honest peer's three messages come out within the first six.
    let first: Vec<NodeId> = (0..6).filter_map(|_| q.pop()).map(|(f, _)| f).collect();
    assert_eq!(first.iter().filter(|f| **f == honest).count(), 3);
    while q.pop().is_some() {}
    assert!(q.is_empty());
    assert_eq!(q.stats().queued_bytes, 0);
    assert_eq!(q.stats().peak, PEER_MESSAGES + 3);
}

#[test]
fn bytes_are_capped_per_peer_and_in_total() {
    let mut q = PeerQueues::default();
    let big = PEER_BYTES / 4;
    for _ in 0..5 {
        q.push(id(1), 0u64, big);
    }
    assert_eq!(q.stats().queued, 4);
    for i in 2..20 {
        for _ in 0..4 {
            q.push(id(i), 0, big);
        }
    }
    assert!(q.stats().queued_bytes <= TOTAL_BYTES);
    assert_eq!(q.stats().queued_bytes, TOTAL_BYTES);
    assert!(!q.push(id(99), 0, 1));
    // Draining makes room again.
    q.pop();
    assert!(q.push(id(99), 0, 1));
}
