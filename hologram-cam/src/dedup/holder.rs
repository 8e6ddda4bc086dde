//! The holder side of the deduplication network: a store with reference sets.

use super::locks::AddressLocks;
use super::references::{MemoryReferences, ReferenceSet, ReferenceStore};
use super::wire::{BatchedPut, DedupMessage, Kept, Request, MAX_BATCH};
use crate::hashing::FastMap;
use crate::{CamError, HashRing, Object, SharedBytes, Store};
use hologram_lattice::telemetry::LogLimit;
use hologram_lattice::transport::{async_trait, Handler, HandlerError, Protocol, Service};
use hologram_lattice::{Address, PeerId};
use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// Serves the deduplication protocol from a [`Store`], counting references
/// in a [`ReferenceStore`].
///
/// References are sets, not counters: each is a [`Reference`](super::Reference) (client and
/// operation number), added once however often it arrives and never again
/// once released (see [`ReferenceSet`]). A holder never removes an object
/// on its own: a `Free` removes it only when the holder counts no
/// reference, and the client sends `Free` only when every owner said it
/// counts none (see
/// [`DeduplicationNetwork::release`](crate::DeduplicationNetwork::release)).
/// So a replica that missed a reference cannot free an object that others
/// still count, and a count can never go below zero. Every `Put` and `Adopt`
/// is verified against its address before anything is stored.
///
/// **Concurrency.** Requests that change one object are applied one at a
/// time (an async lock per address), and each `(sender, op)` once: a
/// repeat, even one delivered concurrently on another thread, waits for the
/// first copy and gets its answer (a window of the last 65,536 answers is
/// kept). Requests about different objects run in parallel.
///
/// **Restarts.** With [`DedupHandler::new`] the reference sets live in
/// memory: after a restart, an object in the store that the holder has no
/// record of counts as one unknown reference, which keeps it from being
/// freed (it may leak; it is never lost). With a durable
/// [`ReferenceStore`] ([`DedupHandler::durable`] over a
/// [`RedbStore`](crate::RedbStore)), a restarted holder counts exactly the
/// references it acknowledged.
pub struct DedupHandler<S: Store, R: ReferenceStore = MemoryReferences> {
    pub(super) store: Arc<S>,
    pub(super) references: Arc<R>,
    pub(super) locks: AddressLocks,
    /// By shard (the operation number modulo [`APPLIED_SHARDS`]).
    applied: [Mutex<Applied>; APPLIED_SHARDS],
    pub(super) next_op: AtomicU64,
    /// The ring and replication factor that anti-entropy compares by, if
    /// set ([`DedupHandler::with_ring`]).
    pub(super) placement: Option<(PeerId, Arc<RwLock<HashRing>>, usize)>,
}

/// Answers to recent mutating requests, by (sender, op): a bounded window.
#[derive(Default)]
struct Applied {
    answers: FastMap<(PeerId, u64), Answer>,
    order: VecDeque<(PeerId, u64)>,
}

/// A mutating request's answer, as the window keeps it: 16 bytes rather
/// than a whole message, so the window of every recent request stays small
/// enough to be looked up without a trip to memory for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Held { refs: u64, before: bool },
    Refs(u64),
    NotFound,
    Freed(bool),
}

impl Answer {
    /// The answer of `message`, if it is one a mutating request gets.
    fn of(message: &DedupMessage) -> Option<Self> {
        Some(match *message {
            DedupMessage::Held { refs, before } => Answer::Held { refs, before },
            DedupMessage::Refs(refs) => Answer::Refs(refs),
            DedupMessage::NotFound => Answer::NotFound,
            DedupMessage::Freed(freed) => Answer::Freed(freed),
            _ => return None,
        })
    }

    fn message(self) -> DedupMessage {
        match self {
            Answer::Held { refs, before } => DedupMessage::Held { refs, before },
            Answer::Refs(refs) => DedupMessage::Refs(refs),
            Answer::NotFound => DedupMessage::NotFound,
            Answer::Freed(freed) => DedupMessage::Freed(freed),
        }
    }
}

