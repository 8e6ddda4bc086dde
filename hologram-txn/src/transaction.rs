//! The chapter's `DistributedTransaction` over the async [`Participant`]
//! seam, and [`LocalParticipant`], an in-process participant over a [`Store`].
//!
//! [`Participant`] is what the coordinator needs of a shard, whatever the
//! shard is: one process with a store ([`LocalParticipant`]), a peer behind a
//! transport, or a replicated group that agrees on each call before it
//! answers. The chapter's three calls map onto it as follows: `prepare`
//! returns the signed prepare receipt; `commit` is split between the primary
//! ([`Participant::commit`], which decides on the certificate of prepare
//! receipts and returns the signed decision) and the others
//! ([`Participant::resolve`], which apply that decision and return their own
//! signed receipt, equal to it); `abort` asks the primary to decide abort.
//!
//! [`DistributedTransaction::execute`] runs the same [`CoordinatorCore`] as the
//! simulator does: it sends each of the core's messages as a call, feeds the
//! answers back, and when nothing is outstanding lets the core's retry timer
//! fire (a virtual clock advancing by `retry_ms`), so a call that failed is
//! retried and phase 1 times out after `prepare_timeout_ms` of virtual time.

use crate::coordinator::{CoordinatorConfig, CoordinatorCore, CoordinatorTimer};
use crate::participant::{ParticipantCore, Prework};
use crate::wire::{decided, refused, Refusal};
use crate::{Decision, Op, PrepareRequest, SignedReceipt, TxnError, TxnId, TxnMessage};
use async_trait::async_trait;
use futures::future::join_all;
use hologram_cam::Store;
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Receipt};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// A transaction participant, as the coordinator sees it (module docs).
#[async_trait]
pub trait Participant: Send + Sync {
    /// The participant's id: the key its receipts are signed with.
    fn id(&self) -> NodeId;

    /// Phase 1: lock, check and durably prepare; the signed prepare receipt.
    async fn prepare(&self, request: PrepareRequest) -> Result<SignedReceipt, TxnError>;

    /// The one-phase fast path of a single-participant transaction.
    async fn commit_one_phase(
        &self,
        request: PrepareRequest,
        expected: Receipt,
    ) -> Result<Decision, TxnError>;

    /// At the primary: commit on the certificate of every signed prepare
    /// receipt; returns the final decision (an abort if it already aborted).
    async fn commit(&self, txn: TxnId, prepares: Vec<SignedReceipt>) -> Result<Decision, TxnError>;

    /// At the primary: decide abort; returns the final decision.
    async fn abort(&self, txn: TxnId) -> Result<Decision, TxnError>;

    /// At any other participant: apply the primary's decision; returns this
    /// participant's own signed commit or abort receipt.
    async fn resolve(&self, txn: TxnId, decision: Decision) -> Result<SignedReceipt, TxnError>;
}

#[async_trait]
impl<T: Participant + ?Sized> Participant for Arc<T> {
    fn id(&self) -> NodeId {
        (**self).id()
    }

    async fn prepare(&self, request: PrepareRequest) -> Result<SignedReceipt, TxnError> {
        (**self).prepare(request).await
    }

    async fn commit_one_phase(
        &self,
        request: PrepareRequest,
        expected: Receipt,
    ) -> Result<Decision, TxnError> {
        (**self).commit_one_phase(request, expected).await
    }

    async fn commit(&self, txn: TxnId, prepares: Vec<SignedReceipt>) -> Result<Decision, TxnError> {
        (**self).commit(txn, prepares).await
    }

    async fn abort(&self, txn: TxnId) -> Result<Decision, TxnError> {
        (**self).abort(txn).await
    }

    async fn resolve(&self, txn: TxnId, decision: Decision) -> Result<SignedReceipt, TxnError> {
        (**self).resolve(txn, decision).await
    }
}

