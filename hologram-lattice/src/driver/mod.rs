//! One async driver for every protocol core.
//!
//! A protocol core is a [`Node`]: the one contract the [simulator](crate::sim)
//! runs, too. [`Driven`] adds what running it over a real network takes: its
//! [`Protocol`] tag and wire codec, its local inputs ([`Driven::Control`]),
//! a durability hook ([`Driven::persist`]) and a hook that hands results to
//! the application ([`Driven::settle`]). [`Driver`] runs any such core over
//! a [`Transport`]:
//!
//! - [`Inbound`] (from [`inbox`]) is the inbound side: it decodes each frame
//!   with the core's bounded decoder, drops malformed ones, and queues the
//!   rest in a bounded inbox, one queue per peer served in turn (limits and
//!   the policy when full: [below](#the-inbox-limits));
//! - [`Driver::run`] takes queued inputs (every local one, then at most
//!   [`ROUND_INPUTS`] peer messages) and due timers into the core, then
//!   ends the round: first [`Driven::persist`] (write-ahead: if it fails,
//!   the driver stops and nothing of the round is sent), then
//!   [`Driven::recall`] (reads from durable state the core asked for), then
//!   [`Driven::settle`], then the timers the core set, then its messages,
//!   each encoded as its sends start, at most [`SENDS_IN_FLIGHT`] at once.
//!   A round whose messages need no write-ahead ([`Driven::write_ahead`]
//!   false: the round signed nothing new) sends them while `persist`
//!   runs, so one durable write is on a message's path only where safety
//!   needs it; it still settles only after the write;
//! - [`Handle`] gives the core local inputs and stops the driver.
//!
//! Time is a [`Clock`] in [`Millis`], the simulator's unit; sleeping is the
//! runtime-free [`Timer`]. No runtime is assumed: `run` is a plain future.
//!
//! ## The inbox limits
//!
//! Each peer has its own queue; the driver takes one message from each peer
//! in turn, so a peer that floods waits behind its own messages, not in front
//! of the others'. Limits, and the policy when they are reached:
//!
//! - a peer's queue holds at most [`PEER_MESSAGES`] messages and
//!   [`PEER_BYTES`] bytes (as received): a message past either is **dropped**
//!   (the newest: a lost message, which the sender's resending repairs);
//! - the whole inbox holds at most [`TOTAL_MESSAGES`] messages and
//!   [`TOTAL_BYTES`] bytes: past either, new messages from any peer are
//!   dropped until the driver catches up.
//!
//! Drops are counted ([`Handle::inbox_stats`]).

mod inbox;
mod queue;

pub use inbox::{inbox, Handle, Inbound, Inbox, Stopped};
pub use queue::{InboxStats, PEER_BYTES, PEER_MESSAGES, TOTAL_BYTES, TOTAL_MESSAGES};

use crate::sim::{Action, Context, Millis, Node};
use crate::transport::{Protocol, Timer, Transport};
use crate::wire::Wire;
use crate::NodeId;
use futures::future::{join_all, select, Either};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use inbox::{lock, Input, Shared, Wake};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

/// The most peer messages a driver hands its core before it persists and
/// sends what they produced (then it takes the next ones).
pub const ROUND_INPUTS: usize = 64;

/// The most outgoing messages a driver has encoded and in flight at once
/// (a message to many peers counts once).
pub const SENDS_IN_FLIGHT: usize = 32;

/// A clock: milliseconds, as [`Context::now`] reads them.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// A clock of the milliseconds since `start` (monotonic).
pub fn since(start: Instant) -> Clock {
    Arc::new(move || u64::try_from(start.elapsed().as_millis()).unwrap_or(Millis::MAX))
}

/// A clock of the milliseconds since now on a [manual](Timer::manual)
/// `timer`'s virtual clock.
fn manual_clock(timer: Timer) -> Clock {
    let start = timer.elapsed();
    Arc::new(move || {
        let elapsed = timer.elapsed().saturating_sub(start);
        u64::try_from(elapsed.as_millis()).unwrap_or(Millis::MAX)
    })
}

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn unix_millis() -> Millis {
    u64::try_from(since_epoch().as_millis()).unwrap_or(Millis::MAX)
}

