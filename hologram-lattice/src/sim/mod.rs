//! A deterministic simulator for protocol cores.
//!
//! Protocol cores (consensus, broadcast, transactions, discovery) are plain
//! state machines: they implement [`Node`] and react to messages and timers
//! through a [`Context`] that collects what they send and which timers they
//! set. [`Simulation`] runs many of them over a simulated network with a
//! seeded RNG and a virtual clock: one event at a time, the earliest first,
//! so a run is a pure function of its seed. The network applies [`Faults`]
//! (loss, latency and reordering, duplication, bit corruption), partitions
//! that heal, and crash–restart (a restarted node keeps only what
//! [`Recover::recover`] keeps: what it had made durable). [`Node`] is also
//! what the one async [`driver`](crate::driver) runs over a real network. An invariant hook runs
//! after every step; a violation is an error that names the seed.
//!
//! Async code that a simulation drives (a client over a transport, a
//! [`Driver`](crate::driver::Driver)) runs on an [`Executor`]: one thread
//! and a virtual clock, so that it replays exactly too.
//!
//! [`check_seeds`] runs a test over many seeds (`HOLOGRAM_SEEDS`, small by
//! default, large for soak runs), prints the failing seed, and
//! `HOLOGRAM_SEED=<seed>` replays exactly that one.
//!
//! ```
//! use hologram_lattice::sim::{Context, Faults, Node, Recover, Simulation};
//! use hologram_lattice::NodeId;
//!
//! /// Counts pings and answers each with a pong.
//! #[derive(Clone, Default)]
//! struct Echo { pongs: u32 }
//!
//! impl Node for Echo {
//!     type Message = bool; // true = ping, false = pong
//!     type Timer = ();
//!     fn on_message(&mut self, ctx: &mut Context<'_, bool, ()>, from: NodeId, ping: bool) {
//!         if ping { ctx.send(from, false) } else { self.pongs += 1 }
//!     }
//!     fn on_timer(&mut self, _: &mut Context<'_, bool, ()>, _: ()) {}
//! }
//!
//! impl Recover for Echo {
//!     fn recover(&self) -> Self { Echo::default() }
//! }
//!
//! let (a, b) = (NodeId::from_bytes([1; 32]), NodeId::from_bytes([2; 32]));
//! let mut sim = Simulation::new(7, Faults::NONE, [(a, Echo::default()), (b, Echo::default())]);
//! sim.with_node(a, |_, ctx| ctx.send(b, true));
//! sim.run_until_quiet(1_000).unwrap();
//! assert_eq!(sim.node(a).unwrap().pongs, 1);
//! ```

mod executor;
mod faults;
mod seeds;

pub use executor::{Executor, POLLS_PER_RUN};
pub use faults::Faults;
pub use seeds::{check_seeds, seeds, SEEDS_VAR, SEED_VAR};

