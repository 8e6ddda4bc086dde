//! Faults of a replicated group's members shared by the group tests (and
//! the facade's whole-stack campaign): a [`TestGroup`] runs a group's
//! members as consensus replicas over a `MemoryNetwork` of its own, each
//! behind a [`Slot`] that models a Byzantine or crashed member —
//! [`MemberBehaviour::Silent`] answers nothing, `Lying` endorses a forged
//! output (a refusal of every request) and answers reads with a forged
//! value, `Forging` signs each receipt claimed in the group's name for the
//! wrong purpose — and crashes and restarts members (a restarted member
//! recovers its replica from its durable log in a `MemoryStore` and catches
//! up from its peers).
//!
//! The members run on a [`Runner`]: each on a thread of its own on real
//! time (the group tests), or as tasks of a simulation's `Executor` on its
//! virtual clock (the whole-stack campaign, which replays a seed exactly).
#![allow(dead_code)] // each test uses part of it

use async_trait::async_trait;
use futures::executor::block_on;
use hologram_cam::MemoryStore;
use hologram_consensus::{Command, ReplicaConfig, ReplicatedStateMachine, Timeouts, ValidatorSet};
use hologram_lattice::sim::{Executor, Faults};
use hologram_lattice::transport::{Handler, MemoryNetwork, Timer};
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Purpose};
use hologram_txn::{group_claims, Endorsement, GroupMember, Member, MemberSetup, ShardMachine};
use hologram_txn::{
    Key, ParticipantCore, Refusal, ReplicatedParticipant, TxnError, TxnId, TxnMessage,
};
use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long a call run on a simulation's executor may take in virtual time
/// before the run counts as stalled (every call has timeouts far shorter).
const STALL: Duration = Duration::from_secs(120);

/// Wraps a member's handler (given the member's id): to trace what it is
/// given.
pub type Wrap = Arc<dyn Fn(NodeId, Arc<dyn Handler>) -> Arc<dyn Handler> + Send + Sync>;

/// Where a group's members run, and how a test waits for a call.
#[derive(Clone)]
pub enum Runner {
    /// Each member on a thread of its own, on real time.
    Threads,
    /// Every member a task of the executor, on its virtual clock, its
    /// handler wrapped.
    Sim(Executor, Wrap),
}

impl Runner {
    /// Runs `future` to completion: on this thread, the members on theirs;
    /// or on the executor with its tasks (panics if it stalls: a bug of the
    /// test, which check_seeds reports with the seed).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        match self {
            Runner::Threads => block_on(future),
            Runner::Sim(exec, _) => exec
                .block_on(future, STALL)
                .unwrap_or_else(|| panic!("a call made no progress in {STALL:?} of virtual time")),
        }
    }

    fn spawn(&self, run: impl Future<Output = ()> + Send + 'static) {
        match self {
            Runner::Threads => {
                std::thread::spawn(move || block_on(run));
            }
            Runner::Sim(exec, _) => exec.spawn(run),
        }
    }

    fn wrap(&self, id: NodeId, handler: Arc<dyn Handler>) -> Arc<dyn Handler> {
        match self {
            Runner::Threads => handler,
            Runner::Sim(_, wrap) => wrap(id, handler),
        }
    }

    /// A network for a group: on real time, or on the executor's clock.
    fn network(&self, seed: u64) -> MemoryNetwork {
        match self {
            Runner::Threads => MemoryNetwork::new(seed),
            Runner::Sim(exec, _) => MemoryNetwork::with_timer(seed, exec.timer().clone()),
        }
    }
}

/// How a group member behaves when it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberBehaviour {
    /// Endorses the true output.
    Honest,
    /// Applies, but never answers.
    Silent,
    /// Applies, but endorses a forged output and reads a forged value.
    Lying,
    /// Endorses the true output, but signs each receipt claimed in the
    /// group's name for the wrong purpose.
    Forging,
}

/// One member behind its behaviour; a crash stops it, a restart replaces it.
pub struct Slot {
    keys: KeyPair,
    behaviour: MemberBehaviour,
    member: Mutex<Arc<GroupMember>>,
    down: AtomicBool,
    store: Arc<MemoryStore>,
}

impl Slot {
    fn member(&self) -> Arc<GroupMember> {
        Arc::clone(&self.member.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn answering(&self) -> Result<Arc<GroupMember>, TxnError> {
        match self.down.load(Ordering::SeqCst) || self.behaviour == MemberBehaviour::Silent {
            true => Err(TxnError::Transport(format!(
                "{} answers nothing",
                self.keys.node_id()
            ))),
            false => Ok(self.member()),
        }
    }
}

#[async_trait]
impl Member for Slot {
    fn id(&self) -> NodeId {
        self.keys.node_id()
    }

    async fn submit(&self, command: Command) -> Result<(), TxnError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(TxnError::Transport("down".into()));
        }
        self.member().submit(command).await
    }

