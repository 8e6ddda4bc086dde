//! A [`Transport`] whose one-way messages never wait for a peer.
//!
//! The consensus driver sends a step's messages and waits for the sends
//! before it takes the next input. A send to a peer that is down waits for
//! the connection attempt (up to the transport's connect timeout when the
//! host does not answer), and the whole node would stall with it.
//! [`Queued`] gives each peer its own queue and task: `send` only queues
//! (dropping the message if the queue is full, as a lossy network would; the
//! replica resends what matters), and after a failed send the peer's
//! messages are dropped for [`PEER_PAUSE`], so a dead peer costs one failed
//! connection attempt per pause rather than one per message. Requests go
//! straight to the inner transport.
//!
//! A message identical to one still waiting in the peer's queue is not
//! queued again: the waiting copy has not been lost, so the copy would only
//! be sent twice. The replica resends its votes and proposals of the last
//! rounds of every height in flight on a short timer; when a peer's link is
//! slower than that (a loaded host: each message is a QUIC stream), the
//! resends of the same messages used to pile up in the queue, thousands
//! deep, and every new message, such as a round's proposal, waited seconds
//! behind them, after the other validators' propose timeouts: no round
//! could decide (#17, seed 46). With the duplicates dropped, the queue holds
//! at most the distinct messages waiting, and a new one waits behind those
//! only.

use hologram_lattice::transport::{async_trait, check_frame, Protocol, Transport, TransportError};
use hologram_lattice::{Address, NodeId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Messages queued for one peer; more are dropped.
pub(crate) const PEER_QUEUE: usize = 4096;
/// After a send to a peer fails, its messages are dropped for this long.
pub(crate) const PEER_PAUSE: Duration = Duration::from_millis(200);

/// A message's identity in a queue: its protocol and the digest of its bytes.
type Digest = (Protocol, Address);

/// The messages waiting for one peer, in order, and their digests.
#[derive(Default)]
struct Waiting {
    messages: VecDeque<(Digest, Vec<u8>)>,
    digests: HashSet<Digest>,
    /// The peer left the roster: its task ends once the queue is empty.
    closed: bool,
}

/// What became of a message offered to a peer's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queuing {
    Queued,
    /// The same message is waiting already.
    Duplicate,
    /// The queue holds [`PEER_QUEUE`] messages.
    Full,
}

/// One peer's queue, shared by the senders and the peer's task.
#[derive(Default)]
struct PeerQueue {
    waiting: Mutex<Waiting>,
    ready: Notify,
}

impl PeerQueue {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Every update completes before the lock is released.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `bytes` unless the same message is waiting or the queue is full.
    fn offer(&self, protocol: Protocol, bytes: Vec<u8>) -> Queuing {
        let digest = (protocol, Address::of(&bytes));
        let mut waiting = self.lock();
        if waiting.digests.contains(&digest) {
            return Queuing::Duplicate;
        }
        if waiting.messages.len() >= PEER_QUEUE {
            return Queuing::Full;
        }
        waiting.digests.insert(digest);
        waiting.messages.push_back((digest, bytes));
        drop(waiting);
        self.ready.notify_one();
        Queuing::Queued
    }

    /// The oldest message waiting; `None` once the queue is empty and closed.
    async fn next(&self) -> Option<(Protocol, Vec<u8>)> {
        loop {
            // Registered before the queue is looked at: a message queued
            // in between wakes it (a permit is stored if nobody waits).
            let ready = self.ready.notified();
            {
                let mut waiting = self.lock();
                if let Some((digest, bytes)) = waiting.messages.pop_front() {
                    waiting.digests.remove(&digest);
                    return Some((digest.0, bytes));
                }
                if waiting.closed {
                    return None;
                }
            }
            ready.await;
        }
    }

    /// Ends the peer's task once what is queued is sent.
    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }
}

/// A transport that queues one-way messages per peer; see the
/// [module docs](self).
#[derive(Clone)]
pub(crate) struct Queued {
    inner: Arc<dyn Transport>,
    queues: Arc<Queues>,
}

/// The peers' queues; when the last [`Queued`] goes, every peer's task ends
/// once it sent what was queued.
#[derive(Default)]
struct Queues(Mutex<HashMap<NodeId, Arc<PeerQueue>>>);

impl Queues {
    fn lock(&self) -> MutexGuard<'_, HashMap<NodeId, Arc<PeerQueue>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        for queue in self.lock().values() {
            queue.close();
        }
    }
}

impl Queued {
    /// Queues for `peers` in front of `inner`; one task per peer (within a
    /// tokio runtime). Messages to other nodes are refused as unreachable.
    pub(crate) fn new(inner: Arc<dyn Transport>, peers: &[NodeId]) -> Self {
        let queued = Self {
            inner,
            queues: Arc::default(),
        };
        queued.set_peers(peers);
        queued
    }