/// Answers one coordinator message with a [`Participant`] call.
pub async fn call<P: Participant + ?Sized>(
    participant: &P,
    message: TxnMessage,
) -> Option<TxnMessage> {
    let txn = message.txn()?;
    Some(match message {
        TxnMessage::Prepare(request) => match participant.prepare(request).await {
            Ok(vote) => TxnMessage::Prepared { txn, vote },
            Err(e) => refused(txn, e),
        },
        TxnMessage::CommitOnePhase { request, expected } => {
            decided(txn, participant.commit_one_phase(request, expected).await)
        }
        TxnMessage::Commit { prepares, .. } => {
            decided(txn, participant.commit(txn, prepares).await)
        }
        TxnMessage::Abort { .. } => decided(txn, participant.abort(txn).await),
        TxnMessage::Resolve { decision, .. } => match participant.resolve(txn, decision).await {
            Ok(ack) => TxnMessage::Ack { txn, ack },
            Err(e) => refused(txn, e),
        },
        TxnMessage::Query { .. }
        | TxnMessage::Prepared { .. }
        | TxnMessage::Refused { .. }
        | TxnMessage::Decided { .. }
        | TxnMessage::Ack { .. }
        | TxnMessage::HandOff(_)
        | TxnMessage::HandedOver(_) => return None,
    })
}

/// A participant in this process: a [`ParticipantCore`] whose durable
/// writes go to `store` before each call returns.
///
/// Its recovery timers (a primary's unilateral abort, a secondary's question
/// to its primary) need a clock and a network, which an in-process
/// participant has not: a secondary left prepared by a coordinator that gave
/// up is resolved by calling [`Participant::resolve`] with the primary's
/// decision. The simulated and networked drivers run the timers.
///
/// Calls from several threads run their signing and verifying in parallel:
/// it is done ahead ([`Prework`]), outside the lock on the core.
pub struct LocalParticipant<S: Store + ?Sized> {
    id: NodeId,
    /// The core's keys, to sign ahead (none for a group's core).
    keys: Option<KeyPair>,
    core: Mutex<ParticipantCore>,
    store: Arc<S>,
}

impl<S: Store + ?Sized> LocalParticipant<S> {
    /// A participant running `core` over `store`.
    pub fn new(core: ParticipantCore, store: Arc<S>) -> Self {
        LocalParticipant {
            id: core.id(),
            keys: core.signer().keys().cloned(),
            core: Mutex::new(core),
            store,
        }
    }

    /// Runs `f` on the core (to read it, or to load data), then makes its
    /// durable writes.
    pub async fn with_core<R>(
        &self,
        f: impl FnOnce(&mut ParticipantCore) -> R,
    ) -> Result<R, TxnError> {
        let (result, persist) = {
            let mut core = self.core.lock().unwrap_or_else(PoisonError::into_inner);
            let result = f(&mut core);
            (result, core.take_effects().persist)
        };
        persist.apply(self.store.as_ref()).await?;
        Ok(result)
    }

    /// The prework `f` makes with the core's keys (none for a group's core).
    fn prework(&self, f: impl FnOnce(&KeyPair) -> Prework) -> Prework {
        self.keys.as_ref().map(f).unwrap_or_default()
    }

    /// Runs a call with its signatures made and checked ahead, outside the lock.
    async fn run<R>(
        &self,
        prework: Prework,
        f: impl FnOnce(&mut ParticipantCore) -> Result<R, TxnError>,
    ) -> Result<R, TxnError> {
        self.with_core(|core| core.with_prework(prework, f)).await?
    }
}

#[async_trait]
impl<S: Store + ?Sized> Participant for LocalParticipant<S> {
    fn id(&self) -> NodeId {
        self.id
    }

    async fn prepare(&self, request: PrepareRequest) -> Result<SignedReceipt, TxnError> {
        let prework = self.prework(|k| Prework::prepare(k, &request));
        self.run(prework, |c| c.prepare(request)).await
    }

    async fn commit_one_phase(
        &self,
        request: PrepareRequest,
        expected: Receipt,
    ) -> Result<Decision, TxnError> {
        let prework = self.prework(|k| Prework::commit_one_phase(k, &request));
        self.run(prework, |c| c.commit_one_phase(request, &expected))
            .await
    }

    async fn commit(&self, txn: TxnId, prepares: Vec<SignedReceipt>) -> Result<Decision, TxnError> {
        let prework = self.prework(|k| Prework::commit(k, &prepares));
        self.run(prework, |c| c.commit(txn, &prepares)).await
    }

