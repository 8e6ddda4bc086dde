//! An in-process network with fault injection, usable from any executor.
//!
//! [`MemoryNetwork`] connects [`MemoryTransport`]s living in one process. It
//! injects the faults of [`Faults`] (loss, uniform latency and so reordering,
//! duplication, one flipped bit), partitions that heal, and crash–restart,
//! all changeable while the network runs. Every fault decision is drawn from
//! one seeded ChaCha RNG at the moment a frame is sent, so a given seed and
//! call order replays the same decisions (the interleaving of concurrent
//! callers is up to their executor).
//!
//! Nothing here spawns a task: the caller's future carries its frames. A
//! request's future waits out the latency on the network's [`Timer`], polls
//! the receiving [`Handler`] itself, then carries the response back (with its
//! own loss, latency and corruption), all within the call's timeout. A
//! message's future completes once every copy of it has been delivered or
//! dropped. Handlers may call their own transport (a relay): that nests
//! within the first caller's future. A handler that panics fails only the
//! request it was answering (with [`HandlerError::Failed`]); a message whose
//! handler panics is dropped.

use super::timer::Timer;
use super::{
    check_frame, Handler, HandlerError, Protocol, Transport, TransportError, DEFAULT_MAX_FRAME,
};
use crate::sim::Faults;
use crate::PeerId;
use async_trait::async_trait;
use futures::future::{join, pending, BoxFuture, FutureExt};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// An in-process network of [`MemoryTransport`]s with seeded fault injection.
///
/// A cheap handle: clones share the network. It starts without faults and
/// with zero latency; change that with [`set_faults`](Self::set_faults).
///
/// - **Loss**: a lost request times out; a lost response too (the handler
///   ran, the caller never hears).
/// - **Partitions** ([`partition`](Self::partition)): frames between groups are
///   dropped, so requests across time out; [`heal`](Self::heal) ends it.
/// - **Crash** ([`crash`](Self::crash)): the node's transport fails every call
///   with [`TransportError::Closed`], its handler is no longer called, frames
///   in flight to it are dropped, new requests to it fail at once with
///   [`TransportError::Unreachable`] (a refused connection) and messages to
///   it are dropped. [`restart`](Self::restart) brings it back with a fresh
///   transport; the old one stays closed.
/// - A peer that never joined is [`TransportError::Unreachable`].
///
/// ```
/// use async_trait::async_trait;
/// use hologram_lattice::transport::{Handler, HandlerError, MemoryNetwork, Protocol, Transport};
/// use hologram_lattice::PeerId;
/// use std::{sync::Arc, time::Duration};
///
/// struct Echo;
/// #[async_trait]
/// impl Handler for Echo {
///     async fn request(&self, _: PeerId, _: Protocol, p: Vec<u8>) -> Result<Vec<u8>, HandlerError> {
///         Ok(p)
///     }
///     async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {}
/// }
///
/// let net = MemoryNetwork::new(7);
/// let (a, b) = (PeerId::from_bytes([1; 32]), PeerId::from_bytes([2; 32]));
/// let ta = net.join(a, Arc::new(Echo));
/// let _tb = net.join(b, Arc::new(Echo));
/// let answer = futures::executor::block_on(
///     ta.request(b, Protocol::PING, b"hi".to_vec(), Duration::from_secs(1)),
/// );
/// assert_eq!(answer.unwrap(), b"hi");
/// ```
#[derive(Clone)]
pub struct MemoryNetwork {
    shared: Arc<Shared>,
}

/// The network's state, its random draws and its clock.
///
/// Frames only read the state (under a read lock, so concurrent senders do
/// not queue behind one another); joins, crashes, partitions and fault
/// settings write it. The draws of fault decisions take the generator's
/// own lock, and only when some fault is set.
struct Shared {
    state: RwLock<State>,
    rng: Mutex<ChaCha8Rng>,
    timer: Timer,
}

/// Everything a fault decision reads.
struct State {
    faults: Faults,
    max_frame: usize,
    nodes: BTreeMap<PeerId, Slot>,
    /// Each listed peer's partition group; unlisted peers share one more group.
    groups: BTreeMap<PeerId, usize>,
}

/// A node of the network: its handler while it is up, and which life it is in.
struct Slot {
    handler: Option<Arc<dyn Handler>>,
    /// Bumped by every join, crash and restart: transports and frames of an
    /// earlier life are stale.
    incarnation: u64,
}

/// One copy of a frame on its way.
#[derive(Debug, Clone, Copy)]
struct Flight {
    latency: Duration,
    /// The payload bit to flip, if the copy is corrupted.
    flip: Option<usize>,
}

