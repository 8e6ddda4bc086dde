//! A thin async driver: runs a [`Replica`] over a [`Transport`].
//!
//! [`ConsensusHandler`] is the inbound side (register it for
//! [`crate::CONSENSUS_PROTOCOL`]): it decodes each frame with the bounded decoder
//! and queues it in a bounded inbox, one queue per peer served in turn
//! (limits and the policy when full: [`queue`]); malformed frames are dropped
//! there. [`ReplicaDriver::run`] takes queued inputs one at a time (at most
//! [`ROUND_INPUTS`] peer messages before it acts), keeps the replica's timers on a
//! [`Timer`], and after each round of inputs makes the outputs durable when
//! given a [`DurableLog`] ([`ReplicaDriver::with_log`]): decisions and the
//! voting record are written *before* any message is sent, any decision
//! handed on or any submission acknowledged (write-ahead). Then it sends the
//! outputs — each encoded as it is sent, at most [`SENDS_IN_FLIGHT`] at once,
//! so answers are not all held encoded together — and hands decisions to a
//! channel. If the store fails, the driver
//! stops without sending what it could not make durable
//! ([`ReplicaDriver::try_run`] says why). [`DriverHandle`] submits commands and stops
//! the driver. No runtime is assumed: `run` is a plain future.

pub mod queue;

use crate::message::{ConsensusMessage, Decision};
use crate::persist::DurableLog;
use crate::replica::{Outgoing, Outputs, Replica, Timer as ReplicaTimer};
use crate::{Command, ConsensusError};
use futures::channel::{mpsc, oneshot};
use futures::future::{select, Either};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use hologram_lattice::transport::{
    async_trait, Handler, HandlerError, Protocol, Service, Timer, Transport,
};
use hologram_lattice::NodeId;
pub use queue::InboxStats;
use queue::PeerQueues;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where the result of a submission goes.
type Reply = oneshot::Sender<Result<usize, ConsensusError>>;

/// The most peer messages the driver handles before it persists and sends
/// what they produced (then it takes the next ones).
pub const ROUND_INPUTS: usize = 64;

/// The most outgoing messages the driver has encoded and in flight at once
/// (a broadcast counts once).
pub const SENDS_IN_FLIGHT: usize = 32;

/// What a [`DriverHandle`] asks of the driver (local, not from peers).
enum Input {
    Submit(Vec<Command>, bool, Reply),
    Stop,
}

/// What woke the driver.
enum Wake {
    Control(Input),
    /// The handler queued peer messages.
    Peer,
}

/// The peer queues shared by the handlers and the driver.
type Shared = Arc<Mutex<PeerQueues>>;

fn lock(queues: &Shared) -> MutexGuard<'_, PeerQueues> {
    // A panic while holding the lock leaves the queues consistent (every
    // update completes before the next fallible step): keep using them.
    queues
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The inbound side of a replica: decodes frames and queues them.
#[derive(Clone)]
pub struct ConsensusHandler {
    queues: Shared,
    /// One sender for all clones: a bounded channel gives each sender its
    /// own slot, so clones made per message would let rings pile up.
    doorbell: Arc<Mutex<mpsc::Sender<()>>>,
}

#[async_trait]
impl Handler for ConsensusHandler {
    async fn request(&self, _: NodeId, _: Protocol, _: Vec<u8>) -> Result<Vec<u8>, HandlerError> {
        Err(HandlerError::Refused(
            "consensus replicas exchange one-way messages".into(),
        ))
    }

    async fn message(&self, from: NodeId, _: Protocol, payload: Vec<u8>) {
        if let Ok(message) = ConsensusMessage::decode(&payload) {
            if lock(&self.queues).push(from, message, payload.len()) {
                // A full doorbell is already ringing; a closed one means the
                // driver stopped and the message is moot.
                let mut doorbell = self.doorbell.lock().unwrap_or_else(|p| p.into_inner());
                let _ = doorbell.try_send(());
            }
        }
    }
}

impl Service for ConsensusHandler {
    fn protocol(&self) -> Protocol {
        crate::CONSENSUS_PROTOCOL
    }
}

/// The queues between a [`ConsensusHandler`] and its driver.
pub struct Inbox {
    queues: Shared,
    control: mpsc::UnboundedSender<Input>,
    wakes: BoxStream<'static, Wake>,
}

