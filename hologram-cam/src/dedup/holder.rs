//! The holder side of the deduplication network: a store with reference sets.

use super::wire::{DedupMessage, Reference, Request};
use crate::HashRing;
use crate::{CamError, Object, Store};
use hologram_lattice::transport::{async_trait, Handler, HandlerError, Protocol, Transport};
use hologram_lattice::{Address, PeerId};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Serves the deduplication protocol from a [`Store`], counting references.
///
/// References are sets, not counters: each is a [`Reference`] (client and
/// operation number), added once however often it arrives and never again
/// once released (released references are remembered as tombstones). A
/// holder never removes an object on its own: a `Free` removes it only when
/// the holder counts no reference, and the client sends `Free` only when
/// every owner said it counts none (see
/// [`DeduplicationNetwork::release`](super::DeduplicationNetwork::release)).
/// So a replica that missed a reference cannot free an object that others
/// still count, and a count can never go below zero. Every `Put` and `Adopt`
/// is verified against its address before anything is stored.
///
/// The sets live in memory. After a restart, an object in the store that
/// the holder has no record of counts as one unknown reference, which keeps
/// it from being freed (it may leak; it is never lost).
pub struct DedupHandler<S: Store> {
    store: Arc<S>,
    refs: Mutex<HashMap<Address, Counted>>,
    applied: Mutex<Applied>,
    next_op: AtomicU64,
}

/// The references of one object.
#[derive(Debug, Default, Clone)]
struct Counted {
    live: BTreeSet<Reference>,
    released: BTreeSet<Reference>,
}

impl Counted {
    /// Counts the references not released before; returns the live count.
    fn add(&mut self, references: impl IntoIterator<Item = Reference>) -> u64 {
        for r in references {
            if !self.released.contains(&r) {
                self.live.insert(r);
            }
        }
        self.live.len() as u64
    }
}

/// Answers to recent mutating requests, by (sender, op): a bounded window.
#[derive(Default)]
struct Applied {
    answers: HashMap<(PeerId, u64), DedupMessage>,
    order: VecDeque<(PeerId, u64)>,
}

/// How many recent mutating requests a holder remembers.
const APPLIED_WINDOW: usize = 1 << 16;

impl<S: Store> DedupHandler<S> {
    /// A holder over `store`.
    pub fn new(store: Arc<S>) -> Self {
        Self {
            store,
            refs: Mutex::new(HashMap::new()),
            applied: Mutex::new(Applied::default()),
            next_op: AtomicU64::new(0),
        }
    }

    /// The references counted for `address`: 0 when not held, 1 for a held
    /// object the holder has no record of (after a restart).
    pub async fn refs(&self, address: &Address) -> u64 {
        let counted = self
            .refs
            .lock()
            .ok()
            .and_then(|r| r.get(address).map(|c| c.live.len() as u64));
        match counted {
            Some(n) => n,
            None => u64::from(self.store.contains(address).await.unwrap_or(false)),
        }
    }

    /// Runs `f` on the record of `address` (created empty if missing).
    fn with_record<R>(
        &self,
        address: Address,
        f: impl FnOnce(&mut Counted) -> R,
    ) -> Result<R, HandlerError> {
        let mut refs = self
            .refs
            .lock()
            .map_err(|_| HandlerError::Failed("references poisoned".into()))?;
        Ok(f(refs.entry(address).or_default()))
    }

    /// Stores a verified object if absent, and makes sure it has a record.
    async fn hold(&self, address: Address, data: Vec<u8>) -> Result<(), HandlerError> {
        let object =
            Object::verify(address, data).map_err(|e| HandlerError::Refused(e.to_string()))?;
        if !self.store.contains(&address).await.map_err(failed)? {
            self.store.put(object).await.map_err(failed)?;
        }
        self.with_record(address, |_| ())
    }

    async fn answer(&self, message: DedupMessage) -> Result<DedupMessage, HandlerError> {
        Ok(match message {
            DedupMessage::Put {
                data,
                address,
                reference,
            } => {
                self.hold(address, data).await?;
                DedupMessage::Refs(self.with_record(address, |c| c.add(reference))?)
            }
            DedupMessage::Adopt {
                data,
                address,
                references,
            } => {
                self.hold(address, data).await?;
                DedupMessage::Refs(self.with_record(address, |c| c.add(references))?)
            }
            DedupMessage::AddRef(address, r) => {
                if self.store.contains(&address).await.map_err(failed)? {
                    DedupMessage::Refs(self.with_record(address, |c| c.add([r]))?)
                } else {
                    DedupMessage::NotFound
                }
            }
            DedupMessage::Has(address) => {
                DedupMessage::HasAnswer(self.store.contains(&address).await.map_err(failed)?)
            }
            DedupMessage::Get(address) => match self.store.get(&address).await.map_err(failed)? {
                Some(object) => DedupMessage::Found(object.data().to_vec()),
                None => DedupMessage::NotFound,
            },
            other => return Err(HandlerError::Refused(format!("not a request: {other:?}"))),
        })
    }

