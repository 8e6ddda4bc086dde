//! The cores as [`hologram_lattice::sim::Node`]s: participants with a
//! [`Store`] that survives crashes, and stateless coordinators.
//!
//! [`TxnNode`] is one node type for a whole simulated deployment (the
//! simulator runs one type): a participant or a coordinator. The driver here
//! is the same as a real one would be, minus the runtime: after each input it
//! makes the core's durable writes (blocking on the store, which in the
//! simulator is a [`hologram_cam::MemoryStore`] shared across restarts as a
//! disk is), and only then sends the core's messages and sets its timers. A
//! store failure drops the step's messages, as a crash before sending would.

use crate::coordinator::{CoordinatorConfig, CoordinatorCore, CoordinatorTimer, TxnResult};
use crate::participant::records::load_records;
use crate::participant::{ParticipantConfig, ParticipantCore, ParticipantTimer};
use crate::{Effects, Op, ShardMap, TxnError, TxnId, TxnMessage};
use futures::executor::block_on;
use hologram_cam::Store;
use hologram_lattice::sim::{Context, Node, Recover};
use hologram_lattice::NodeId;
use hologram_receipt::KeyPair;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a [`TxnNode`]'s timers carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnTimer {
    /// A participant's.
    Participant(ParticipantTimer),
    /// A coordinator's.
    Coordinator(CoordinatorTimer),
}

/// A participant with its store.
pub struct ParticipantNode<S: Store> {
    keys: KeyPair,
    config: ParticipantConfig,
    initial_map: ShardMap,
    store: Arc<S>,
    state: Result<ParticipantCore, TxnError>,
}

impl<S: Store> ParticipantNode<S> {
    /// A participant serving its shards of `map` from `store` (rebuilt from
    /// what the store holds, so an existing store resumes where it stopped).
    pub fn new(keys: KeyPair, config: ParticipantConfig, map: ShardMap, store: Arc<S>) -> Self {
        let state = Self::open(&keys, config, &map, &store);
        ParticipantNode {
            keys,
            config,
            initial_map: map,
            store,
            state,
        }
    }

    fn open(
        keys: &KeyPair,
        config: ParticipantConfig,
        map: &ShardMap,
        store: &Arc<S>,
    ) -> Result<ParticipantCore, TxnError> {
        let records = block_on(load_records(store.as_ref()))?;
        let mut core = if records.is_empty() {
            ParticipantCore::new(keys.clone(), config, map.clone())?
        } else {
            ParticipantCore::recover(keys.clone(), config, map.clone(), records)?
        };
        let persist = core.take_effects().persist;
        block_on(persist.apply(store.as_ref()))?;
        Ok(core)
    }

