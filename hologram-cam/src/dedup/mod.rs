//! The chapter's `DeduplicationNetwork`: each object held by N distinct
//! nodes of a consistent-hash ring, written to a majority, read from enough
//! copies that reads and writes meet, with reference counts (SPEC §8).

mod holder;
mod wire;

pub use holder::{DedupHandler, HandOff};
pub use wire::{DedupMessage, Reference, Request, MAX_MESSAGE_BYTES};

use crate::{CamError, HashRing, Object};
use futures::future::join_all;
use hologram_lattice::transport::{Protocol, Transport};
use hologram_lattice::{Address, PeerId};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What [`DeduplicationNetwork::store_unique`] did, as the chapter names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreResult {
    /// The object was already stored: one more reference was counted.
    Duplicate(Address),
    /// The object was stored; this many holders acknowledged (a majority).
    Stored(Address, usize),
    /// Fewer than a majority of holders acknowledged.
    Failed(Address),
}

/// What [`DeduplicationNetwork::release`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// Owners that acknowledged dropping the reference.
    pub acknowledged: usize,
    /// Whether the object was freed: every owner answered and none counts a
    /// reference any more.
    pub freed: bool,
}

/// A client of the deduplication network.
///
/// With replication factor `N`, the owners of an address are the first `N`
/// distinct nodes of the [`HashRing`] from it, the primary first. A write
/// succeeds when `W = N/2 + 1` owners acknowledge (more than half, the
/// chapter's rule); a read asks owners until one returns an object that
/// verifies, and also checks `R = N - W + 1` of them so it meets every
/// write quorum, repairing owners that lack the object or hold it corrupt.
pub struct DeduplicationNetwork<T: Transport + ?Sized> {
    transport: Arc<T>,
    ring: Arc<RwLock<HashRing>>,
    replication: usize,
    timeout: Duration,
    next_op: std::sync::atomic::AtomicU64,
    /// The references this client holds, oldest first, per address.
    held:
        std::sync::Mutex<std::collections::HashMap<Address, std::collections::VecDeque<Reference>>>,
}

impl<T: Transport + ?Sized> DeduplicationNetwork<T> {
    /// A client over `transport`, placing with `ring` (shared, so joins and
    /// leaves are seen), keeping `replication` copies (at least 1).
    pub fn new(transport: Arc<T>, ring: Arc<RwLock<HashRing>>, replication: usize) -> Self {
        Self {
            transport,
            ring,
            replication: replication.max(1),
            next_op: std::sync::atomic::AtomicU64::new(0),
            held: std::sync::Mutex::new(std::collections::HashMap::new()),
            timeout: Duration::from_secs(2),
        }
    }

    /// Sets the timeout of each request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The write quorum: `N/2 + 1`.
    pub fn write_quorum(&self) -> usize {
        self.replication / 2 + 1
    }

    /// The read quorum: `N - W + 1`, so that `R + W > N`.
    pub fn read_quorum(&self) -> usize {
        self.replication - self.write_quorum() + 1
    }

    /// The owners of `address`, primary first.
    pub fn owners(&self, address: &Address) -> Vec<PeerId> {
        self.ring
            .read()
            .map(|r| r.owners(address, self.replication))
            .unwrap_or_default()
    }

    /// Sends one request (numbered, so a duplicated delivery is applied once).
    async fn ask(&self, peer: PeerId, message: &DedupMessage) -> Option<DedupMessage> {
        let op = self
            .next_op
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let request = Request {
            op,
            message: message.clone(),
        }
        .encode();
        let answer = self
            .transport
            .request(peer, Protocol::DEDUP, request, self.timeout)
            .await
            .ok()?;
        DedupMessage::decode(&answer).ok()
    }

