//! A thin async driver: runs a [`Replica`] over a [`Transport`].
//!
//! [`ConsensusHandler`] is the inbound side (register it for
//! [`Protocol::CONSENSUS`]): it decodes each frame with the bounded decoder
//! and queues it; malformed frames are dropped there. [`ReplicaDriver::run`]
//! takes queued inputs one at a time, keeps the replica's timers on a
//! [`Timer`], and after each round of inputs makes the outputs durable when
//! given a [`DurableLog`] ([`ReplicaDriver::with_log`]): decisions and the
//! voting record are written *before* any message is sent, any decision
//! handed on or any submission acknowledged (write-ahead). Then it sends the
//! outputs and hands decisions to a channel. If the store fails, the driver
//! stops without sending what it could not make durable
//! ([`ReplicaDriver::try_run`] says why). [`DriverHandle`] submits commands and stops
//! the driver. No runtime is assumed: `run` is a plain future.

use crate::message::{ConsensusMessage, Decision};
use crate::persist::DurableLog;
use crate::replica::{Outgoing, Outputs, Replica, Timer as ReplicaTimer};
use crate::{Command, ConsensusError};
use futures::channel::{mpsc, oneshot};
use futures::future::{join_all, select, Either};
use futures::StreamExt;
use hologram_lattice::transport::{
    async_trait, Handler, HandlerError, Protocol, Service, Timer, Transport,
};
use hologram_lattice::NodeId;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the result of a submission goes.
type Reply = oneshot::Sender<Result<usize, ConsensusError>>;

/// What the driver's queue carries.
enum Input {
    Message(NodeId, ConsensusMessage),
    Submit(Vec<Command>, bool, Reply),
    Stop,
}

/// The inbound side of a replica: decodes frames and queues them.
#[derive(Clone)]
pub struct ConsensusHandler {
    inbox: mpsc::UnboundedSender<Input>,
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
            // A closed queue means the driver stopped: the frame is moot.
            let _ = self.inbox.unbounded_send(Input::Message(from, message));
        }
    }
}

impl Service for ConsensusHandler {
    fn protocol(&self) -> Protocol {
        Protocol::CONSENSUS
    }
}

/// The queue between a [`ConsensusHandler`] and its driver.
pub struct Inbox {
    sender: mpsc::UnboundedSender<Input>,
    receiver: mpsc::UnboundedReceiver<Input>,
}

/// A handler and the inbox it fills: mount the handler on the node's
/// [`ProtocolMux`](hologram_lattice::transport::ProtocolMux), then give the
/// inbox to [`ReplicaDriver::new`].
pub fn inbox() -> (ConsensusHandler, Inbox) {
    let (sender, receiver) = mpsc::unbounded();
    (
        ConsensusHandler {
            inbox: sender.clone(),
        },
        Inbox { sender, receiver },
    )
}

/// Submits commands to a running driver and stops it.
#[derive(Clone)]
pub struct DriverHandle {
    id: NodeId,
    inbox: mpsc::UnboundedSender<Input>,
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
    inbox: mpsc::UnboundedReceiver<Input>,
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
    /// handler the transport's node serves for [`Protocol::CONSENSUS`]).
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
            inbox: inbox.sender,
        };
        let driver = Self {
            replica,
            transport,
            timer,
            inbox: inbox.receiver,
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
            let input = match select(self.inbox.next(), self.timer.sleep(wait)).await {
                Either::Left((Some(input), _)) => input,
                Either::Left((None, _)) => return self.perform(&mut out).await,
                Either::Right(_) => continue,
            };
            let mut go_on = self.handle(input, &mut out);
            // Take what else is queued before sending: one round of sends.
            while go_on {
                match self.inbox.try_recv() {
                    Ok(input) => go_on = self.handle(input, &mut out),
                    Err(_) => break,
                }
            }
            self.perform(&mut out).await?;
            if !go_on {
                return Ok(());
            }
        }
    }

    fn handle(&mut self, input: Input, out: &mut Outputs) -> bool {
        let now = self.now();
        match input {
            Input::Message(from, m) => self.replica.handle_message(now, from, m, out),
            Input::Submit(commands, gossip, reply) => {
                let result = self.replica.submit(now, commands, gossip, out);
                self.replies.push((reply, result));
            }
            Input::Stop => return false,
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
        let mut sends = Vec::new();
        for m in out.messages.drain(..) {
            let (targets, message) = match m {
                Outgoing::Broadcast(m) => (self.replica.validators().validators().to_vec(), m),
                Outgoing::To(to, m) => (vec![to], m),
            };
            let Ok(bytes) = message.encode() else {
                continue;
            };
            for to in targets.into_iter().filter(|t| *t != me) {
                sends.push(self.transport.send(to, Protocol::CONSENSUS, bytes.clone()));
            }
        }
        // A send that fails is a lost message: resending repairs it.
        join_all(sends).await;
        Ok(())
    }
}