    async fn endorse(&self, command: &Command) -> Result<Endorsement, TxnError> {
        let endorsement = self.answering()?.endorse(command).await?;
        let group = endorsement.group;
        match self.behaviour {
            MemberBehaviour::Lying => {
                let txn = endorsement.output.as_ref().and_then(TxnMessage::txn);
                let forged = txn.map(|txn| TxnMessage::Refused {
                    txn,
                    refusal: Refusal::Invalid("forged by a lying member".into()),
                });
                Endorsement::sign(&self.keys, group, command, forged)
            }
            MemberBehaviour::Forging => {
                let mut e = endorsement;
                let mut output = e.output.clone();
                let claims = output
                    .as_mut()
                    .map(|m| group_claims(m, &group))
                    .unwrap_or_default();
                e.shares = claims
                    .into_iter()
                    .map(|(purpose, s)| {
                        let wrong = match purpose {
                            Purpose::Prepare => Purpose::Commit,
                            _ => Purpose::Prepare,
                        };
                        self.keys.sign(wrong, &s.receipt.to_canonical_bytes())
                    })
                    .collect();
                Ok(e)
            }
            MemberBehaviour::Honest | MemberBehaviour::Silent => Ok(endorsement),
        }
    }

    async fn value(&self, key: &Key) -> Result<Option<Vec<u8>>, TxnError> {
        let member = self.answering()?;
        match self.behaviour {
            MemberBehaviour::Lying => Ok(Some(b"forged by a lying member".to_vec())),
            _ => member.value(key).await,
        }
    }
}

/// A member's replica as a test inspects it.
pub struct MemberView {
    id: NodeId,
    machine: ReplicatedStateMachine<ShardMachine>,
}

impl MemberView {
    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn machine(&self) -> &ReplicatedStateMachine<ShardMachine> {
        &self.machine
    }
}

/// A group whose members run in this process, each on a thread, over a
/// `MemoryNetwork` of their own; it derefs to its participant.
pub struct TestGroup {
    participant: Arc<ReplicatedParticipant>,
    network: MemoryNetwork,
    core: ParticipantCore,
    set: ValidatorSet,
    slots: Vec<Arc<Slot>>,
    runner: Runner,
    /// No-op commands ordered so far (see `with_members`).
    nudges: AtomicU64,
}

impl Deref for TestGroup {
    type Target = ReplicatedParticipant;

    fn deref(&self) -> &ReplicatedParticipant {
        &self.participant
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        for slot in &self.slots {
            slot.member().stop();
        }
    }
}

/// The replica configuration of the tests' members: short timeouts.
pub fn config(set: ValidatorSet) -> ReplicaConfig {
    let mut config = ReplicaConfig::new(set);
    config.max_pipeline_depth = 4;
    config.timeouts = Timeouts {
        propose_ms: 50,
        prevote_ms: 25,
        precommit_ms: 25,
        round_increase_ms: 25,
        resend_ms: 25,
    };
    config
}

/// Starts member `keys` on `network` from `store`, on `runner`.
async fn start(
    runner: &Runner,
    network: &MemoryNetwork,
    core: &ParticipantCore,
    set: &ValidatorSet,
    keys: &KeyPair,
    store: &Arc<MemoryStore>,
    restart: bool,
) -> Result<Arc<GroupMember>, TxnError> {
    let (handler, inbox) = hologram_consensus::inbox();
    let handler = runner.wrap(keys.node_id(), Arc::new(handler));
    let transport = match restart {
        true => network.restart(keys.node_id(), handler),
        false => network.join(keys.node_id(), handler),
    };
    let setup = MemberSetup {
        keys: keys.clone(),
        core: core.clone(),
        config: config(set.clone()),
        transport: Arc::new(transport),
        inbox,
        timer: network.timer().clone(),
        store: Some(Arc::clone(store) as Arc<dyn hologram_cam::Store>),
    };
    let (member, run) = GroupMember::start(setup).await?;
    // A member that stops on a failure to persist stops answering, as a
    // crashed process would (the group tests' checks see it).
    runner.spawn(async move {
        let _ = run.await;
    });
    Ok(Arc::new(member.with_wait(Duration::from_secs(5))))
}

impl TestGroup {
    /// The group of `keys` starting from `core`, member `i` behaving as
    /// `behaviour(i)`, over a network with `faults` (latency in real ms; on
    /// a simulation's executor, virtual ms: see [`on`](Self::on)).
    pub fn new(
        core: &ParticipantCore,
        keys: &[KeyPair],
        behaviour: impl Fn(usize) -> MemberBehaviour,
        faults: Faults,
        seed: u64,
    ) -> TestGroup {
        let waits = (Duration::from_millis(300), Duration::from_secs(5));
        Self::with_waits(core, keys, behaviour, faults, seed, waits)
    }

    /// [`new`](Self::new) with the participant's `(patience, timeout)`.
    pub fn with_waits(
        core: &ParticipantCore,
        keys: &[KeyPair],
        behaviour: impl Fn(usize) -> MemberBehaviour,
        faults: Faults,
        seed: u64,
        waits: (Duration, Duration),
    ) -> TestGroup {
        Self::on(core, keys, behaviour, faults, seed, waits, Runner::Threads)
    }