    /// `Release` and `Free`, then everything else.
    async fn answer_mutation(&self, message: DedupMessage) -> Result<DedupMessage, HandlerError> {
        match message {
            DedupMessage::Release(address, r) => {
                if !self.store.contains(&address).await.map_err(failed)? {
                    return Ok(DedupMessage::NotFound);
                }
                let known = self
                    .refs
                    .lock()
                    .ok()
                    .is_some_and(|refs| refs.contains_key(&address));
                if !known {
                    // Held without a record (after a restart): count unknown.
                    return Ok(DedupMessage::Refs(1));
                }
                Ok(DedupMessage::Refs(self.with_record(address, |c| {
                    c.live.remove(&r);
                    c.released.insert(r);
                    c.live.len() as u64
                })?))
            }
            DedupMessage::Free(address) => {
                let free = self
                    .refs
                    .lock()
                    .map_err(|_| HandlerError::Failed("references poisoned".into()))?
                    .get(&address)
                    .is_some_and(|c| c.live.is_empty());
                if free {
                    self.store.remove(&address).await.map_err(failed)?;
                    if let Ok(mut refs) = self.refs.lock() {
                        refs.remove(&address);
                    }
                }
                Ok(DedupMessage::Freed(free))
            }
            other => self.answer(other).await,
        }
    }
}

fn failed(e: CamError) -> HandlerError {
    HandlerError::Failed(e.to_string())
}

/// What one [`DedupHandler::hand_off`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandOff {
    /// Objects this node keeps (whether or not their owners changed).
    pub kept: usize,
    /// Copies new owners adopted.
    pub copied: usize,
    /// Objects this node no longer owns, removed after every owner adopted them.
    pub moved: usize,
    /// Objects it no longer owns but kept, because an owner did not adopt.
    pub pending: usize,
}

impl<S: Store> DedupHandler<S> {
    /// After the ring changed from `before` to `after`: pages through the
    /// store and moves only the objects whose owners changed, each to the
    /// owners that are new, with its references. The owners that leave an
    /// object's set send it (and remove their copy only once every new owner
    /// adopted it, so no acknowledged copy is lost in the move); when none
    /// leaves, the old primary sends it.
    pub async fn hand_off<T: Transport + ?Sized>(
        &self,
        me: PeerId,
        transport: &T,
        before: &HashRing,
        after: &HashRing,
        replication: usize,
        timeout: Duration,
    ) -> Result<HandOff, CamError> {
        let mut report = HandOff::default();
        let mut cursor = None;
        loop {
            let page = self.store.scan(cursor, 256).await?;
            let Some(&last) = page.last() else { break };
            cursor = Some(last);
            for address in page {
                let (old, new) = (
                    before.owners(&address, replication),
                    after.owners(&address, replication),
                );
                let leaving = !new.contains(&me);
                let someone_leaves = old.iter().any(|o| !new.contains(o));
                let sends = leaving || (!someone_leaves && old.first() == Some(&me));
                if old == new || !sends {
                    report.kept += usize::from(!leaving);
                    continue;
                }
                let Some(object) = self.store.get(&address).await? else {
                    continue;
                };
                let references: Vec<Reference> = self
                    .refs
                    .lock()
                    .ok()
                    .and_then(|r| r.get(&address).map(|c| c.live.iter().copied().collect()))
                    .unwrap_or_default();
                let adopt = Request {
                    op: self.next_op.fetch_add(1, Ordering::Relaxed),
                    message: DedupMessage::Adopt {
                        data: object.data().to_vec(),
                        address,
                        references,
                    },
                }
                .encode();
                let targets: Vec<PeerId> = new
                    .iter()
                    .copied()
                    .filter(|o| *o != me && !old.contains(o))
                    .collect();
                let mut adopted = 0;
                for &owner in &targets {
                    let answer = transport
                        .request(owner, Protocol::DEDUP, adopt.clone(), timeout)
                        .await;
                    if let Ok(Ok(DedupMessage::Refs(_))) = answer.map(|a| DedupMessage::decode(&a))
                    {
                        adopted += 1;
                        report.copied += 1;
                    }
                }
                if !leaving {
                    report.kept += 1;
                } else if adopted == targets.len() {
                    self.store.remove(&address).await?;
                    if let Ok(mut refs) = self.refs.lock() {
                        refs.remove(&address);
                    }
                    report.moved += 1;
                } else {
                    report.pending += 1;
                }
            }
        }
        Ok(report)
    }
}

#[async_trait]
impl<S: Store + 'static> Handler for DedupHandler<S> {
    async fn request(
        &self,
        from: PeerId,
        _protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        let Request { op, message } =
            Request::decode(&payload).map_err(|e| HandlerError::Refused(e.to_string()))?;
        let mutating = matches!(
            message,
            DedupMessage::Put { .. }
                | DedupMessage::Adopt { .. }
                | DedupMessage::AddRef(..)
                | DedupMessage::Release(..)
                | DedupMessage::Free(_)
        );
        if !mutating {
            return Ok(self.answer(message).await?.encode());
        }
        let key = (from, op);
        let earlier = self
            .applied
            .lock()
            .ok()
            .and_then(|a| a.answers.get(&key).cloned());
        if let Some(earlier) = earlier {
            return Ok(earlier.encode());
        }
        let answer = self.answer_mutation(message).await?;
        if let Ok(mut applied) = self.applied.lock() {
            applied.answers.insert(key, answer.clone());
            applied.order.push_back(key);
            while applied.order.len() > APPLIED_WINDOW {
                if let Some(old) = applied.order.pop_front() {
                    applied.answers.remove(&old);
                }
            }
        }
        Ok(answer.encode())
    }

    async fn message(&self, _from: PeerId, _protocol: Protocol, _payload: Vec<u8>) {}
}