use crate::{LatticeError, NodeId};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{de::DeserializeOwned, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt::Debug;

/// Virtual time, in milliseconds since the simulation started.
pub type Millis = u64;

/// A protocol core: the one contract the simulator and the
/// [`driver`](crate::driver) run.
///
/// A node never sleeps, spawns, reads a clock or touches a network: it reacts
/// to one input at a time and says what to do through its [`Context`].
pub trait Node {
    /// What nodes send each other. Corruption flips bits of its postcard
    /// encoding, so it must round-trip through serde.
    type Message: Clone + Debug + Serialize + DeserializeOwned;
    /// What a node's timers carry back to it.
    type Timer: Clone + Debug;

    /// Called when the simulation starts and after every restart.
    fn on_start(&mut self, ctx: &mut Context<'_, Self::Message, Self::Timer>) {
        let _ = ctx;
    }

    /// A message arrived from `from`.
    fn on_message(
        &mut self,
        ctx: &mut Context<'_, Self::Message, Self::Timer>,
        from: NodeId,
        message: Self::Message,
    );

    /// A timer set with [`Context::set_timer`] expired.
    fn on_timer(&mut self, ctx: &mut Context<'_, Self::Message, Self::Timer>, timer: Self::Timer);
}

/// A node the simulator can crash and restart ([`Simulation::restart`]).
pub trait Recover {
    /// The node a restart after a crash brings back: only what it had made
    /// durable (its store), none of its volatile state.
    fn recover(&self) -> Self
    where
        Self: Sized;
}

/// What a node may do while it handles an input: read the clock and the RNG,
/// send messages, set timers.
pub struct Context<'a, M, T> {
    now: Millis,
    me: NodeId,
    rng: &'a mut ChaCha8Rng,
    actions: &'a mut Vec<Action<M, T>>,
}

/// What a node asked for while it handled an input.
pub(crate) enum Action<M, T> {
    Send(NodeId, M),
    SendAll(Vec<NodeId>, M),
    Timer(Millis, T),
}

impl<'a, M, T> Context<'a, M, T> {
    /// A context for one input of node `me` at `now`.
    pub(crate) fn new(
        now: Millis,
        me: NodeId,
        rng: &'a mut ChaCha8Rng,
        actions: &'a mut Vec<Action<M, T>>,
    ) -> Self {
        Context {
            now,
            me,
            rng,
            actions,
        }
    }

    /// The virtual time now.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The id of the node being run.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The simulation's seeded RNG (use it instead of any other randomness,
    /// so that runs replay).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        self.rng
    }

    /// Sends `message` to `to` through the simulated network.
    pub fn send(&mut self, to: NodeId, message: M) {
        self.actions.push(Action::Send(to, message));
    }

    /// Sends `message` to each of `to` (a driver encodes it once).
    pub fn send_all(&mut self, to: Vec<NodeId>, message: M) {
        self.actions.push(Action::SendAll(to, message));
    }

    /// Calls [`Node::on_timer`] with `timer` after `after_ms` (lost if the node
    /// crashes first).
    pub fn set_timer(&mut self, after_ms: Millis, timer: T) {
        self.actions.push(Action::Timer(after_ms, timer));
    }
}

/// Counts of what the network did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Steps run (events handled, including dropped deliveries).
    pub steps: u64,
    /// Messages nodes sent.
    pub sent: u64,
    /// Messages handed to a node.
    pub delivered: u64,
    /// Messages the network lost.
    pub lost: u64,
    /// Extra copies the network made.
    pub duplicated: u64,
    /// Messages delivered with a flipped bit.
    pub corrupted: u64,
    /// Corrupted messages dropped because they no longer decoded.
    pub undecodable: u64,
    /// Messages dropped because a partition separated the nodes.
    pub partitioned: u64,
    /// Messages dropped because their receiver was down (or unknown).
    pub to_down_node: u64,
    /// Timers that fired.
    pub timers: u64,
}

enum Event<M, T> {
    Deliver {
        from: NodeId,
        to: usize,
        message: M,
    },
    Timer {
        node: usize,
        incarnation: u64,
        timer: T,
    },
}

struct Slot<N> {
    id: NodeId,
    node: N,
    up: bool,
    incarnation: u64,
}

type Invariant<N> = Box<dyn FnMut(&Simulation<N>) -> Result<(), String>>;

/// A seeded, deterministic network of [`Node`]s with a virtual clock.
pub struct Simulation<N: Node> {
    seed: u64,
    rng: ChaCha8Rng,
    now: Millis,
    next_seq: u64,
    queue: BinaryHeap<Reverse<(Millis, u64)>>,
    events: HashMap<u64, Event<N::Message, N::Timer>>,
    slots: Vec<Slot<N>>,
    index: BTreeMap<NodeId, usize>,
    group: Option<Vec<usize>>,
    faults: Faults,
    stats: Stats,
    invariant: Option<Invariant<N>>,
}

impl<N: Node> Simulation<N> {
    /// A simulation of `nodes` (ids must be distinct; a repeated id replaces
    /// the earlier node), started at time 0 with [`Node::on_start`].
    pub fn new(seed: u64, faults: Faults, nodes: impl IntoIterator<Item = (NodeId, N)>) -> Self {
        let mut sim = Simulation {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: 0,
            next_seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            slots: Vec::new(),
            index: BTreeMap::new(),
            group: None,
            faults: faults.normalized(),
            stats: Stats::default(),
            invariant: None,
        };
        for (id, node) in nodes {
            let slot = Slot {
                id,
                node,
                up: true,
                incarnation: 0,
            };
            match sim.index.get(&id) {
                Some(&i) => sim.slots[i] = slot,
                None => {
                    sim.index.insert(id, sim.slots.len());
                    sim.slots.push(slot);
                }
            }
        }
        for i in 0..sim.slots.len() {
            sim.run_node(i, |node, ctx| node.on_start(ctx));
        }
        sim
    }

