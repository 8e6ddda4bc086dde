//! A group's members: the [`Member`] seam a [`ReplicatedParticipant`]
//! asks, and [`GroupMember`], one member's replicas in this process.
//!
//! A [`GroupMember`] is a consensus [`Replica`](hologram_consensus::Replica)
//! of the group's validator set, run by a [`ReplicaDriver`] over a
//! `Transport` (with a [`DurableLog`] when given a store), whose decisions
//! are applied, in height order, to its
//! [`ReplicatedStateMachine<ShardMachine>`](ReplicatedStateMachine). Round
//! changes, pipelining, batching and catch-up are the replica's; the member
//! adds only what a participant needs: commands handed to its replica
//! ([`Member::submit`]), the output of each applied command kept for a
//! while ([`MAX_OUTPUTS`]) and signed on request ([`Member::endorse`]), and
//! reads of its replica's values ([`Member::value`]).
//!
//! [`ReplicatedParticipant`]: super::ReplicatedParticipant

use super::machine::{Endorsement, ShardMachine};
use crate::participant::ParticipantCore;
use crate::{Key, TxnError, TxnMessage};
use async_trait::async_trait;
use futures::channel::{mpsc, oneshot};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use hologram_cam::Store;
use hologram_consensus::{
    Command, CommandId, Decision, DriverHandle, DurableLog, Inbox, Lookup, ReplicaConfig,
    ReplicaDriver, ReplicatedStateMachine,
};
use hologram_lattice::transport::{Timer, Transport};
use hologram_lattice::NodeId;
use hologram_receipt::KeyPair;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The most outputs of applied commands a member keeps to endorse (the
/// oldest are forgotten first: a command applied that long ago is no
/// longer endorsed).
pub const MAX_OUTPUTS: usize = 1 << 16;

/// The most calls waiting at once for a member to apply their command;
/// more are refused with a retryable [`TxnError::Transport`].
pub const MAX_WAITING: usize = 1 << 14;

/// How long [`Member::endorse`] waits by default for the command to be
/// applied.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(2);

/// A member of a shard group as its [`ReplicatedParticipant`] sees it:
/// [`GroupMember`] in this process, or any wrapper of one (tests model
/// Byzantine and crashed members so). Its answers are only what it claims:
/// the participant counts an output when `f + 1` members' endorsements of
/// it verify.
///
/// [`ReplicatedParticipant`]: super::ReplicatedParticipant
#[async_trait]
pub trait Member: Send + Sync {
    /// The member's id (one of the group's validators).
    fn id(&self) -> NodeId;

    /// Hands `command` to the member's replica to be ordered.
    async fn submit(&self, command: Command) -> Result<(), TxnError>;

    /// Waits until the member applied `command`, and returns its signed
    /// endorsement of the output.
    async fn endorse(&self, command: &Command) -> Result<Endorsement, TxnError>;

    /// The committed value of `key` at the member's replica.
    async fn value(&self, key: &Key) -> Result<Option<Vec<u8>>, TxnError>;
}

/// What a member's applier shares with its callers.
#[derive(Debug)]
struct Applied {
    machine: ReplicatedStateMachine<ShardMachine>,
    /// The outputs kept, and their commands in the order applied.
    outputs: HashMap<CommandId, Option<TxnMessage>>,
    order: VecDeque<CommandId>,
    /// Calls waiting for a command to be applied.
    waiting: HashMap<CommandId, Vec<oneshot::Sender<()>>>,
    /// Why the member stopped applying, once it did.
    stopped: Option<String>,
}

impl Applied {
    /// Applies one decided height, keeping each command's output and
    /// waking who waits for it.
    fn apply(&mut self, decision: &Decision) -> Result<(), TxnError> {
        let applied = self
            .machine
            .apply_decision(decision)
            .map_err(|e| TxnError::Transport(format!("decided height refused: {e}")))?;
        for answer in applied {
            let id = answer.command;
            // Applied now, or a duplicate (answered with the first output):
            // either way the command's output; stale and refused ones
            // have none, and their waiters are told.
            if let Some(output) = answer.output() {
                if !self.outputs.contains_key(&id) {
                    if self.order.len() >= MAX_OUTPUTS {
                        if let Some(old) = self.order.pop_front() {
                            self.outputs.remove(&old);
                        }
                    }
                    self.outputs.insert(id, output.clone());
                    self.order.push_back(id);
                }
            }
            for waiter in self.waiting.remove(&id).unwrap_or_default() {
                let _ = waiter.send(());
            }
        }
        Ok(())
    }

    /// Registers a call waiting for `id` (bounded: see [`MAX_WAITING`]).
    fn wait_for(&mut self, id: CommandId) -> Result<oneshot::Receiver<()>, TxnError> {
        if let Some(why) = &self.stopped {
            return Err(TxnError::Transport(format!("member stopped: {why}")));
        }
        if self.waiting.len() >= MAX_WAITING {
            self.waiting.retain(|_, ws| {
                ws.retain(|w| !w.is_canceled());
                !ws.is_empty()
            });
            if self.waiting.len() >= MAX_WAITING {
                return Err(TxnError::Transport("too many calls waiting".into()));
            }
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.entry(id).or_default().push(tx);
        Ok(rx)
    }
}

/// What a [`GroupMember`] is made of.
pub struct MemberSetup {
    /// The member's keys (a validator of `config.validators`).
    pub keys: KeyPair,
    /// The shard's participant core every member of the group starts from
    /// (signing as the [`Group`](crate::Group) of the validators).
    pub core: ParticipantCore,
    /// The replica's configuration (the group's validator set, batching,
    /// pipelining, timeouts).
    pub config: ReplicaConfig,
    /// The member's transport; its node serves the `inbox`'s handler for
    /// `hologram_consensus::CONSENSUS_PROTOCOL`.
    pub transport: Arc<dyn Transport>,
    /// The inbox the member's consensus handler fills.
    pub inbox: Inbox,
    /// The clock of the driver and of the waits.
    pub timer: Timer,
    /// Where the replica's log and voting record are made durable, and
    /// recovered from on a restart (none: in memory only).
    pub store: Option<Arc<dyn Store>>,
}

/// The future that runs a [`GroupMember`] until it is
/// [stopped](GroupMember::stop); spawn it on any executor.
pub type MemberRun = BoxFuture<'static, Result<(), TxnError>>;

/// One member of a shard group in this process (see the
/// docs of [`ReplicatedParticipant`](crate::ReplicatedParticipant)).
pub struct GroupMember {
    keys: KeyPair,
    group: NodeId,
    handle: DriverHandle,
    applied: Arc<Mutex<Applied>>,
    timer: Timer,
    wait: Duration,
}

impl core::fmt::Debug for GroupMember {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GroupMember")
            .field("id", &self.keys.node_id())
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

fn lock(applied: &Mutex<Applied>) -> MutexGuard<'_, Applied> {
    // Every update completes before the next fallible step.
    applied.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GroupMember {
    /// Starts a member: with a store, recovers its replica and machine from
    /// the durable log there (each certificate checked; the rest is fetched
    /// from peers by catch-up). Returns the member and the future that runs
    /// it.
    pub async fn start(setup: MemberSetup) -> Result<(Self, MemberRun), TxnError> {
        let MemberSetup {
            keys,
            core,
            config,
            transport,
            inbox,
            timer,
            store,
        } = setup;
        let err = |e: hologram_consensus::ConsensusError| TxnError::Transport(e.to_string());
        let group = core.id();
        let mut applied = Applied {
            machine: ReplicatedStateMachine::new(
                ShardMachine::new(core),
                config.validators.clone(),
            ),
            outputs: HashMap::new(),
            order: VecDeque::new(),
            waiting: HashMap::new(),
            stopped: None,
        };
        let (replica, log) = match store {
            Some(store) => {
                let (log, recovered) = DurableLog::open(store, config.validators.clone())
                    .await
                    .map_err(err)?;
                for decision in &recovered.decisions {
                    applied.apply(decision)?;
                }
                (
                    recovered.replica(keys.clone(), config).map_err(err)?,
                    Some(log),
                )
            }
            None => (
                hologram_consensus::Replica::new(keys.clone(), config).map_err(err)?,
                None,
            ),
        };
        let (driver, handle, decisions) =
            ReplicaDriver::new(replica, transport, timer.clone(), inbox);
        let driver = match log {
            Some(log) => driver.with_log(log),
            None => driver,
        };
        let applied = Arc::new(Mutex::new(applied));
        let run = run(driver, decisions, Arc::clone(&applied), handle.clone()).boxed();
        let member = GroupMember {
            keys,
            group,
            handle,
            applied,
            timer,
            wait: DEFAULT_WAIT,
        };
        Ok((member, run))
    }

    /// This member, waiting at most `wait` for a command to be applied.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The member's id.
    pub fn id(&self) -> NodeId {
        self.keys.node_id()
    }

    /// Asks the member's driver to stop (its run future then ends).
    pub fn stop(&self) {
        self.handle.stop();
    }

    /// Runs `f` on the member's replica of the shard machine.
    pub fn with_machine<R>(&self, f: impl FnOnce(&ReplicatedStateMachine<ShardMachine>) -> R) -> R {
        f(&lock(&self.applied).machine)
    }

    /// The output the member computed for `command`, if it applied it and
    /// still keeps it.
    pub fn output(&self, command: &Command) -> Option<Option<TxnMessage>> {
        lock(&self.applied).outputs.get(&command.id()).cloned()
    }
}

/// Drives the replica and applies its decisions until it stops.
async fn run(
    driver: ReplicaDriver,
    mut decisions: mpsc::UnboundedReceiver<Decision>,
    applied: Arc<Mutex<Applied>>,
    handle: DriverHandle,
) -> Result<(), TxnError> {
    let apply = async {
        while let Some(decision) = decisions.next().await {
            if let Err(e) = lock(&applied).apply(&decision) {
                handle.stop();
                return Err(e);
            }
        }
        Ok(())
    };
    let ((_, driven), applying) = futures::join!(driver.try_run(), apply);
    let result = driven
        .map_err(|e| TxnError::Transport(format!("member replica: {e}")))
        .and(applying);
    let mut state = lock(&applied);
    state.stopped = Some(match &result {
        Ok(()) => "stopped".into(),
        Err(e) => e.to_string(),
    });
    // Waiting calls are told at once.
    state.waiting.clear();
    result
}

#[async_trait]
impl Member for GroupMember {
    fn id(&self) -> NodeId {
        self.keys.node_id()
    }

    async fn submit(&self, command: Command) -> Result<(), TxnError> {
        self.handle
            .submit(vec![command], false)
            .await
            .map(drop)
            .map_err(|e| TxnError::Transport(format!("member {}: {e}", self.id())))
    }

    async fn endorse(&self, command: &Command) -> Result<Endorsement, TxnError> {
        let id = command.id();
        let waiting = {
            let mut state = lock(&self.applied);
            match state.outputs.get(&id) {
                Some(_) => None,
                None if !matches!(
                    state
                        .machine
                        .sessions()
                        .lookup(&command.client(), command.sequence()),
                    Lookup::Unknown
                ) =>
                {
                    return Err(TxnError::Transport(format!(
                        "member {}: the output of {id} is no longer kept",
                        self.id()
                    )))
                }
                None => Some(state.wait_for(id)?),
            }
        };
        if let Some(waiting) = waiting {
            match self.timer.timeout(self.wait, waiting).await {
                Some(Ok(())) => {}
                Some(Err(_)) => {
                    return Err(TxnError::Transport(format!("member {} stopped", self.id())))
                }
                None => {
                    return Err(TxnError::Transport(format!(
                        "member {}: {id} not applied within {:?}",
                        self.id(),
                        self.wait
                    )))
                }
            }
        }
        let output = self.output(command).ok_or_else(|| {
            TxnError::Transport(format!("member {}: the output of {id} is gone", self.id()))
        })?;
        Endorsement::sign(&self.keys, self.group, command, output)
    }

    async fn value(&self, key: &Key) -> Result<Option<Vec<u8>>, TxnError> {
        Ok(lock(&self.applied)
            .machine
            .state()
            .value(key)
            .map(<[u8]>::to_vec))
    }
}
