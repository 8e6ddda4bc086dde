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

use hologram_lattice::transport::{async_trait, check_frame, Protocol, Transport, TransportError};
use hologram_lattice::NodeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Messages queued for one peer; more are dropped.
pub(crate) const PEER_QUEUE: usize = 4096;
/// After a send to a peer fails, its messages are dropped for this long.
pub(crate) const PEER_PAUSE: Duration = Duration::from_millis(200);

/// One peer's queue: the messages waiting to be sent, with their protocol.
type PeerQueue = mpsc::Sender<(Protocol, Vec<u8>)>;

/// A transport that queues one-way messages per peer; see the
/// [module docs](self).
#[derive(Clone)]
pub(crate) struct Queued {
    inner: Arc<dyn Transport>,
    queues: Arc<Mutex<HashMap<NodeId, PeerQueue>>>,
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
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues.retain(|peer, _| peers.contains(peer));
        for &peer in peers {
            if queues.contains_key(&peer) {
                continue;
            }
            let (queue, mut pending) = mpsc::channel::<(Protocol, Vec<u8>)>(PEER_QUEUE);
            let transport = Arc::clone(&self.inner);
            tokio::spawn(async move {
                let mut paused_until: Option<Instant> = None;
                while let Some((protocol, bytes)) = pending.recv().await {
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
    /// network might).
    async fn send(
        &self,
        to: NodeId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        check_frame(payload.len(), self.inner.max_frame())?;
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        let queue = queues.get(&to).ok_or(TransportError::Unreachable(to))?;
        let _ = queue.try_send((protocol, payload));
        Ok(())
    }
}