    /// The core, or why the node could not start (its store failed).
    pub fn core(&self) -> Result<&ParticipantCore, &TxnError> {
        self.state.as_ref()
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Runs `f` on the core outside the network (loading data, installing a
    /// shard map), making its durable writes at once.
    pub fn admin<R>(
        &mut self,
        f: impl FnOnce(&mut ParticipantCore) -> Result<R, TxnError>,
    ) -> Result<R, TxnError> {
        let core = self.state.as_mut().map_err(|e| e.clone())?;
        let result = f(core)?;
        let persist = core.take_effects().persist;
        block_on(persist.apply(self.store.as_ref()))?;
        Ok(result)
    }

    /// Runs `f` on the core as a step of the simulation: its durable writes,
    /// then its messages and timers (e.g. starting a hand-off with
    /// [`ParticipantCore::begin_hand_off`]).
    pub fn act<R>(
        &mut self,
        ctx: &mut Context<'_, TxnMessage, TxnTimer>,
        f: impl FnOnce(&mut ParticipantCore) -> Result<R, TxnError>,
    ) -> Result<R, TxnError> {
        let core = self.state.as_mut().map_err(|e| e.clone())?;
        let result = f(core);
        self.flush(ctx);
        result
    }

    fn flush(&mut self, ctx: &mut Context<'_, TxnMessage, TxnTimer>) {
        if let Ok(core) = self.state.as_mut() {
            let effects = core.take_effects();
            let persist = effects.persist.clone();
            if block_on(persist.apply(self.store.as_ref())).is_ok() {
                deliver(ctx, effects, TxnTimer::Participant);
            }
        }
    }
}

/// A coordinator: nothing durable, so a restart forgets what was in flight.
pub struct CoordinatorNode {
    core: CoordinatorCore,
    config: CoordinatorConfig,
}

impl CoordinatorNode {
    /// A coordinator with nothing in flight.
    pub fn new(config: CoordinatorConfig) -> Self {
        CoordinatorNode {
            core: CoordinatorCore::new(config),
            config,
        }
    }

    /// The core.
    pub fn core(&self) -> &CoordinatorCore {
        &self.core
    }

    /// Starts a transaction (see [`CoordinatorCore::begin`]).
    pub fn begin(
        &mut self,
        ctx: &mut Context<'_, TxnMessage, TxnTimer>,
        txn: TxnId,
        map_version: u64,
        writes: BTreeMap<NodeId, Vec<Op>>,
    ) -> Result<(), TxnError> {
        let result = self.core.begin(ctx.now(), txn, map_version, writes);
        deliver(ctx, self.core.take_effects(), TxnTimer::Coordinator);
        result
    }

    /// The transactions that ended since the last call.
    pub fn take_completed(&mut self) -> Vec<(TxnId, TxnResult)> {
        self.core.take_completed()
    }
}

pub(crate) fn deliver<T>(
    ctx: &mut Context<'_, TxnMessage, TxnTimer>,
    effects: Effects<T>,
    wrap: impl Fn(T) -> TxnTimer,
) {
    for (to, message) in effects.send {
        ctx.send(to, message);
    }
    for (after, timer) in effects.timers {
        ctx.set_timer(after, wrap(timer));
    }
}

/// A node of a simulated transactional deployment.
pub enum TxnNode<S: Store> {
    /// A shard's participant.
    Participant(Box<ParticipantNode<S>>),
    /// A client's coordinator.
    Coordinator(CoordinatorNode),
}

impl<S: Store> TxnNode<S> {
    /// The participant, if this is one.
    pub fn participant(&self) -> Option<&ParticipantNode<S>> {
        match self {
            TxnNode::Participant(p) => Some(&**p),
            TxnNode::Coordinator(_) => None,
        }
    }

    /// The participant, mutably.
    pub fn participant_mut(&mut self) -> Option<&mut ParticipantNode<S>> {
        match self {
            TxnNode::Participant(p) => Some(&mut **p),
            TxnNode::Coordinator(_) => None,
        }
    }

    /// The coordinator, if this is one.
    pub fn coordinator(&self) -> Option<&CoordinatorNode> {
        match self {
            TxnNode::Coordinator(c) => Some(c),
            TxnNode::Participant(_) => None,
        }
    }

    /// The coordinator, mutably.
    pub fn coordinator_mut(&mut self) -> Option<&mut CoordinatorNode> {
        match self {
            TxnNode::Coordinator(c) => Some(c),
            TxnNode::Participant(_) => None,
        }
    }
}

impl<S: Store> Node for TxnNode<S> {
    type Message = TxnMessage;
    type Timer = TxnTimer;

    fn on_start(&mut self, ctx: &mut Context<'_, TxnMessage, TxnTimer>) {
        if let TxnNode::Participant(p) = self {
            if let Ok(core) = p.state.as_mut() {
                core.on_start();
            }
            p.flush(ctx);
        }
    }

    fn on_message(
        &mut self,
        ctx: &mut Context<'_, TxnMessage, TxnTimer>,
        from: NodeId,
        message: TxnMessage,
    ) {
        match self {
            TxnNode::Participant(p) => {
                if let Ok(core) = p.state.as_mut() {
                    core.on_message(from, message);
                }
                p.flush(ctx);
            }
            TxnNode::Coordinator(c) => {
                c.core.on_message(from, message);
                deliver(ctx, c.core.take_effects(), TxnTimer::Coordinator);
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, TxnMessage, TxnTimer>, timer: TxnTimer) {
        match (self, timer) {
            (TxnNode::Participant(p), TxnTimer::Participant(t)) => {
                if let Ok(core) = p.state.as_mut() {
                    core.on_timer(t);
                }
                p.flush(ctx);
            }
            (TxnNode::Coordinator(c), TxnTimer::Coordinator(t)) => {
                c.core.on_timer(ctx.now(), t);
                deliver(ctx, c.core.take_effects(), TxnTimer::Coordinator);
            }
            _ => {}
        }
    }
}

impl<S: Store> Recover for TxnNode<S> {
    fn recover(&self) -> Self {
        match self {
            TxnNode::Participant(p) => TxnNode::Participant(Box::new(ParticipantNode::new(
                p.keys.clone(),
                p.config,
                p.initial_map.clone(),
                Arc::clone(&p.store),
            ))),
            TxnNode::Coordinator(c) => TxnNode::Coordinator(CoordinatorNode::new(c.config)),
        }
    }
}