    /// Stores `data` once across the network: a duplicate only counts a
    /// reference; a new object goes to all `N` owners and succeeds on `W`
    /// acknowledgements.
    pub async fn store_unique(&self, data: Vec<u8>) -> StoreResult {
        let address = Address::of(&data);
        let owners = self.owners(&address);
        let reference = Reference {
            client: self.transport.local_id(),
            op: self
                .next_op
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        // Already held by a read quorum? Then it is a duplicate: count a reference.
        let has_message = DedupMessage::Has(address);
        let has = join_all(owners.iter().map(|&p| self.ask(p, &has_message))).await;
        let holds = |a: &Option<DedupMessage>| *a == Some(DedupMessage::HasAnswer(true));
        let holders = has.iter().filter(|a| holds(a)).count();
        let put = DedupMessage::Put {
            data,
            address,
            reference: Some(reference),
        };
        let duplicate = holders > 0 && holders >= self.read_quorum().min(owners.len());
        let acks = join_all(owners.iter().zip(&has).map(|(&p, h)| {
            let message = if duplicate && holds(h) {
                DedupMessage::AddRef(address, reference)
            } else {
                put.clone()
            };
            async move { self.ask(p, &message).await }
        }))
        .await;
        let acks = acks
            .iter()
            .filter(|a| matches!(a, Some(DedupMessage::Refs(_))))
            .count();
        if acks < self.write_quorum() {
            // Take back the reference where it was counted (best effort).
            self.drop_reference(&owners, address, reference).await;
            return StoreResult::Failed(address);
        }
        if let Ok(mut held) = self.held.lock() {
            held.entry(address).or_default().push_back(reference);
        }
        if duplicate {
            StoreResult::Duplicate(address)
        } else {
            StoreResult::Stored(address, acks)
        }
    }

    /// Sends `Release(address, reference)` to `owners`; returns the counts
    /// they answered with.
    async fn drop_reference(
        &self,
        owners: &[PeerId],
        address: Address,
        reference: Reference,
    ) -> Vec<u64> {
        let release = DedupMessage::Release(address, reference);
        let answers = join_all(owners.iter().map(|&p| self.ask(p, &release))).await;
        answers
            .iter()
            .filter_map(|a| match a {
                Some(DedupMessage::Refs(n)) => Some(*n),
                _ => None,
            })
            .collect()
    }

    /// Reads an object: asks the owners until one returns bytes that verify
    /// and at least `R` have answered, then writes it back (without a new
    /// reference) to owners that lacked it or answered with bad bytes.
    pub async fn get(&self, address: Address) -> Result<Object, CamError> {
        let owners = self.owners(&address);
        let mut found: Option<Object> = None;
        let mut answered = 0;
        let mut stale = Vec::new();
        for &peer in &owners {
            if found.is_some() && answered >= self.read_quorum() {
                break;
            }
            match self.ask(peer, &DedupMessage::Get(address)).await {
                Some(DedupMessage::Found(data)) => {
                    answered += 1;
                    match Object::verify(address, data) {
                        Ok(object) => found = found.or(Some(object)),
                        Err(_) => stale.push(peer),
                    }
                }
                Some(DedupMessage::NotFound) => {
                    answered += 1;
                    stale.push(peer);
                }
                _ => {}
            }
        }
        let object = found.ok_or(CamError::NotFound(address))?;
        if !stale.is_empty() {
            let repair = DedupMessage::Put {
                data: object.data().to_vec(),
                address,
                reference: None,
            };
            join_all(stale.iter().map(|&p| self.ask(p, &repair))).await;
        }
        Ok(object)
    }

    /// Drops this client's oldest reference to `address` at every owner
    /// (nothing happens if it holds none). The object is freed only when
    /// every owner answered and none counts a reference any more: a replica
    /// that missed a reference cannot free what others still count. When an
    /// owner is out, the object stays (it may leak; it is never lost).
    pub async fn release(&self, address: Address) -> Release {
        let reference = self.held.lock().ok().and_then(|mut held| {
            let queue = held.get_mut(&address)?;
            let r = queue.pop_front();
            if queue.is_empty() {
                held.remove(&address);
            }
            r
        });
        let Some(reference) = reference else {
            return Release {
                acknowledged: 0,
                freed: false,
            };
        };
        let owners = self.owners(&address);
        let counts = self.drop_reference(&owners, address, reference).await;
        let acknowledged = counts.len();
        let mut freed = false;
        if acknowledged == owners.len() && counts.iter().all(|&n| n == 0) {
            let free = DedupMessage::Free(address);
            let answers = join_all(owners.iter().map(|&p| self.ask(p, &free))).await;
            freed = answers
                .iter()
                .all(|a| *a == Some(DedupMessage::Freed(true)));
        }
        Release {
            acknowledged,
            freed,
        }
    }
}
