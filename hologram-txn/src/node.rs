//! The one node type of a transactional deployment: a participant with a
//! [`Store`], or a stateless coordinator, as the simulator runs it and as
//! the generic driver runs it over a `Transport` (see [`ParticipantDriver`]).
//!
//! After each input the node hands the core's messages and timers on only
//! once the core's durable writes are made. Under a driver, the writes of a
//! whole round are made at its end ([`Driven::persist`]), before anything of
//! it is sent. In the simulator each step's writes are made at once,
//! blocking on the store (a [`hologram_cam::MemoryStore`] shared across
//! restarts as a disk is); a store failure there drops the step's messages,
//! as a crash before sending would.
//!
//! [`ParticipantDriver`]: crate::ParticipantDriver

use crate::coordinator::{CoordinatorConfig, CoordinatorCore, CoordinatorTimer, TxnResult};
use crate::effects::Persist;
use crate::participant::{ParticipantConfig, ParticipantCore, ParticipantTimer, Signer};
use crate::{Effects, Op, ShardMap, TxnError, TxnId, TxnMessage};
use futures::channel::oneshot;
use futures::executor::block_on;
use hologram_cam::Store;
use hologram_lattice::driver::Driven;
use hologram_lattice::sim::{Context, Node, Recover};
use hologram_lattice::transport::Protocol;
use hologram_lattice::NodeId;
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

/// A transaction a [`TxnClient`](crate::TxnClient) asks its coordinator to
/// run: a [`TxnNode`]'s local input under a driver.
pub struct Begin {
    pub(crate) txn: TxnId,
    pub(crate) map_version: u64,
    pub(crate) writes: BTreeMap<NodeId, Vec<Op>>,
    pub(crate) reply: oneshot::Sender<TxnResult>,
}

/// A participant with its store.
pub struct ParticipantNode {
    /// What a restart rebuilds the core with (and from the store).
    signer: Signer,
    config: ParticipantConfig,
    initial_map: ShardMap,
    store: Arc<dyn Store>,
    state: Result<ParticipantCore, TxnError>,
    /// Under a driver, the round's writes, made at its end; `None` in the
    /// simulator, where each step's writes are made at once.
    round: Option<Persist>,
}

impl ParticipantNode {
    /// A participant serving its shards of `map` from `store` (rebuilt from
    /// what the store holds, so an existing store resumes where it stopped),
    /// for the simulator.
    pub fn new(
        signer: impl Into<Signer>,
        config: ParticipantConfig,
        map: ShardMap,
        store: Arc<dyn Store>,
    ) -> Self {
        let signer = signer.into();
        let state = block_on(async {
            let mut core =
                ParticipantCore::open(signer.clone(), config, map.clone(), &*store).await?;
            core.take_effects().persist.apply(&*store).await?;
            Ok(core)
        });
        ParticipantNode {
            signer,
            config,
            initial_map: map,
            store,
            state,
            round: None,
        }
    }

    /// `core` over `store`, its writes made at the end of each round of a driver.
    pub(crate) fn driven(core: ParticipantCore, store: Arc<dyn Store>) -> Self {
        ParticipantNode {
            signer: core.signer().clone(),
            config: core.config(),
            initial_map: core.map().clone(),
            store,
            state: Ok(core),
            round: Some(Persist::default()),
        }
    }