impl Applied {
    fn remember(&mut self, key: (PeerId, u64), answer: Answer) {
        if self.answers.insert(key, answer).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > APPLIED_WINDOW / APPLIED_SHARDS {
            if let Some(old) = self.order.pop_front() {
                self.answers.remove(&old);
            }
        }
    }
}

/// Logs of rotten reference sets: at most this many a second per process.
static ROTTEN_REFERENCES_LOG: LogLimit = LogLimit::new(10, 1_000);

/// How many recent mutating requests a holder remembers.
const APPLIED_WINDOW: usize = 1 << 16;

/// The window is cut into this many parts, each behind its own mutex and
/// keeping its share of the window.
const APPLIED_SHARDS: usize = 16;

impl<S: Store> DedupHandler<S> {
    /// A holder over `store`, its reference sets in memory.
    pub fn new(store: Arc<S>) -> Self {
        Self::with_references(store, Arc::new(MemoryReferences::new()))
    }
}

impl<S: Store + ReferenceStore> DedupHandler<S, S> {
    /// A holder whose store keeps its reference sets too (a
    /// [`RedbStore`](crate::RedbStore): objects and references in one
    /// durable file).
    pub fn durable(store: Arc<S>) -> Self {
        Self::with_references(Arc::clone(&store), store)
    }
}

impl<S: Store, R: ReferenceStore> DedupHandler<S, R> {
    /// A holder over `store`, keeping reference sets in `references`.
    pub fn with_references(store: Arc<S>, references: Arc<R>) -> Self {
        Self {
            store,
            references,
            locks: AddressLocks::default(),
            applied: Default::default(),
            next_op: AtomicU64::new(super::network::random_op_start()),
            placement: None,
        }
    }

    /// This holder is `me` on `ring` (shared, so that joins and leaves are
    /// seen), where objects have `replication` owners, as the network's
    /// clients place them: what [`anti_entropy`](Self::anti_entropy)
    /// compares with a ring neighbour, and what this holder answers a
    /// neighbour's comparison with. A holder without a ring refuses
    /// anti-entropy requests.
    pub fn with_ring(
        mut self,
        me: PeerId,
        ring: Arc<RwLock<HashRing>>,
        replication: usize,
    ) -> Self {
        self.placement = Some((me, ring, replication.max(1)));
        self
    }

    /// The references counted for `address`: 0 when not held, 1 for a held
    /// object the holder has no record of.
    pub async fn refs(&self, address: &Address) -> Result<u64, CamError> {
        if !self.store.contains(address).await? {
            return Ok(0);
        }
        Ok(self
            .load_references(address)
            .await?
            .map_or(1, |set| set.count()))
    }

    /// The reference set recorded for `address`. A record that does not
    /// decode ([`CamError::CorruptReferences`]) twice in a row (it rotted;
    /// once may be a flip on the way) is never trusted: it is forgotten, so
    /// the object counts as held without a record, as after a crash between
    /// the object and its set: one unknown reference, never freed (a leak,
    /// never a loss).
    pub(super) async fn load_references(
        &self,
        address: &Address,
    ) -> Result<Option<ReferenceSet>, CamError> {
        let first = self.references.load(address).await;
        let again = match first {
            Err(CamError::CorruptReferences { .. }) => self.references.load(address).await,
            other => return other,
        };
        match again {
            Err(CamError::CorruptReferences { source, .. }) => {
                if let Some(dropped) = ROTTEN_REFERENCES_LOG.allow() {
                    tracing::warn!(%address, error = %source, dropped,
                        "a rotten reference set: forgotten, the object counts unknown references");
                }
                ::metrics::counter!("hologram_dedup_rotten_reference_sets_total").increment(1);
                self.references.forget(address).await?;
                Ok(None)
            }
            other => other,
        }
    }

    /// Changes the reference set of `address` with `change`; returns the
    /// live count. The caller holds the address's lock.
    async fn update(
        &self,
        address: &Address,
        change: impl FnOnce(&mut ReferenceSet) -> u64 + Send,
    ) -> Result<u64, HandlerError> {
        let mut change = Some(change);
        let first = self
            .references
            .update(address, &mut |set: &mut ReferenceSet| {
                if let Some(change) = change.take() {
                    change(set);
                }
            })
            .await;
        match first {
            // A rotten record is forgotten (see `load_references`), then
            // the change is made to no record, unless it was made already.
            Err(CamError::CorruptReferences { .. }) if change.is_some() => {
                self.load_references(address).await.map_err(failed)?;
                let mut change = change.take();
                self.references
                    .update(address, &mut |set: &mut ReferenceSet| {
                        if let Some(change) = change.take() {
                            change(set);
                        }
                    })
                    .await
            }
            other => other,
        }
        .map_err(failed)
    }