/// A handler and the inbox it fills: mount the handler on the node's
/// [`ProtocolMux`](hologram_lattice::transport::ProtocolMux), then give the
/// inbox to [`ReplicaDriver::new`].
pub fn inbox() -> (ConsensusHandler, Inbox) {
    let queues = Shared::default();
    let (doorbell, rings) = mpsc::channel(1);
    let (control, commands) = mpsc::unbounded();
    let wakes = futures::stream::select(commands.map(Wake::Control), rings.map(|()| Wake::Peer));
    (
        ConsensusHandler {
            queues: queues.clone(),
            doorbell: Arc::new(Mutex::new(doorbell)),
        },
        Inbox {
            queues,
            control,
            wakes: wakes.boxed(),
        },
    )
}

/// Submits commands to a running driver and stops it.
#[derive(Clone)]
pub struct DriverHandle {
    id: NodeId,
    inbox: mpsc::UnboundedSender<Input>,
    queues: Shared,
}

impl DriverHandle {
    /// Submits commands (see [`Replica::submit`]).
    pub async fn submit(
        &self,
        commands: Vec<Command>,
        gossip: bool,
    ) -> Result<usize, ConsensusError> {
        let (tx, rx) = oneshot::channel();
        self.inbox
            .unbounded_send(Input::Submit(commands, gossip, tx))
            .map_err(|_| ConsensusError::Stopped(self.id))?;
        rx.await.map_err(|_| ConsensusError::Stopped(self.id))?
    }

    /// How full the driver's inbox of peer messages is, and what it dropped
    /// (see [`queue`]).
    pub fn inbox_stats(&self) -> InboxStats {
        lock(&self.queues).stats()
    }

    /// Asks the driver to stop after the input it is handling.
    pub fn stop(&self) {
        let _ = self.inbox.unbounded_send(Input::Stop);
    }
}

/// Runs a replica over a transport.
pub struct ReplicaDriver {
    replica: Replica,
    transport: Arc<dyn Transport>,
    timer: Timer,
    queues: Shared,
    wakes: BoxStream<'static, Wake>,
    decisions: mpsc::UnboundedSender<Decision>,
    started: Instant,
    timers: BinaryHeap<Reverse<(u64, u64, TimerKey)>>,
    next_timer: u64,
    log: Option<DurableLog>,
    replies: Vec<(Reply, Result<usize, ConsensusError>)>,
}

/// A replica timer ordered by its sequence number only.
#[derive(Clone, Copy)]
struct TimerKey(ReplicaTimer);

impl PartialEq for TimerKey {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for TimerKey {}
impl PartialOrd for TimerKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerKey {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl ReplicaDriver {
    /// A driver for `replica` over `transport`, fed by `inbox` (whose
    /// handler the transport's node serves for [`crate::CONSENSUS_PROTOCOL`]).
    /// Returns it, a handle, and the stream of decisions (in height order).
    pub fn new(
        replica: Replica,
        transport: Arc<dyn Transport>,
        timer: Timer,
        inbox: Inbox,
    ) -> (Self, DriverHandle, mpsc::UnboundedReceiver<Decision>) {
        let (dtx, drx) = mpsc::unbounded();
        let handle = DriverHandle {
            id: replica.id(),
            inbox: inbox.control,
            queues: inbox.queues.clone(),
        };
        let driver = Self {
            replica,
            transport,
            timer,
            queues: inbox.queues,
            wakes: inbox.wakes,
            decisions: dtx,
            started: Instant::now(),
            timers: BinaryHeap::new(),
            next_timer: 0,
            log: None,
            replies: Vec::new(),
        };
        (driver, handle, drx)
    }

    /// Milliseconds since the driver was made: the replica's clock.
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Makes the replica's outputs durable in `log` before they are acted
    /// on. The replica should have been restored from the same log
    /// ([`Recovered::replica`](crate::Recovered::replica)).
    pub fn with_log(mut self, log: DurableLog) -> Self {
        self.log = Some(log);
        self
    }

    /// Runs until stopped (or every handle and handler is dropped, or the
    /// store fails: see [`try_run`](Self::try_run)).
    pub async fn run(self) -> Replica {
        self.try_run().await.0
    }

    /// Runs until stopped; also returns the store error that stopped it, if
    /// one did (nothing it failed to persist was sent).
    pub async fn try_run(mut self) -> (Replica, Result<(), ConsensusError>) {
        let result = self.drive().await;
        (self.replica, result)
    }