    /// [`with_waits`](Self::with_waits), the members run on `runner`.
    pub fn on(
        core: &ParticipantCore,
        keys: &[KeyPair],
        behaviour: impl Fn(usize) -> MemberBehaviour,
        faults: Faults,
        seed: u64,
        (patience, timeout): (Duration, Duration),
        runner: Runner,
    ) -> TestGroup {
        let group = ReplicatedParticipant::group_of(keys).expect("a group");
        let set = ValidatorSet::new(group.members().to_vec()).expect("a validator set");
        let network = runner.network(seed);
        network.set_faults(faults);
        let slots: Vec<Arc<Slot>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let store = Arc::new(MemoryStore::new());
                let member = runner
                    .block_on(start(&runner, &network, core, &set, k, &store, false))
                    .expect("a member");
                Arc::new(Slot {
                    keys: k.clone(),
                    behaviour: behaviour(i),
                    member: Mutex::new(member),
                    down: AtomicBool::new(false),
                    store,
                })
            })
            .collect();
        let members = slots
            .iter()
            .map(|s| Arc::clone(s) as Arc<dyn Member>)
            .collect();
        let timer: Timer = network.timer().clone();
        let participant = ReplicatedParticipant::new(group, keys[0].clone(), members, timer)
            .expect("a participant")
            .with_timeouts(patience, timeout);
        TestGroup {
            participant: Arc::new(participant),
            network,
            core: core.clone(),
            set,
            slots,
            runner,
            nudges: AtomicU64::new(0),
        }
    }

    /// An honest group over a perfect network.
    pub fn honest(core: &ParticipantCore, keys: &[KeyPair]) -> TestGroup {
        Self::new(core, keys, |_| MemberBehaviour::Honest, zero(), 1)
    }

    /// The participant, to serve it (`ParticipantService`).
    pub fn shared(&self) -> Arc<ReplicatedParticipant> {
        Arc::clone(&self.participant)
    }

    /// Where the members run.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// The network the members talk over.
    pub fn network(&self) -> &MemoryNetwork {
        &self.network
    }

    /// Member `index` crashes: its replica stops, its node leaves the
    /// network, it answers nothing until it restarts.
    pub async fn crash_member(&self, index: usize) -> Result<(), TxnError> {
        let slot = self.slots.get(index).ok_or(TxnError::Empty("member"))?;
        slot.down.store(true, Ordering::SeqCst);
        slot.member().stop();
        self.network.crash(slot.keys.node_id());
        Ok(())
    }

    /// Member `index` restarts (crashed or not): its replica is recovered
    /// from its durable log, each certificate checked, and catches up from
    /// its peers.
    pub async fn restart_member(&self, index: usize) -> Result<(), TxnError> {
        let slot = self.slots.get(index).ok_or(TxnError::Empty("member"))?;
        slot.member().stop();
        self.network.crash(slot.keys.node_id());
        let fresh = start(
            &self.runner,
            &self.network,
            &self.core,
            &self.set,
            &slot.keys,
            &slot.store,
            true,
        )
        .await?;
        *slot.member.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
        slot.down.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Every member's replica as it is now (a crashed member's as it
    /// stopped), and whether the member is down.
    pub fn members_now(&self) -> Vec<(MemberView, bool)> {
        self.slots
            .iter()
            .map(|s| {
                let view = MemberView {
                    id: s.keys.node_id(),
                    machine: s.member().with_machine(Clone::clone),
                };
                (view, s.down.load(Ordering::SeqCst))
            })
            .collect()
    }

    /// Runs `f` on the replicas of the members up, once they have applied
    /// the same heights (waiting up to 10 s for them to converge). A replica
    /// behind an idle group is shown the next height only when there is
    /// one: every half second of waiting orders a fresh no-op command (a
    /// query of an unknown transaction, which the group answers by deciding
    /// it aborted).
    pub async fn with_members<R>(&self, f: impl FnOnce(&[MemberView]) -> R) -> R {
        let timer = self.network.timer();
        let deadline = timer.now() + Duration::from_secs(10);
        let mut nudge = timer.now() + Duration::from_millis(500);
        loop {
            let views: Vec<MemberView> = self
                .slots
                .iter()
                .filter(|s| !s.down.load(Ordering::SeqCst))
                .map(|s| MemberView {
                    id: s.keys.node_id(),
                    machine: s.member().with_machine(Clone::clone),
                })
                .collect();
            let heights: Vec<u64> = views.iter().map(|v| v.machine.next_height()).collect();
            if heights.iter().all(|h| *h == heights[0]) || timer.now() > deadline {
                return f(&views);
            }
            if timer.now() > nudge {
                let n = self.nudges.fetch_add(1, Ordering::SeqCst);
                let mut id = [0xee; 16];
                id[..8].copy_from_slice(&n.to_le_bytes());
                let _ = self
                    .participant
                    .submit(&TxnMessage::Query { txn: TxnId(id) })
                    .await;
                nudge = timer.now() + Duration::from_millis(500);
            }
            timer.sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A perfect network with no latency.
pub fn zero() -> Faults {
    Faults {
        latency_ms: (0, 0),
        ..Faults::NONE
    }
}