    /// The core, or why the node could not start (its store failed).
    pub fn core(&self) -> Result<&ParticipantCore, &TxnError> {
        self.state.as_ref()
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

    /// Hands what the core did to `ctx` once its writes are made (or queued
    /// for the round's end, under a driver).
    fn flush(&mut self, ctx: &mut Context<'_, TxnMessage, TxnTimer>) {
        let Ok(core) = self.state.as_mut() else {
            return;
        };
        let mut effects = core.take_effects();
        match &mut self.round {
            Some(round) => {
                round.put.append(&mut effects.persist.put);
                round.remove.append(&mut effects.persist.remove);
            }
            None => {
                let persist = std::mem::take(&mut effects.persist);
                if block_on(persist.apply(self.store.as_ref())).is_err() {
                    return;
                }
            }
        }
        deliver(ctx, effects, TxnTimer::Participant);
    }

    /// The core, to hand back when a driver stops.
    pub(crate) fn into_core(self) -> Result<ParticipantCore, TxnError> {
        self.state
    }
}

/// A coordinator: nothing durable, so a restart forgets what was in flight.
pub struct CoordinatorNode {
    core: CoordinatorCore,
    /// Under a driver, where each transaction's result goes.
    waiting: BTreeMap<TxnId, oneshot::Sender<TxnResult>>,
}

impl CoordinatorNode {
    /// A coordinator with nothing in flight.
    pub fn new(config: CoordinatorConfig) -> Self {
        Self::with_core(CoordinatorCore::new(config))
    }

    pub(crate) fn with_core(core: CoordinatorCore) -> Self {
        CoordinatorNode {
            core,
            waiting: BTreeMap::new(),
        }
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

    pub(crate) fn into_core(self) -> CoordinatorCore {
        self.core
    }
}

fn deliver<T>(
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

/// A node of a transactional deployment: the simulator and the driver run
/// this one type (module docs).
pub enum TxnNode {
    /// A shard's participant.
    Participant(Box<ParticipantNode>),
    /// A client's coordinator.
    Coordinator(CoordinatorNode),
}

impl TxnNode {
    /// The participant, if this is one.
    pub fn participant(&self) -> Option<&ParticipantNode> {
        match self {
            TxnNode::Participant(p) => Some(&**p),
            TxnNode::Coordinator(_) => None,
        }
    }

    /// The participant, mutably.
    pub fn participant_mut(&mut self) -> Option<&mut ParticipantNode> {
        match self {
            TxnNode::Participant(p) => Some(&mut **p),
            TxnNode::Coordinator(_) => None,
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

impl Node for TxnNode {
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

impl Recover for TxnNode {
    fn recover(&self) -> Self {
        match self {
            TxnNode::Participant(p) => TxnNode::Participant(Box::new(ParticipantNode::new(
                p.signer.clone(),
                p.config,
                p.initial_map.clone(),
                Arc::clone(&p.store),
            ))),
            TxnNode::Coordinator(c) => TxnNode::Coordinator(CoordinatorNode::new(c.core.config())),
        }
    }
}

impl Driven for TxnNode {
    const PROTOCOL: Protocol = crate::TXN_PROTOCOL;
    type Control = Begin;
    type Error = TxnError;

    fn on_control(&mut self, ctx: &mut Context<'_, TxnMessage, TxnTimer>, begin: Begin) {
        let TxnNode::Coordinator(c) = self else {
            let _ = begin.reply.send(Err(TxnError::NotACoordinator));
            return;
        };
        if c.waiting.contains_key(&begin.txn) {
            let _ = begin.reply.send(Err(TxnError::ContentsDiffer(begin.txn)));
            return;
        }
        match c.begin(ctx, begin.txn, begin.map_version, begin.writes) {
            Ok(()) => {
                c.waiting.insert(begin.txn, begin.reply);
            }
            Err(e) => {
                let _ = begin.reply.send(Err(e));
            }
        }
    }

    async fn persist(&mut self) -> Result<(), TxnError> {
        if let TxnNode::Participant(p) = self {
            if let Some(round) = p.round.as_mut() {
                std::mem::take(round).apply(p.store.as_ref()).await?;
            }
        }
        Ok(())
    }

    fn settle(&mut self) {
        if let TxnNode::Coordinator(c) = self {
            for (txn, result) in c.core.take_completed() {
                if let Some(reply) = c.waiting.remove(&txn) {
                    let _ = reply.send(result);
                }
            }
        }
    }
}