/// The wall clock's time since the Unix epoch (zero before it).
fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// A [`Node`] that a [`Driver`] can run over a [`Transport`].
///
/// Its messages travel in the one codec ([`Wire`]): a frame is decoded with
/// [`Wire::from_wire`] (a malformed one is dropped by the handler) and a
/// message that [`Wire::to_wire`] cannot encode is not sent.
pub trait Driven: Node<Message: Send + Wire, Timer: Send> + Send + 'static {
    /// The tag of the core's frames.
    const PROTOCOL: Protocol;
    /// A local input (a submission, with where its answer goes).
    type Control: Send + 'static;
    /// Why [`persist`](Self::persist) failed.
    type Error: Send;

    /// A local input arrived (from a [`Handle`]).
    fn on_control(
        &mut self,
        ctx: &mut Context<'_, Self::Message, Self::Timer>,
        control: Self::Control,
    );

    /// Makes durable what the round's inputs changed. Runs before anything
    /// of the round is settled, and before anything of it is sent when
    /// [`write_ahead`](Self::write_ahead) says so; an error stops the driver.
    fn persist(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }

    /// Whether some message of the round may be sent only once
    /// [`persist`](Self::persist) returned (write-ahead; the default, and
    /// what a core that signs must answer whenever the round signed
    /// something new). When false, the driver sends the round's messages
    /// while `persist` runs, and still settles only after it returned: the
    /// core says that nothing the round sends depends on the write (it
    /// re-sends what it signed before, relays, or answers from durable or
    /// certified state), so a crash that loses the write loses nothing a
    /// peer was told.
    fn write_ahead(&self) -> bool {
        true
    }

    /// After [`persist`](Self::persist): reads from durable state what the
    /// round's inputs asked for and hands it back to the core, which may send
    /// messages or set timers in `ctx` (for example decisions a peer asked
    /// for that the core no longer keeps in memory: durable already, they go
    /// out with the round's messages). An error stops the driver; nothing of
    /// the round is sent.
    fn recall(
        &mut self,
        ctx: &mut Context<'_, Self::Message, Self::Timer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// After [`recall`](Self::recall): hands the round's results to the
    /// application (answers to local inputs, decisions).
    fn settle(&mut self) {}
}

/// Runs a [`Driven`] core over a [`Transport`] (see the [module docs](self)).
pub struct Driver<N: Driven> {
    node: N,
    id: NodeId,
    transport: Arc<dyn Transport>,
    timer: Timer,
    clock: Clock,
    rng: ChaCha8Rng,
    queues: Shared<N::Message>,
    wakes: BoxStream<'static, Wake<N::Control>>,
    /// Due time, then order of setting, then the timer's slot in `pending`.
    due: BinaryHeap<Reverse<(Millis, u64)>>,
    pending: HashMap<u64, N::Timer>,
    next_timer: u64,
    actions: Vec<Action<N::Message, N::Timer>>,
    failures: Arc<AtomicU64>,
}

impl<N: Driven> Driver<N> {
    /// A driver for `node` over `transport`, fed by `inbox` (whose handler
    /// the transport's node serves), on a clock that starts now. Returns it
    /// and a handle.
    ///
    /// The clock is `timer`'s: real time, or a [manual](Timer::manual)
    /// timer's virtual time. The core's random draws are seeded from the
    /// node id and the time: the wall clock's, or on a manual timer its
    /// virtual time, so that a simulation on one replays exactly (and a
    /// restarted node still draws anew).
    pub fn new(
        node: N,
        transport: Arc<dyn Transport>,
        timer: Timer,
        inbox: Inbox<N>,
    ) -> (Self, Handle<N>) {
        let id = transport.local_id();
        let handle = inbox.handle();
        let mut seed = id.to_bytes();
        let salt = match timer.is_manual() {
            true => timer.elapsed(),
            false => since_epoch(),
        };
        seed[..16]
            .iter_mut()
            .zip(salt.as_nanos().to_le_bytes())
            .for_each(|(s, t)| *s ^= t);
        let clock = match timer.is_manual() {
            true => manual_clock(timer.clone()),
            false => since(Instant::now()),
        };
        let driver = Driver {
            node,
            id,
            transport,
            timer,
            clock,
            rng: ChaCha8Rng::from_seed(seed),
            queues: inbox.queues,
            wakes: inbox.wakes,
            due: BinaryHeap::new(),
            pending: HashMap::new(),
            next_timer: 0,
            actions: Vec::new(),
            failures: inbox.failures,
        };
        (driver, handle)
    }

    /// Reads time from `clock` instead.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The core.
    pub fn node(&self) -> &N {
        &self.node
    }

    /// The core, to configure it before it runs.
    pub fn node_mut(&mut self) -> &mut N {
        &mut self.node
    }

    /// Runs until stopped, every handle and handler is dropped, or
    /// [`Driven::persist`] fails; returns the core and that failure, if one
    /// stopped it (nothing it failed to persist was sent).
    ///
    /// Everything the core logs while it runs is inside a `driver` span
    /// naming the node and the protocol.
    pub async fn run(mut self) -> (N, Result<(), N::Error>) {
        let span = tracing::info_span!("driver", node = %self.id, protocol = N::PROTOCOL.label());
        let result = self.drive().instrument(span).await;
        (self.node, result)
    }