    /// Stores a verified object if absent; returns whether it was present.
    async fn hold(&self, address: Address, data: SharedBytes) -> Result<bool, HandlerError> {
        let object =
            Object::verify(address, data).map_err(|e| HandlerError::Refused(e.to_string()))?;
        let before = self.store.contains(&address).await.map_err(failed)?;
        if !before {
            self.store.put(object).await.map_err(failed)?;
        }
        Ok(before)
    }

    /// Holds a verified object with another holder's references (merged
    /// into this holder's, or, when that holder had no record, counted as
    /// unknown so that the object is never freed); returns the live count.
    /// The caller holds the address's lock.
    pub(super) async fn adopt(
        &self,
        address: Address,
        references: Option<ReferenceSet>,
        data: SharedBytes,
    ) -> Result<u64, HandlerError> {
        self.hold(address, data).await?;
        Ok(match references {
            Some(references) => self.update(&address, |set| set.merge(references)).await?,
            // Unknown references: no record, so never freed.
            None => {
                self.references.forget(&address).await.map_err(failed)?;
                1
            }
        })
    }

    /// Applies one mutating request; the caller holds the address's lock.
    async fn apply(&self, message: DedupMessage) -> Result<DedupMessage, HandlerError> {
        Ok(match message {
            DedupMessage::Put {
                address,
                reference,
                data,
            } => {
                let before = self.hold(address, data).await?;
                ::metrics::counter!("hologram_dedup_puts_total").increment(1);
                if before {
                    ::metrics::counter!("hologram_dedup_duplicates_total").increment(1);
                }
                let refs = self.update(&address, |set| set.add(reference)).await?;
                DedupMessage::Held { refs, before }
            }
            DedupMessage::Adopt {
                address,
                references,
                data,
            } => DedupMessage::Refs(self.adopt(address, references, data).await?),
            DedupMessage::AddRef(address, r) => {
                if !self.store.contains(&address).await.map_err(failed)? {
                    return Ok(DedupMessage::NotFound);
                }
                DedupMessage::Refs(self.update(&address, |set| set.add([r])).await?)
            }
            DedupMessage::Release(address, r) => {
                if !self.store.contains(&address).await.map_err(failed)? {
                    return Ok(DedupMessage::NotFound);
                }
                let Some(mut set) = self.load_references(&address).await.map_err(failed)? else {
                    // Held without a record (after a crash): count unknown.
                    return Ok(DedupMessage::Refs(1));
                };
                let refs = set.release(r);
                self.references.save(&address, &set).await.map_err(failed)?;
                DedupMessage::Refs(refs)
            }
            DedupMessage::Free(address) => {
                let set = self.load_references(&address).await.map_err(failed)?;
                let free = set.is_some_and(|s| s.count() == 0);
                if free {
                    // The object first: a crash in between leaves a record
                    // without an object, which is ignored.
                    self.store.remove(&address).await.map_err(failed)?;
                    self.references.forget(&address).await.map_err(failed)?;
                }
                DedupMessage::Freed(free)
            }
            other => return Err(HandlerError::Refused(format!("not a mutation: {other:?}"))),
        })
    }

    /// Answers a request from `from` that changes nothing.
    async fn read(
        &self,
        from: PeerId,
        message: DedupMessage,
    ) -> Result<DedupMessage, HandlerError> {
        Ok(match message {
            DedupMessage::Has(address) => {
                DedupMessage::HasAnswer(self.store.contains(&address).await.map_err(failed)?)
            }
            DedupMessage::Get(address) => {
                ::metrics::counter!("hologram_dedup_gets_total").increment(1);
                match self.store.get(&address).await {
                    Ok(Some(object)) => DedupMessage::Found(object.shared_data()),
                    Ok(None) => DedupMessage::NotFound,
                    Err(CamError::Corrupt(_)) => {
                        self.drop_corrupt(address).await.map_err(failed)?;
                        DedupMessage::Corrupt
                    }
                    Err(e) => return Err(failed(e)),
                }
            }
            DedupMessage::Digests(ranges) => self.answer_digests(from, ranges).await?,
            DedupMessage::List(range) => self.answer_list(from, range).await?,
            DedupMessage::Fetch(addresses) => self.answer_fetch(addresses).await?,
            other => return Err(HandlerError::Refused(format!("not a request: {other:?}"))),
        })
    }