impl Flight {
    /// Flips this copy's corrupted bit, if any.
    fn corrupt(&self, payload: &mut [u8]) {
        if let Some(bit) = self.flip {
            if let Some(byte) = payload.get_mut(bit / 8) {
                *byte ^= 1 << (bit % 8);
            }
        }
    }
}

/// Where a frame goes, decided when it is sent.
enum Hop {
    /// The receiver is crashed.
    Down,
    /// The receiver's life, and the copies on their way: none if the frame
    /// was lost or crosses a partition, two if it was duplicated.
    Go {
        incarnation: u64,
        flights: [Option<Flight>; 2],
    },
}

// Every critical section leaves the state consistent, so a panic in
// another caller cannot have broken it: poisoning is ignored.
fn read(state: &RwLock<State>) -> RwLockReadGuard<'_, State> {
    state.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(state: &RwLock<State>) -> RwLockWriteGuard<'_, State> {
    state.write().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryNetwork {
    /// An empty network whose fault decisions follow `seed`.
    pub fn new(seed: u64) -> MemoryNetwork {
        Self::with_timer(seed, Timer::new())
    }

    /// An empty network whose fault decisions follow `seed` and whose
    /// latencies and timeouts run on `timer`: a [manual](Timer::manual) one
    /// for a deterministic simulation (see
    /// [`sim::Executor`](crate::sim::Executor)), where the frames a seed
    /// drops, delays and times out are the same on every run.
    pub fn with_timer(seed: u64, timer: Timer) -> MemoryNetwork {
        MemoryNetwork {
            shared: Arc::new(Shared {
                rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
                state: RwLock::new(State {
                    faults: Faults {
                        latency_ms: (0, 0),
                        ..Faults::NONE
                    },
                    max_frame: DEFAULT_MAX_FRAME,
                    nodes: BTreeMap::new(),
                    groups: BTreeMap::new(),
                }),
                timer,
            }),
        }
    }

    /// Adds node `id` served by `handler` and returns its transport. Joining
    /// an id again starts a new life of that node: transports of the earlier
    /// one are closed.
    pub fn join(&self, id: PeerId, handler: Arc<dyn Handler>) -> MemoryTransport {
        let mut state = write(&self.shared.state);
        let slot = state.nodes.entry(id).or_insert(Slot {
            handler: None,
            incarnation: 0,
        });
        slot.incarnation += 1;
        slot.handler = Some(handler);
        MemoryTransport {
            id,
            incarnation: slot.incarnation,
            network: self.clone(),
        }
    }

    /// Crashes node `id`: see the type's documentation. Returns whether it
    /// was up.
    pub fn crash(&self, id: PeerId) -> bool {
        let mut state = write(&self.shared.state);
        match state.nodes.get_mut(&id) {
            Some(slot) if slot.handler.is_some() => {
                slot.handler = None;
                slot.incarnation += 1;
                true
            }
            _ => false,
        }
    }

    /// Brings node `id` back (or for the first time) with `handler`, as a
    /// process that restarts with what it made durable: the returned
    /// transport is its only live one.
    pub fn restart(&self, id: PeerId, handler: Arc<dyn Handler>) -> MemoryTransport {
        self.join(id, handler)
    }

    /// Whether node `id` has joined and is not crashed.
    pub fn is_up(&self, id: PeerId) -> bool {
        read(&self.shared.state)
            .nodes
            .get(&id)
            .is_some_and(|slot| slot.handler.is_some())
    }

    /// Cuts the network into `groups`: frames pass only within a group.
    /// Peers not listed form one more group together. Replaces any earlier
    /// partition.
    pub fn partition(&self, groups: &[&[PeerId]]) {
        let mut state = write(&self.shared.state);
        state.groups = groups
            .iter()
            .enumerate()
            .flat_map(|(group, peers)| peers.iter().map(move |&peer| (peer, group)))
            .collect();
    }

    /// Ends any partition.
    pub fn heal(&self) {
        write(&self.shared.state).groups.clear();
    }

    /// Sets the faults applied to frames sent from now on. Rates are clamped
    /// into `0.0..=1.0`; latency is in milliseconds of the network's
    /// [`timer`](Self::timer) (real ones unless it is manual).
    pub fn set_faults(&self, faults: Faults) {
        write(&self.shared.state).faults = faults.normalized();
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        read(&self.shared.state).faults.clone()
    }

    /// Sets the largest payload (request, response or message) of every
    /// transport of this network; the default is [`DEFAULT_MAX_FRAME`].
    pub fn set_max_frame(&self, max: usize) {
        write(&self.shared.state).max_frame = max;
    }

    /// The clock of this network's latencies and timeouts.
    pub fn timer(&self) -> &Timer {
        &self.shared.timer
    }

    /// Decides the fate of a `len`-byte frame from `from` (in its life
    /// `life`) to `to`.
    fn route(
        &self,
        from: PeerId,
        life: u64,
        to: PeerId,
        len: usize,
        duplicable: bool,
    ) -> Result<Hop, TransportError> {
        let state = read(&self.shared.state);
        let sender_up = state
            .nodes
            .get(&from)
            .is_some_and(|slot| slot.incarnation == life && slot.handler.is_some());
        if !sender_up {
            return Err(TransportError::Closed);
        }
        check_frame(len, state.max_frame)?;
        let incarnation = match state.nodes.get(&to) {
            None => return Err(TransportError::Unreachable(to)),
            Some(slot) if slot.handler.is_none() => return Ok(Hop::Down),
            Some(slot) => slot.incarnation,
        };
        let group = |peer| state.groups.get(&peer).copied().unwrap_or(usize::MAX);
        if group(from) != group(to) {
            return Ok(Hop::Go {
                incarnation,
                flights: [None, None],
            });
        }
        let faults = &state.faults;
        let (lo, hi) = faults.latency_ms;
        let calm =
            faults.loss == 0.0 && faults.duplicate == 0.0 && faults.corrupt == 0.0 && lo >= hi;
        if calm {
            // Nothing to draw: one copy, on time.
            return Ok(Hop::Go {
                incarnation,
                flights: [
                    Some(Flight {
                        latency: Duration::from_millis(lo),
                        flip: None,
                    }),
                    None,
                ],
            });
        }
        let mut rng = self
            .shared
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let rng = &mut *rng;
        let lost = faults.loss > 0.0 && rng.random_bool(faults.loss);
        let flights = if lost {
            [None, None]
        } else {
            let first = draw_flight(rng, faults, len);
            let twice = duplicable && faults.duplicate > 0.0 && rng.random_bool(faults.duplicate);
            [Some(first), twice.then(|| draw_flight(rng, faults, len))]
        };
        Ok(Hop::Go {
            incarnation,
            flights,
        })
    }

    /// Waits out `flight`'s latency; then the handler of `to` if it is still
    /// in life `incarnation` (else the frame is dropped: `None`).
    async fn arrive(
        &self,
        flight: Flight,
        to: PeerId,
        incarnation: u64,
    ) -> Option<Arc<dyn Handler>> {
        if !flight.latency.is_zero() {
            self.shared.timer.sleep(flight.latency).await;
        }
        read(&self.shared.state)
            .nodes
            .get(&to)
            .filter(|slot| slot.incarnation == incarnation)
            .and_then(|slot| slot.handler.clone())
    }

    /// Corrupts a copy as decided, then [`arrive`](Self::arrive)s with it.
    async fn land(
        &self,
        (flight, mut payload): (Flight, Vec<u8>),
        to: PeerId,
        incarnation: u64,
    ) -> Option<(Arc<dyn Handler>, Vec<u8>)> {
        flight.corrupt(&mut payload);
        let handler = self.arrive(flight, to, incarnation).await?;
        Some((handler, payload))
    }
}

