//! The holder side of the deduplication network: a store with reference counts.

use super::wire::{DedupMessage, Request};
use crate::HashRing;
use crate::{Object, Store};
use hologram_lattice::transport::{async_trait, Handler, HandlerError, Protocol, Transport};
use hologram_lattice::{Address, PeerId};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Serves the deduplication protocol from a [`Store`], counting references.
///
/// A `Put` with `add_ref` or an `AddRef` counts one more reference; a
/// `Release` drops one and removes the object when none remain; a count
/// never goes below zero (releasing an unknown object answers `NotFound`).
/// Every `Put` is verified against its address before it is stored. The
/// counts live in memory: after a restart, objects in the store are counted
/// as holding one reference.
pub struct DedupHandler<S: Store> {
    store: Arc<S>,
    refs: Mutex<HashMap<Address, u64>>,
    applied: Mutex<Applied>,
    next_op: AtomicU64,
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

    /// The references counted for `address` (0 when not held).
    pub async fn refs(&self, address: &Address) -> u64 {
        let counted = self.refs.lock().ok().and_then(|r| r.get(address).copied());
        match counted {
            Some(n) => n,
            None => u64::from(self.store.contains(address).await.unwrap_or(false)),
        }
    }

    /// Adds `delta` references to a held object, starting from what
    /// [`DedupHandler::refs`] says; returns the new count.
    async fn add(&self, address: Address, delta: u64) -> Result<u64, HandlerError> {
        let base = self.refs(&address).await;
        let mut refs = self
            .refs
            .lock()
            .map_err(|_| HandlerError::Failed("refs poisoned".into()))?;
        let n = refs.entry(address).or_insert(base);
        *n = n.saturating_add(delta).max(1);
        Ok(*n)
    }

    async fn answer(&self, message: DedupMessage) -> Result<DedupMessage, HandlerError> {
        let failed = |e: crate::CamError| HandlerError::Failed(e.to_string());
        Ok(match message {
            DedupMessage::Put {
                data,
                address,
                add_ref,
            } => {
                let object = Object::verify(address, data)
                    .map_err(|e| HandlerError::Refused(e.to_string()))?;
                let had = self.store.contains(&address).await.map_err(failed)?;
                if !had {
                    self.store.put(object).await.map_err(failed)?;
                }
                let refs = if add_ref && had {
                    self.add(address, 1).await?
                } else {
                    self.add(address, 0).await?
                };
                DedupMessage::Refs(refs)
            }
            DedupMessage::Adopt {
                data,
                address,
                refs,
            } => {
                let object = Object::verify(address, data)
                    .map_err(|e| HandlerError::Refused(e.to_string()))?;
                if !self.store.contains(&address).await.map_err(failed)? {
                    self.store.put(object).await.map_err(failed)?;
                }
                let now = self.add(address, 0).await?.max(refs);
                if let Ok(mut counts) = self.refs.lock() {
                    counts.insert(address, now);
                }
                DedupMessage::Refs(now)
            }
            DedupMessage::AddRef(address) => {
                if self.store.contains(&address).await.map_err(failed)? {
                    DedupMessage::Refs(self.add(address, 1).await?)
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
            DedupMessage::Release(address) => {
                let held = self.refs(&address).await;
                if held == 0 {
                    DedupMessage::NotFound
                } else {
                    let remaining = held - 1;
                    if let Ok(mut refs) = self.refs.lock() {
                        if remaining == 0 {
                            refs.remove(&address);
                        } else {
                            refs.insert(address, remaining);
                        }
                    }
                    if remaining == 0 {
                        self.store.remove(&address).await.map_err(failed)?;
                    }
                    DedupMessage::Released(remaining)
                }
            }
            other => return Err(HandlerError::Refused(format!("not a request: {other:?}"))),
        })
    }
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
    /// owners that are new, with its reference count. The owners that leave
    /// an object's set send it (and remove their copy only once every new
    /// owner adopted it, so no acknowledged copy is lost in the move); when
    /// none leaves, the old primary sends it.
    pub async fn hand_off<T: Transport + ?Sized>(
        &self,
        me: PeerId,
        transport: &T,
        before: &HashRing,
        after: &HashRing,
        replication: usize,
        timeout: Duration,
    ) -> Result<HandOff, crate::CamError> {
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
                let refs = self.refs(&address).await.max(1);
                let adopt = Request {
                    op: self.next_op.fetch_add(1, Ordering::Relaxed),
                    message: DedupMessage::Adopt {
                        data: object.data().to_vec(),
                        address,
                        refs,
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
                    if let Ok(mut counts) = self.refs.lock() {
                        counts.remove(&address);
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
                | DedupMessage::AddRef(_)
                | DedupMessage::Release(_)
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
        let answer = self.answer(message).await?;
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