    fn applied(&self, (_, op): &(PeerId, u64)) -> std::sync::MutexGuard<'_, Applied> {
        // Each critical section is one map operation.
        self.applied[(op % APPLIED_SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one decoded request from `from`.
    pub(super) async fn answer(
        &self,
        from: PeerId,
        Request { op, message }: Request,
    ) -> Result<DedupMessage, HandlerError> {
        if let DedupMessage::PutMany { puts, data } = message {
            // Boxed, so that a single request's future (moved to the heap
            // on every call) does not carry the size of a batch's.
            return Box::pin(self.put_many(from, puts, data)).await;
        }
        match message.mutated() {
            Some(address) => self.once((from, op), address, message).await,
            None => self.read(from, message).await,
        }
    }

    /// Applies the mutation `key` of `address` unless it was applied
    /// already, in which case it answers as the first time. Copies of one
    /// request name one address: the lock orders them, and all but the first
    /// find its answer.
    async fn once(
        &self,
        key: (PeerId, u64),
        address: Address,
        message: DedupMessage,
    ) -> Result<DedupMessage, HandlerError> {
        let _guard = self.locks.lock(address).await;
        if let Some(earlier) = self.applied(&key).answers.get(&key).copied() {
            return Ok(earlier.message());
        }
        let answer = self.apply(message).await?;
        // Every mutation answers with one of the kept kinds (`apply`).
        if let Some(kept) = Answer::of(&answer) {
            self.applied(&key).remember(key, kept);
        }
        Ok(answer)
    }

    /// Applies each put of a batch as a `Put` numbered with its own op.
    async fn put_many(
        &self,
        from: PeerId,
        puts: Vec<BatchedPut>,
        data: SharedBytes,
    ) -> Result<DedupMessage, HandlerError> {
        let total: u64 = puts.iter().map(|p| u64::from(p.len)).sum();
        if puts.len() > MAX_BATCH || total != data.len() as u64 {
            return Err(HandlerError::Refused(format!(
                "a batch of {} puts of {total} bytes with {} bytes of data (at most {MAX_BATCH} puts)",
                puts.len(),
                data.len()
            )));
        }
        let mut kept = Vec::with_capacity(puts.len());
        let mut rest: &[u8] = &data;
        for put in puts {
            // The lengths add up to the data's, so every split is in range.
            let (bytes, tail) = rest.split_at((put.len as usize).min(rest.len()));
            rest = tail;
            let message = DedupMessage::Put {
                address: put.address,
                reference: put.reference,
                data: bytes.into(),
            };
            kept.push(
                match self.once((from, put.op), put.address, message).await {
                    Ok(DedupMessage::Held { refs, before }) => Some(Kept { refs, before }),
                    _ => None,
                },
            );
        }
        Ok(DedupMessage::HeldMany(kept))
    }
}

pub(super) fn failed(e: CamError) -> HandlerError {
    HandlerError::Failed(e.to_string())
}

#[async_trait]
impl<S: Store + 'static, R: ReferenceStore + 'static> Handler for DedupHandler<S, R> {
    async fn request(
        &self,
        from: PeerId,
        _protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        let request =
            Request::decode_owned(payload).map_err(|e| HandlerError::Refused(e.to_string()))?;
        Ok(self.answer(from, request).await?.encode())
    }

    async fn message(&self, _from: PeerId, _protocol: Protocol, _payload: Vec<u8>) {}
}

impl<S: Store + 'static, R: ReferenceStore + 'static> Service for DedupHandler<S, R> {
    fn protocol(&self) -> Protocol {
        crate::DEDUP_PROTOCOL
    }
}