    async fn drive(&mut self) -> Result<(), N::Error> {
        self.step(|node, ctx| node.on_start(ctx));
        self.perform().await?;
        loop {
            let now = (self.clock)();
            while let Some(&Reverse((at, slot))) = self.due.peek() {
                if at > now {
                    break;
                }
                self.due.pop();
                if let Some(t) = self.pending.remove(&slot) {
                    self.step(|node, ctx| node.on_timer(ctx, t));
                }
            }
            self.perform().await?;
            let wait = match self.due.peek() {
                Some(Reverse((at, _))) => Duration::from_millis(at.saturating_sub(now)),
                None => Duration::from_secs(3600),
            };
            let woken = if lock(&self.queues).is_empty() {
                match select(self.wakes.next(), self.timer.sleep(wait)).await {
                    Either::Left((Some(wake), _)) => Some(wake),
                    Either::Left((None, _)) => return Ok(()),
                    Either::Right(_) => continue,
                }
            } else {
                None
            };
            let mut go_on = woken.is_none_or(|w| self.wake(w));
            // Take what else is queued before sending (one round of sends):
            // every local input, and up to ROUND_INPUTS peer messages taken
            // from the peers in turn.
            while go_on {
                match self.wakes.next().now_or_never() {
                    Some(Some(wake)) => go_on = self.wake(wake),
                    Some(None) | None => break,
                }
            }
            for _ in 0..ROUND_INPUTS {
                if !go_on {
                    break;
                }
                let next = lock(&self.queues).pop();
                let Some((from, m)) = next else { break };
                self.step(|node, ctx| node.on_message(ctx, from, m));
            }
            self.perform().await?;
            if !go_on {
                return Ok(());
            }
        }
    }

    /// Runs one input on the core, collecting what it does.
    fn step(&mut self, f: impl FnOnce(&mut N, &mut Context<'_, N::Message, N::Timer>)) {
        let now = (self.clock)();
        let mut ctx = Context::new(now, self.id, &mut self.rng, &mut self.actions);
        f(&mut self.node, &mut ctx);
    }

    /// Handles what woke the driver; false to stop.
    fn wake(&mut self, wake: Wake<N::Control>) -> bool {
        match wake {
            Wake::Peer => true,
            Wake::Local(Input::Control(c)) => {
                self.step(|node, ctx| node.on_control(ctx, c));
                true
            }
            Wake::Local(Input::Stop) => false,
        }
    }

    /// Ends a round: persists, recalls, settles, sets timers, then sends (each
    /// message encoded when its sends start). On a persist error nothing is
    /// settled, and nothing is sent unless the core said the round needs no
    /// write-ahead ([`Driven::write_ahead`]): then the round's messages go
    /// out while it persists.
    async fn perform(&mut self) -> Result<(), N::Error> {
        if self.node.write_ahead() {
            self.node.persist().await?;
        } else {
            let batch = self.take_actions();
            let sends = send_all::<N>(&self.transport, &self.failures, batch);
            let (persisted, ()) = futures::join!(self.node.persist(), sends);
            persisted?;
        }
        let mut ctx = Context::new((self.clock)(), self.id, &mut self.rng, &mut self.actions);
        self.node.recall(&mut ctx).await?;
        self.node.settle();
        let batch = self.take_actions();
        send_all::<N>(&self.transport, &self.failures, batch).await;
        Ok(())
    }

    /// Sets the timers the core set and returns the messages it sent, with
    /// their targets.
    fn take_actions(&mut self) -> Vec<(Vec<NodeId>, N::Message)> {
        let now = (self.clock)();
        let mut batch = Vec::new();
        for action in self.actions.drain(..) {
            match action {
                Action::Send(to, message) => batch.push((vec![to], message)),
                Action::SendAll(targets, message) => batch.push((targets, message)),
                Action::Timer(after, t) => {
                    self.next_timer += 1;
                    self.due
                        .push(Reverse((now.saturating_add(after), self.next_timer)));
                    self.pending.insert(self.next_timer, t);
                }
            }
        }
        batch
    }
}

/// Sends `batch` over `transport`, each message encoded when its sends
/// start, at most [`SENDS_IN_FLIGHT`] at once; failures are counted in
/// `failures` (a failed send is a lost message: the cores resend).
async fn send_all<N: Driven>(
    transport: &Arc<dyn Transport>,
    failures: &AtomicU64,
    batch: Vec<(Vec<NodeId>, N::Message)>,
) {
    if batch.is_empty() {
        return;
    }
    let sends = futures::stream::iter(batch.into_iter().map(|(targets, message)| async move {
        let Ok(bytes) = message.to_wire() else {
            return;
        };
        let sent = join_all(
            targets
                .into_iter()
                .map(|to| transport.send(to, N::PROTOCOL, bytes.clone())),
        )
        .await;
        let failed = sent.iter().filter(|r| r.is_err()).count() as u64;
        if failed > 0 {
            failures.fetch_add(failed, Ordering::Relaxed);
            ::metrics::counter!(
                "hologram_driver_send_failures_total",
                "protocol" => N::PROTOCOL.label()
            )
            .increment(failed);
        }
    }))
    .buffer_unordered(SENDS_IN_FLIGHT);
    sends.for_each(|()| async {}).await;
}

#[cfg(test)]
mod tests;
