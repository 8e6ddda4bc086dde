//! Tests of [`MemoryNetwork`]: delivery, timeouts, limits and every fault.

use super::{
    Handler, HandlerError, MemoryNetwork, MemoryTransport, Protocol, ProtocolMux, Transport,
    TransportError,
};
use crate::sim::Faults;
use crate::PeerId;
use async_trait::async_trait;
use futures::executor::block_on;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a [`Recorder`] saw: (from, protocol, payload, was it a request).
type Seen = Vec<(PeerId, Protocol, Vec<u8>, bool)>;

/// Answers `b"re:" ‖ payload` (or `answer_len` zero bytes if set) and
/// records everything it receives.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Seen>,
    answer_len: Option<usize>,
}

impl Recorder {
    fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl Handler for Recorder {
    async fn request(
        &self,
        from: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        let answer = match self.answer_len {
            Some(len) => vec![0; len],
            None => [b"re:".as_slice(), &payload].concat(),
        };
        self.seen
            .lock()
            .unwrap()
            .push((from, protocol, payload, true));
        Ok(answer)
    }

    async fn message(&self, from: PeerId, protocol: Protocol, payload: Vec<u8>) {
        self.seen
            .lock()
            .unwrap()
            .push((from, protocol, payload, false));
    }
}

fn peer(n: u8) -> PeerId {
    PeerId::from_bytes([n; 32])
}

const LONG: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(20);

/// A network of `n` recording nodes, ids `peer(1)..=peer(n)`.
fn network(seed: u64, n: u8) -> (MemoryNetwork, Vec<MemoryTransport>, Vec<Arc<Recorder>>) {
    let net = MemoryNetwork::new(seed);
    let recorders: Vec<_> = (0..n).map(|_| Arc::new(Recorder::default())).collect();
    let transports = recorders
        .iter()
        .zip(1..)
        .map(|(r, i)| net.join(peer(i), Arc::clone(r) as Arc<dyn Handler>))
        .collect();
    (net, transports, recorders)
}

fn ask(
    t: &MemoryTransport,
    to: u8,
    payload: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, TransportError> {
    block_on(t.request(peer(to), Protocol::PING, payload.to_vec(), timeout))
}

#[test]
fn request_and_response_both_ways() {
    let (_net, t, r) = network(1, 2);
    assert_eq!(ask(&t[0], 2, b"hello", LONG).unwrap(), b"re:hello");
    assert_eq!(ask(&t[1], 1, b"back", LONG).unwrap(), b"re:back");
    assert_eq!(
        r[1].seen(),
        vec![(peer(1), Protocol::PING, b"hello".to_vec(), true)]
    );
    assert_eq!(
        r[0].seen(),
        vec![(peer(2), Protocol::PING, b"back".to_vec(), true)]
    );
    block_on(t[0].send(peer(2), Protocol(258), b"note".to_vec())).unwrap();
    assert_eq!(
        r[1].seen()[1],
        (peer(1), Protocol(258), b"note".to_vec(), false)
    );
    assert_eq!(t[0].local_id(), peer(1));
}

#[test]
fn unknown_peer_is_unreachable() {
    let (_net, t, _r) = network(1, 1);
    assert_eq!(
        ask(&t[0], 9, b"x", LONG),
        Err(TransportError::Unreachable(peer(9)))
    );
    let sent = block_on(t[0].send(peer(9), Protocol::PING, vec![]));
    assert_eq!(sent, Err(TransportError::Unreachable(peer(9))));
}

#[test]
fn latency_delays_and_the_timeout_fires() {
    let (net, t, r) = network(2, 2);
    net.set_faults(Faults {
        latency_ms: (10, 15),
        ..Faults::NONE
    });
    let start = Instant::now();
    assert_eq!(ask(&t[0], 2, b"slow", LONG).unwrap(), b"re:slow");
    // There and back: two one-way latencies.
    assert!(start.elapsed() >= Duration::from_millis(20));

    net.set_faults(Faults {
        latency_ms: (200, 200),
        ..Faults::NONE
    });
    let start = Instant::now();
    let timeout = Duration::from_millis(30);
    assert_eq!(
        ask(&t[0], 2, b"late", timeout),
        Err(TransportError::TimedOut {
            peer: peer(2),
            timeout
        })
    );
    let waited = start.elapsed();
    assert!(
        waited >= timeout && waited < Duration::from_millis(190),
        "{waited:?}"
    );
    assert_eq!(r[1].seen().len(), 1, "the late request was never delivered");
}

#[test]
fn too_large_frames_are_refused_before_sending() {
    let (net, t, r) = network(3, 2);
    net.set_max_frame(100);
    assert_eq!(t[0].max_frame(), 100);
    let too_large = Err(TransportError::TooLarge {
        size: 101,
        max: 100,
    });
    assert_eq!(ask(&t[0], 2, &[0; 101], LONG), too_large);
    let sent = block_on(t[0].send(peer(2), Protocol::PING, vec![0; 101]));
    assert_eq!(
        sent,
        Err(TransportError::TooLarge {
            size: 101,
            max: 100
        })
    );
    assert!(r[1].seen().is_empty());
    assert_eq!(ask(&t[0], 2, &[0; 97], LONG).map(|a| a.len()), Ok(100));
}

#[test]
fn too_large_responses_are_refused() {
    let net = MemoryNetwork::new(3);
    net.set_max_frame(100);
    let big = Arc::new(Recorder {
        answer_len: Some(101),
        ..Recorder::default()
    });
    let a = net.join(peer(1), Arc::new(Recorder::default()));
    let _b = net.join(peer(2), Arc::clone(&big) as Arc<dyn Handler>);
    assert_eq!(
        ask(&a, 2, b"q", LONG),
        Err(TransportError::TooLarge {
            size: 101,
            max: 100
        })
    );
    assert_eq!(big.seen().len(), 1);
}

#[test]
fn unknown_protocol_is_refused_by_the_mux() {
    let net = MemoryNetwork::new(4);
    let ping = Arc::new(Recorder::default());
    let mux = ProtocolMux::new();
    mux.mount_as(Protocol::PING, Arc::clone(&ping) as Arc<dyn Handler>);
    let a = net.join(peer(1), Arc::new(ProtocolMux::new()));
    let _b = net.join(peer(2), Arc::new(mux));
    let refused = block_on(a.request(peer(2), Protocol(256), b"get".to_vec(), LONG));
    assert!(matches!(refused, Err(TransportError::Refused(why)) if why.contains('2')));
    assert_eq!(ask(&a, 2, b"p", LONG).unwrap(), b"re:p");
    assert_eq!(ping.seen().len(), 1);
}

#[test]
fn total_loss_times_out_and_drops_messages() {
    let (net, t, r) = network(5, 2);
    net.set_faults(Faults {
        loss: 1.0,
        latency_ms: (0, 0),
        ..Faults::NONE
    });
    let timed_out = Err(TransportError::TimedOut {
        peer: peer(2),
        timeout: SHORT,
    });
    assert_eq!(ask(&t[0], 2, b"lost", SHORT), timed_out);
    assert_eq!(
        block_on(t[0].send(peer(2), Protocol::PING, b"m".to_vec())),
        Ok(())
    );
    assert!(r[1].seen().is_empty());
}

/// Outcomes of 40 requests under 50% loss (of requests and of responses).
fn lossy_run(seed: u64) -> Vec<bool> {
    let (net, t, _r) = network(seed, 2);
    net.set_faults(Faults {
        loss: 0.5,
        latency_ms: (0, 0),
        ..Faults::NONE
    });
    (0..40)
        .map(|i| ask(&t[0], 2, &[i], Duration::from_millis(5)).is_ok())
        .collect()
}

#[test]
fn partial_loss_replays_for_a_seed() {
    let run = lossy_run(6);
    let answered = run.iter().filter(|&&ok| ok).count();
    // Each round trip survives with probability 1/4.
    assert!((3..=20).contains(&answered), "{answered} of 40 answered");
    assert_eq!(run, lossy_run(6));
    assert_ne!(run, lossy_run(7));
}

#[test]
fn partitions_cut_and_heal_restores() {
    let (net, t, r) = network(8, 3);
    net.partition(&[&[peer(1)], &[peer(2)]]);
    let timed_out = Err(TransportError::TimedOut {
        peer: peer(2),
        timeout: SHORT,
    });
    assert_eq!(ask(&t[0], 2, b"across", SHORT), timed_out);
    assert_eq!(
        ask(&t[0], 3, b"across", SHORT).map(|_| ()),
        Err(TransportError::TimedOut {
            peer: peer(3),
            timeout: SHORT
        })
    );
    // Peer 3 is unlisted: alone in the group of the rest.
    block_on(t[1].send(peer(1), Protocol::PING, b"m".to_vec())).unwrap();
    assert!(r[0].seen().is_empty());
    assert!(r[1].seen().is_empty());

    net.partition(&[&[peer(1), peer(2)]]);
    assert_eq!(ask(&t[0], 2, b"within", LONG).unwrap(), b"re:within");
    assert!(ask(&t[1], 3, b"across", SHORT).is_err());

    net.heal();
    assert_eq!(ask(&t[1], 3, b"healed", LONG).unwrap(), b"re:healed");
    assert_eq!(ask(&t[2], 1, b"healed", LONG).unwrap(), b"re:healed");
}

#[test]
fn crash_closes_the_node_and_restart_brings_it_back() {
    let (net, t, r) = network(9, 2);
    assert!(net.crash(peer(2)));
    assert!(!net.crash(peer(2)), "already down");
    assert!(!net.is_up(peer(2)));
    assert_eq!(
        ask(&t[0], 2, b"x", LONG),
        Err(TransportError::Unreachable(peer(2)))
    );
    assert_eq!(
        block_on(t[0].send(peer(2), Protocol::PING, b"m".to_vec())),
        Ok(())
    );
    assert_eq!(ask(&t[1], 1, b"x", LONG), Err(TransportError::Closed));
    let closed = block_on(t[1].send(peer(1), Protocol::PING, vec![]));
    assert_eq!(closed, Err(TransportError::Closed));
    assert!(r[1].seen().is_empty());
    assert!(r[0].seen().is_empty());

    let fresh = Arc::new(Recorder::default());
    let b2 = net.restart(peer(2), Arc::clone(&fresh) as Arc<dyn Handler>);
    assert!(net.is_up(peer(2)));
    assert_eq!(ask(&t[0], 2, b"again", LONG).unwrap(), b"re:again");
    assert_eq!(ask(&b2, 1, b"hi", LONG).unwrap(), b"re:hi");
    assert_eq!(fresh.seen().len(), 1);
    assert!(r[1].seen().is_empty(), "the old handler is gone");
    assert_eq!(
        ask(&t[1], 1, b"x", LONG),
        Err(TransportError::Closed),
        "the old transport stays closed"
    );
}

#[test]
fn frames_in_flight_to_a_crashed_node_are_dropped() {
    let (net, t, r) = network(10, 2);
    net.set_faults(Faults {
        latency_ms: (30, 30),
        ..Faults::NONE
    });
    let timeout = Duration::from_millis(60);
    let outcome = block_on(async {
        let call = t[0].request(peer(2), Protocol::PING, b"x".to_vec(), timeout);
        let mut call = std::pin::pin!(call);
        // The request is on its way (waiting out its latency) when 2 crashes.
        assert!(futures::poll!(call.as_mut()).is_pending());
        assert!(net.crash(peer(2)));
        call.await
    });
    assert_eq!(
        outcome,
        Err(TransportError::TimedOut {
            peer: peer(2),
            timeout
        })
    );
    assert!(r[1].seen().is_empty());
}

#[test]
fn duplicates_reach_the_handler_twice() {
    let (net, t, r) = network(11, 2);
    net.set_faults(Faults {
        duplicate: 1.0,
        latency_ms: (0, 3),
        ..Faults::NONE
    });
    block_on(t[0].send(peer(2), Protocol(258), b"once".to_vec())).unwrap();
    assert_eq!(
        r[1].seen(),
        vec![(peer(1), Protocol(258), b"once".to_vec(), false); 2]
    );
    assert_eq!(ask(&t[0], 2, b"q", LONG).unwrap(), b"re:q");
    let requests = r[1].seen().into_iter().filter(|s| s.3).count();
    assert_eq!(requests, 2);
}

#[test]
fn corruption_flips_one_bit() {
    let (net, t, r) = network(12, 2);
    net.set_faults(Faults {
        corrupt: 1.0,
        latency_ms: (0, 0),
        ..Faults::NONE
    });
    let sent = vec![0u8; 64];
    block_on(t[0].send(peer(2), Protocol::PING, sent.clone())).unwrap();
    let got = r[1].seen().remove(0).2;
    let flipped: u32 = sent
        .iter()
        .zip(&got)
        .map(|(a, b)| (a ^ b).count_ones())
        .sum();
    assert_eq!((got.len(), flipped), (64, 1));
    // The request and its response are each corrupted.
    let answer = ask(&t[0], 2, &sent, LONG).unwrap();
    let seen = r[1].seen().remove(1).2;
    let expected = [b"re:".as_slice(), &seen].concat();
    let flipped: u32 = expected
        .iter()
        .zip(&answer)
        .map(|(a, b)| (a ^ b).count_ones())
        .sum();
    assert_eq!(flipped, 1);
}

/// Forwards every request to a next peer over its own transport.
struct Relay {
    transport: Mutex<Option<MemoryTransport>>,
    next: PeerId,
}

#[async_trait]
impl Handler for Relay {
    async fn request(
        &self,
        _: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        let transport = self.transport.lock().unwrap().clone();
        let transport = transport.ok_or_else(|| HandlerError::Failed("not wired".into()))?;
        transport
            .request(self.next, protocol, payload, LONG)
            .await
            .map_err(|e| HandlerError::Failed(e.to_string()))
    }

    async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {}
}

#[test]
fn handlers_may_call_the_network_again() {
    let net = MemoryNetwork::new(13);
    net.set_faults(Faults {
        latency_ms: (1, 4),
        ..Faults::NONE
    });
    let relay = Arc::new(Relay {
        transport: Mutex::new(None),
        next: peer(3),
    });
    let a = net.join(peer(1), Arc::new(Recorder::default()));
    let b = net.join(peer(2), Arc::clone(&relay) as Arc<dyn Handler>);
    *relay.transport.lock().unwrap() = Some(b);
    let end = Arc::new(Recorder::default());
    let _c = net.join(peer(3), Arc::clone(&end) as Arc<dyn Handler>);
    assert_eq!(ask(&a, 2, b"via", LONG).unwrap(), b"re:via");
    assert_eq!(
        end.seen(),
        vec![(peer(2), Protocol::PING, b"via".to_vec(), true)]
    );
}

#[test]
fn concurrent_callers_on_threads() {
    let (net, t, r) = network(14, 3);
    net.set_faults(Faults {
        latency_ms: (0, 2),
        ..Faults::NONE
    });
    let threads: Vec<_> = t
        .into_iter()
        .enumerate()
        .map(|(i, transport)| {
            std::thread::spawn(move || {
                let to = (i as u8 + 1) % 3 + 1;
                (0..20u8).all(|k| ask(&transport, to, &[k], LONG) == Ok(vec![b'r', b'e', b':', k]))
            })
        })
        .collect();
    for thread in threads {
        assert!(thread.join().unwrap());
    }
    assert!(r.iter().all(|r| r.seen().len() == 20));
}