    async fn abort(&self, txn: TxnId) -> Result<Decision, TxnError> {
        self.run(Prework::default(), |c| c.abort(txn)).await
    }

    async fn resolve(&self, txn: TxnId, decision: Decision) -> Result<SignedReceipt, TxnError> {
        let prework = self.prework(|k| Prework::resolve(k, &decision));
        self.run(prework, |c| c.resolve(txn, &decision)).await
    }
}

/// How many times in a row [`DistributedTransaction::execute`] lets the
/// retry timer fire without any answer before it gives up.
pub const MAX_IDLE_ROUNDS: u32 = 16;

/// One atomic transaction over [`Participant`]s (module docs).
///
/// Generic over the participants' type `P`: participants of one type (all
/// [`LocalParticipant`]s, all [`RemoteParticipant`](crate::RemoteParticipant)s)
/// are given as they are; a transaction mixing kinds (a local shard, a
/// remote one, a replicated group) gives each as a `&dyn Participant`, the
/// default.
pub struct DistributedTransaction<'a, P: Participant + ?Sized = dyn Participant> {
    txn: TxnId,
    map_version: u64,
    config: CoordinatorConfig,
    participants: BTreeMap<NodeId, &'a P>,
    writes: BTreeMap<NodeId, Vec<Op>>,
}

impl<'a, P: Participant + ?Sized> DistributedTransaction<'a, P> {
    /// Transaction `txn`: each participant's ops, routed with shard map
    /// `map_version`. Ops for the same participant given twice are joined.
    pub fn new(
        txn: TxnId,
        map_version: u64,
        writes: impl IntoIterator<Item = (&'a P, Vec<Op>)>,
    ) -> Self {
        let mut participants = BTreeMap::new();
        let mut by_node: BTreeMap<NodeId, Vec<Op>> = BTreeMap::new();
        for (p, ops) in writes {
            participants.insert(p.id(), p);
            by_node.entry(p.id()).or_default().extend(ops);
        }
        DistributedTransaction {
            txn,
            map_version,
            config: CoordinatorConfig::default(),
            participants,
            writes: by_node,
        }
    }

    /// Uses these timings instead of the defaults.
    pub fn with_config(mut self, config: CoordinatorConfig) -> Self {
        self.config = config;
        self
    }

    /// Runs two-phase commit (one phase for a single participant). `Ok` is
    /// the commit receipt, returned only when every participant returned a
    /// receipt equal to it; otherwise the transaction is aborted everywhere
    /// and the error says why ([`TxnError::is_retryable`] says whether to
    /// try again). [`TxnError::TimedOut`] after [`MAX_IDLE_ROUNDS`] silent
    /// retries: the primary's decision then stands and the participants
    /// that did not answer resolve it themselves.
    pub async fn execute(self) -> Result<Receipt, TxnError> {
        let txn = self.txn;
        let mut core = CoordinatorCore::new(self.config);
        let mut now = 0;
        core.begin(now, txn, self.map_version, self.writes)?;
        let mut idle = 0;
        loop {
            if let Some((_, result)) = core.take_completed().into_iter().find(|c| c.0 == txn) {
                return result;
            }
            let sends = core.take_effects().send;
            if sends.is_empty() {
                idle += 1;
                if idle > MAX_IDLE_ROUNDS {
                    return Err(TxnError::TimedOut(txn));
                }
                now += self.config.retry_ms;
                core.on_timer(now, CoordinatorTimer::Retry(txn));
                continue;
            }
            let calls = sends.into_iter().filter_map(|(to, message)| {
                let participant = *self.participants.get(&to)?;
                Some(async move { (to, call(participant, message).await) })
            });
            let mut answered = false;
            for (from, reply) in join_all(calls).await {
                if let Some(reply) = reply {
                    // A participant that could not be reached said nothing
                    // about the transaction: only other replies are
                    // progress, so that enough rounds of silence end the
                    // wait (`TimedOut`) instead of resending forever.
                    answered |= !matches!(
                        reply,
                        TxnMessage::Refused {
                            refusal: Refusal::Unavailable(_),
                            ..
                        }
                    );
                    core.on_message(from, reply);
                }
            }
            if answered {
                idle = 0;
            }
        }
    }
}