    async fn drive(&mut self) -> Result<(), ConsensusError> {
        let mut out = Outputs::default();
        self.replica.start(self.now(), &mut out);
        self.perform(&mut out).await?;
        loop {
            let now = self.now();
            while let Some(Reverse((at, _, _))) = self.timers.peek() {
                if *at > now {
                    break;
                }
                if let Some(Reverse((_, _, TimerKey(t)))) = self.timers.pop() {
                    self.replica.handle_timer(now, t, &mut out);
                }
            }
            self.perform(&mut out).await?;
            let wait = match self.timers.peek() {
                Some(Reverse((at, _, _))) => Duration::from_millis(at.saturating_sub(now)),
                None => Duration::from_secs(3600),
            };
            let woken = if lock(&self.queues).is_empty() {
                match select(self.wakes.next(), self.timer.sleep(wait)).await {
                    Either::Left((Some(wake), _)) => Some(wake),
                    Either::Left((None, _)) => return self.perform(&mut out).await,
                    Either::Right(_) => continue,
                }
            } else {
                None
            };
            let mut go_on = woken.is_none_or(|w| self.wake(w, &mut out));
            // Take what else is queued before sending (one round of sends):
            // every local request, and up to ROUND_INPUTS peer messages
            // taken from the peers in turn.
            while go_on {
                match self.wakes.next().now_or_never() {
                    Some(Some(wake)) => go_on = self.wake(wake, &mut out),
                    Some(None) | None => break,
                }
            }
            for _ in 0..ROUND_INPUTS {
                if !go_on {
                    break;
                }
                let next = lock(&self.queues).pop();
                let Some((from, m)) = next else { break };
                let now = self.now();
                self.replica.handle_message(now, from, m, &mut out);
            }
            self.perform(&mut out).await?;
            if !go_on {
                return Ok(());
            }
        }
    }

    /// Handles what woke the driver; false to stop.
    fn wake(&mut self, wake: Wake, out: &mut Outputs) -> bool {
        let now = self.now();
        match wake {
            Wake::Peer => {}
            Wake::Control(Input::Submit(commands, gossip, reply)) => {
                let result = self.replica.submit(now, commands, gossip, out);
                self.replies.push((reply, result));
            }
            Wake::Control(Input::Stop) => return false,
        }
        true
    }

    /// Persists (with a log), answers submissions, sets timers, hands
    /// decisions on, and sends messages (concurrently). On a store error
    /// nothing is sent or handed on.
    async fn perform(&mut self, out: &mut Outputs) -> Result<(), ConsensusError> {
        if let Some(log) = &mut self.log {
            log.persist(&out.decisions, self.replica.voting_record())
                .await?;
        }
        for (reply, result) in self.replies.drain(..) {
            let _ = reply.send(result);
        }
        let now = self.now();
        for (after, t) in out.timers.drain(..) {
            self.next_timer += 1;
            self.timers
                .push(Reverse((now + after, self.next_timer, TimerKey(t))));
        }
        for d in out.decisions.drain(..) {
            let _ = self.decisions.unbounded_send(d);
        }
        out.misbehaviour.clear();
        let me = self.replica.id();
        let mut batch: Vec<(Vec<NodeId>, ConsensusMessage)> = Vec::new();
        for m in out.messages.drain(..) {
            let (mut targets, message) = match m {
                Outgoing::Broadcast(m) => (self.replica.validators().validators().to_vec(), m),
                Outgoing::To(to, m) => (vec![to], m),
            };
            targets.retain(|t| *t != me);
            batch.push((targets, message));
        }
        // Each message is encoded when its sends start (at most
        // SENDS_IN_FLIGHT messages at once), not all up front.
        let transport = self.transport.clone();
        let sends = futures::stream::iter(batch.into_iter().map(move |(targets, message)| {
            let transport = transport.clone();
            async move {
                let Ok(bytes) = message.encode() else {
                    return;
                };
                let mut sends = Vec::with_capacity(targets.len());
                for to in targets {
                    sends.push(transport.send(to, crate::CONSENSUS_PROTOCOL, bytes.clone()));
                }
                // A send that fails is a lost message: resending repairs it.
                futures::future::join_all(sends).await;
            }
        }))
        .buffer_unordered(SENDS_IN_FLIGHT);
        sends.for_each(|()| async {}).await;
        Ok(())
    }
}