    /// The seed this simulation replays from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The virtual time now.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// What the network did so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The simulation's RNG, for test drivers that make random choices
    /// (whom to crash, what to submit) and must replay with the seed.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Changes the network's faults from now on.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults.normalized();
    }

    /// The ids of all nodes, in id order.
    pub fn ids(&self) -> Vec<NodeId> {
        self.index.keys().copied().collect()
    }

    /// A node's state (also while it is down).
    pub fn node(&self, id: NodeId) -> Option<&N> {
        self.index.get(&id).map(|&i| &self.slots[i].node)
    }

    /// Every node with its id and whether it is up, in id order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &N, bool)> + '_ {
        self.index.values().map(|&i| {
            let s = &self.slots[i];
            (s.id, &s.node, s.up)
        })
    }

    /// Whether a node exists and is up.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.index.get(&id).is_some_and(|&i| self.slots[i].up)
    }

    /// Runs `f` on a node now, as if an outside client called it; what it
    /// sends and sets goes through the network like anything else. Returns
    /// `None` when the node is unknown or down.
    pub fn with_node<R>(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut N, &mut Context<'_, N::Message, N::Timer>) -> R,
    ) -> Option<R> {
        let i = *self.index.get(&id)?;
        if !self.slots[i].up {
            return None;
        }
        Some(self.run_node(i, f))
    }

    /// Delivers `message` to `to` as if `from` had sent it (a Byzantine or
    /// outside sender), through the network's faults.
    pub fn inject(&mut self, from: NodeId, to: NodeId, message: N::Message) {
        self.transmit(from, to, message);
    }

    /// Splits the network: nodes in different groups cannot reach each other
    /// (messages in flight across the cut are dropped on arrival). Nodes in
    /// no group form one more group together.
    pub fn partition(&mut self, groups: &[&[NodeId]]) {
        let rest = groups.len();
        let mut group = vec![rest; self.slots.len()];
        for (g, members) in groups.iter().enumerate() {
            for id in *members {
                if let Some(&i) = self.index.get(id) {
                    group[i] = g;
                }
            }
        }
        self.group = Some(group);
    }

    /// Ends any partition.
    pub fn heal(&mut self) {
        self.group = None;
    }

    /// Crashes a node: it stops, its pending timers are void, and messages to
    /// it are dropped until [`Simulation::restart`].
    pub fn crash(&mut self, id: NodeId) {
        if let Some(&i) = self.index.get(&id) {
            let slot = &mut self.slots[i];
            slot.up = false;
            slot.incarnation += 1;
        }
    }

    /// Restarts a crashed node from [`Recover::recover`] and runs
    /// [`Node::on_start`]. Does nothing to a node that is up.
    pub fn restart(&mut self, id: NodeId)
    where
        N: Recover,
    {
        let Some(&i) = self.index.get(&id) else {
            return;
        };
        if self.slots[i].up {
            return;
        }
        let slot = &mut self.slots[i];
        slot.node = slot.node.recover();
        slot.up = true;
        self.run_node(i, |node, ctx| node.on_start(ctx));
    }

    /// Sets the invariant checked after every step: an `Err` stops the run
    /// with [`LatticeError::InvariantViolated`].
    pub fn set_invariant(
        &mut self,
        check: impl FnMut(&Simulation<N>) -> Result<(), String> + 'static,
    ) {
        self.invariant = Some(Box::new(check));
    }

    /// Runs the next event. Returns `Ok(false)` when nothing is pending.
    pub fn step(&mut self) -> Result<bool, LatticeError> {
        let Some(Reverse((at, seq))) = self.queue.pop() else {
            return Ok(false);
        };
        self.now = self.now.max(at);
        self.stats.steps += 1;
        if let Some(event) = self.events.remove(&seq) {
            self.dispatch(event);
        }
        self.check()?;
        Ok(true)
    }

    /// Runs every event due up to and including `time`, then sets the clock
    /// to `time`.
    pub fn run_until(&mut self, time: Millis) -> Result<(), LatticeError> {
        self.run_until_quiet(time)?;
        self.now = self.now.max(time);
        Ok(())
    }

    /// Runs until no event is pending or the clock passes `deadline`.
    /// Returns whether the network went quiet.
    pub fn run_until_quiet(&mut self, deadline: Millis) -> Result<bool, LatticeError> {
        while let Some(&Reverse((at, _))) = self.queue.peek() {
            if at > deadline {
                self.now = self.now.max(deadline);
                return Ok(false);
            }
            self.step()?;
        }
        Ok(true)
    }

    /// Runs the invariant now.
    pub fn check(&mut self) -> Result<(), LatticeError> {
        let Some(mut invariant) = self.invariant.take() else {
            return Ok(());
        };
        let result = invariant(self);
        self.invariant = Some(invariant);
        result.map_err(|message| LatticeError::InvariantViolated {
            seed: self.seed,
            step: self.stats.steps,
            at_ms: self.now,
            message,
        })
    }

    fn dispatch(&mut self, event: Event<N::Message, N::Timer>) {
        match event {
            Event::Deliver { from, to, message } => {
                let reachable = match (&self.group, self.index.get(&from)) {
                    (Some(group), Some(&f)) => group[f] == group[to],
                    _ => true,
                };
                if !reachable {
                    self.stats.partitioned += 1;
                } else if !self.slots[to].up {
                    self.stats.to_down_node += 1;
                } else {
                    self.stats.delivered += 1;
                    self.run_node(to, |node, ctx| node.on_message(ctx, from, message));
                }
            }
            Event::Timer {
                node,
                incarnation,
                timer,
            } => {
                let slot = &self.slots[node];
                if slot.up && slot.incarnation == incarnation {
                    self.stats.timers += 1;
                    self.run_node(node, |n, ctx| n.on_timer(ctx, timer));
                }
            }
        }
    }

    fn run_node<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut N, &mut Context<'_, N::Message, N::Timer>) -> R,
    ) -> R {
        let mut actions = Vec::new();
        let slot = &mut self.slots[i];
        let (me, incarnation) = (slot.id, slot.incarnation);
        let result = f(
            &mut slot.node,
            &mut Context::new(self.now, me, &mut self.rng, &mut actions),
        );
        for action in actions {
            match action {
                Action::Send(to, message) => {
                    self.stats.sent += 1;
                    self.transmit(me, to, message);
                }
                Action::SendAll(targets, message) => {
                    for to in targets {
                        self.stats.sent += 1;
                        self.transmit(me, to, message.clone());
                    }
                }
                Action::Timer(after, timer) => {
                    let at = self.now.saturating_add(after);
                    self.schedule(
                        at,
                        Event::Timer {
                            node: i,
                            incarnation,
                            timer,
                        },
                    );
                }
            }
        }
        result
    }

    /// Puts a message on the wire: loss, duplication, corruption, latency.
    fn transmit(&mut self, from: NodeId, to: NodeId, message: N::Message) {
        let Some(&to_index) = self.index.get(&to) else {
            self.stats.to_down_node += 1;
            return;
        };
        if self.rng.random_bool(self.faults.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.random_bool(self.faults.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut message = message.clone();
            if self.rng.random_bool(self.faults.corrupt) {
                match self.corrupt(&message) {
                    Some(m) => {
                        self.stats.corrupted += 1;
                        message = m;
                    }
                    None => {
                        self.stats.undecodable += 1;
                        continue;
                    }
                }
            }
            let (lo, hi) = self.faults.latency_ms;
            let at = self.now.saturating_add(self.rng.random_range(lo..=hi));
            self.schedule(
                at,
                Event::Deliver {
                    from,
                    to: to_index,
                    message,
                },
            );
        }
    }

    /// The message with one random bit of its encoding flipped, if that still decodes.
    fn corrupt(&mut self, message: &N::Message) -> Option<N::Message> {
        let mut bytes = postcard::to_allocvec(message).ok()?;
        if bytes.is_empty() {
            return None;
        }
        let bit = self.rng.random_range(0..bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        postcard::from_bytes(&bytes).ok()
    }

    fn schedule(&mut self, at: Millis, event: Event<N::Message, N::Timer>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.insert(seq, event);
        self.queue.push(Reverse((at, seq)));
    }
}

#[cfg(test)]
mod tests;