    /// Keeps queues for `peers` only: a new peer gets one (and its task), a
    /// peer no longer given loses its own (its task ends once it sent what
    /// was queued).
    pub(crate) fn set_peers(&self, peers: &[NodeId]) {
        let mut queues = self.queues.lock();
        queues.retain(|peer, queue| {
            let keep = peers.contains(peer);
            if !keep {
                queue.close();
            }
            keep
        });
        for &peer in peers {
            if queues.contains_key(&peer) {
                continue;
            }
            let queue = Arc::new(PeerQueue::default());
            let pending = Arc::clone(&queue);
            let transport = Arc::clone(&self.inner);
            tokio::spawn(async move {
                let mut paused_until: Option<Instant> = None;
                while let Some((protocol, bytes)) = pending.next().await {
                    if paused_until.is_some_and(|until| Instant::now() < until) {
                        continue;
                    }
                    paused_until = transport
                        .send(peer, protocol, bytes)
                        .await
                        .err()
                        .map(|_| Instant::now() + PEER_PAUSE);
                }
            });
            queues.insert(peer, queue);
        }
    }
}

#[async_trait]
impl Transport for Queued {
    fn local_id(&self) -> NodeId {
        self.inner.local_id()
    }

    fn max_frame(&self) -> usize {
        self.inner.max_frame()
    }

    async fn request(
        &self,
        to: NodeId,
        protocol: Protocol,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        self.inner.request(to, protocol, payload, timeout).await
    }

    /// Queues the message; `Ok` means queued (a full queue drops it, as the
    /// network might), or the same message is waiting already.
    async fn send(
        &self,
        to: NodeId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        check_frame(payload.len(), self.inner.max_frame())?;
        let queue = {
            let queues = self.queues.lock();
            Arc::clone(queues.get(&to).ok_or(TransportError::Unreachable(to))?)
        };
        match queue.offer(protocol, payload) {
            Queuing::Queued => {}
            Queuing::Duplicate => {
                ::metrics::counter!("hologram_node_send_queue_skipped_total", "reason" => "duplicate")
                    .increment(1)
            }
            Queuing::Full => {
                ::metrics::counter!("hologram_node_send_queue_skipped_total", "reason" => "full")
                    .increment(1)
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link that takes `per_message` to send each message, and records
    /// what it sent and when.
    struct SlowLink {
        me: NodeId,
        per_message: Duration,
        sent: Mutex<Vec<(Vec<u8>, tokio::time::Instant)>>,
    }

    #[async_trait]
    impl Transport for SlowLink {
        fn local_id(&self) -> NodeId {
            self.me
        }

        fn max_frame(&self) -> usize {
            1 << 20
        }

        async fn request(
            &self,
            to: NodeId,
            _: Protocol,
            _: Vec<u8>,
            _: Duration,
        ) -> Result<Vec<u8>, TransportError> {
            Err(TransportError::Unreachable(to))
        }

        async fn send(
            &self,
            _: NodeId,
            _: Protocol,
            payload: Vec<u8>,
        ) -> Result<(), TransportError> {
            tokio::time::sleep(self.per_message).await;
            let now = tokio::time::Instant::now();
            self.sent.lock().unwrap().push((payload, now));
            Ok(())
        }
    }

    /// The replica's resending, faster than the peer's link takes
    /// messages: the same 20 messages offered every 10 ms for 1 s, on a
    /// link that sends one in 5 ms. A new message then waits behind at most
    /// the 20 distinct ones (before the fix, behind a queue of their copies
    /// growing by about 18 every 10 ms: the new message waited seconds, and
    /// once the queue was full it was dropped).
    #[tokio::test]
    async fn resends_do_not_pile_up_in_front_of_a_new_message() {
        let peer = NodeId::from_bytes([2; 32]);
        let link = Arc::new(SlowLink {
            me: NodeId::from_bytes([1; 32]),
            per_message: Duration::from_millis(5),
            sent: Mutex::default(),
        });
        let queued = Queued::new(link.clone(), &[peer]);
        let resent: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 100]).collect();
        for _ in 0..100 {
            for m in &resent {
                queued.send(peer, Protocol(7), m.clone()).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let fresh = vec![0xff; 100];
        let before = link.sent.lock().unwrap().len();
        let offered = tokio::time::Instant::now();
        queued.send(peer, Protocol(7), fresh.clone()).await.unwrap();
        let position = loop {
            let found = (link.sent.lock().unwrap().iter()).position(|(m, _)| *m == fresh);
            if let Some(position) = found {
                break position;
            }
            assert!(
                offered.elapsed() < Duration::from_secs(60),
                "the new message was never sent"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        // At most the one being sent and the 20 waiting went first.
        let ahead = position - before;
        assert!(ahead <= 21, "{ahead} messages went before the new one");
        // Every message went out, again and again (a copy is dropped only
        // while the same one waits).
        let sent = link.sent.lock().unwrap();
        for m in &resent {
            assert!(sent.iter().filter(|(s, _)| s == m).count() >= 2);
        }
    }
}