/// Draws one copy's latency and corruption.
fn draw_flight(rng: &mut ChaCha8Rng, faults: &Faults, len: usize) -> Flight {
    let (lo, hi) = faults.latency_ms;
    let ms = if lo < hi {
        rng.random_range(lo..=hi)
    } else {
        lo
    };
    let corrupt = len > 0 && faults.corrupt > 0.0 && rng.random_bool(faults.corrupt);
    Flight {
        latency: Duration::from_millis(ms),
        flip: corrupt.then(|| rng.random_range(0..len.saturating_mul(8))),
    }
}

/// Runs a handler's answer, turning a panic into a failure: the panic stays
/// in the handler, as it would on another host.
async fn isolated(
    answer: impl Future<Output = Result<Vec<u8>, HandlerError>>,
) -> Result<Vec<u8>, HandlerError> {
    AssertUnwindSafe(answer)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(HandlerError::Failed("the handler panicked".into())))
}

/// Gives each flight its copy of `payload` (cloned only if there are two).
fn copies(flights: [Option<Flight>; 2], payload: Vec<u8>) -> [Option<(Flight, Vec<u8>)>; 2] {
    let [first, second] = flights;
    let second = second.map(|flight| (flight, payload.clone()));
    [first.map(|flight| (flight, payload)), second]
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = read(&self.shared.state);
        f.debug_struct("MemoryNetwork")
            .field("nodes", &state.nodes.len())
            .field("faults", &state.faults)
            .field("max_frame", &state.max_frame)
            .field("partitioned", &!state.groups.is_empty())
            .finish()
    }
}

/// A node's [`Transport`] on a [`MemoryNetwork`]; see [`MemoryNetwork::join`].
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    id: PeerId,
    incarnation: u64,
    network: MemoryNetwork,
}

impl MemoryTransport {
    /// The network this transport belongs to.
    pub fn network(&self) -> &MemoryNetwork {
        &self.network
    }

    /// Carries one copy of a request to `to`, calls its handler, and carries
    /// the answer back. A frame dropped on the way never completes: the
    /// caller's timeout ends the wait.
    async fn exchange(
        &self,
        copy: (Flight, Vec<u8>),
        to: PeerId,
        incarnation: u64,
        protocol: Protocol,
    ) -> Result<Vec<u8>, TransportError> {
        let Some((handler, payload)) = self.network.land(copy, to, incarnation).await else {
            return pending().await;
        };
        let answer = isolated(handler.request(self.id, protocol, payload)).await;
        let len = answer.as_ref().map_or(0, Vec::len);
        let back = match self.network.route(to, incarnation, self.id, len, false) {
            // The responder crashed while answering: the answer is lost.
            Err(TransportError::Closed) => return pending().await,
            Err(refused) => return Err(refused),
            Ok(Hop::Down) => return Err(TransportError::Closed),
            Ok(Hop::Go {
                flights: [back, _], ..
            }) => back,
        };
        let Some(back) = back else {
            return pending().await;
        };
        if self
            .network
            .arrive(back, self.id, self.incarnation)
            .await
            .is_none()
        {
            return Err(TransportError::Closed);
        }
        let mut answer = answer.map_err(TransportError::from)?;
        back.corrupt(&mut answer);
        Ok(answer)
    }

    /// Delivers one copy of a message, or of a duplicated request whose
    /// answer goes nowhere (the requester has, or will time out on, the
    /// first copy's), unless it is dropped on the way.
    async fn deliver(
        &self,
        copy: Option<(Flight, Vec<u8>)>,
        to: PeerId,
        incarnation: u64,
        protocol: Protocol,
        as_request: bool,
    ) {
        let Some(copy) = copy else {
            return;
        };
        let Some((handler, payload)) = self.network.land(copy, to, incarnation).await else {
            return;
        };
        if as_request {
            let _ = isolated(handler.request(self.id, protocol, payload)).await;
        } else {
            let _ = AssertUnwindSafe(handler.message(self.id, protocol, payload))
                .catch_unwind()
                .await;
        }
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    fn local_id(&self) -> PeerId {
        self.id
    }

    fn max_frame(&self) -> usize {
        read(&self.network.shared.state).max_frame
    }

    async fn request(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let (incarnation, flights) =
            match self
                .network
                .route(self.id, self.incarnation, to, payload.len(), true)?
            {
                Hop::Down => return Err(TransportError::Unreachable(to)),
                Hop::Go {
                    incarnation,
                    flights,
                } => (incarnation, flights),
            };
        let [first, second] = copies(flights, payload);
        let primary = async {
            match first {
                Some(copy) => self.exchange(copy, to, incarnation, protocol).await,
                None => pending().await,
            }
        };
        let timer = &self.network.shared.timer;
        let deadline = timer.deadline_after(timeout);
        let primary = timer.timeout_at(deadline, primary);
        let answer = if second.is_some() {
            // The duplicate rides along, within the same deadline. Boxed: a
            // duplicate is rare, and inline it would double the size of
            // every request's future (moved to the heap on each call).
            let duplicate: BoxFuture<'_, ()> =
                Box::pin(self.deliver(second, to, incarnation, protocol, true));
            join(primary, timer.timeout_at(deadline, duplicate)).await.0
        } else {
            primary.await
        };
        answer.unwrap_or(Err(TransportError::TimedOut { peer: to, timeout }))
    }

    async fn send(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        let hop = self
            .network
            .route(self.id, self.incarnation, to, payload.len(), true)?;
        if let Hop::Go {
            incarnation,
            flights,
        } = hop
        {
            let [first, second] = copies(flights, payload);
            join(
                self.deliver(first, to, incarnation, protocol, false),
                self.deliver(second, to, incarnation, protocol, false),
            )
            .await;
        }
        Ok(())
    }
}
