//! [`DeduplicationNetwork`]: the client side of the dedup protocol.

use super::wire::*;
use crate::hashing::FastMap;
use crate::{CamError, HashRing, Object, SharedBytes};
use futures::future::{join, join_all};
use hologram_lattice::transport::Transport;
use hologram_lattice::{Address, PeerId};
use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The default [`DeduplicationNetwork::with_direct_put_bytes`]: 64 KiB.
pub const DIRECT_PUT_BYTES: usize = 64 << 10;

/// A random first operation number, so that a restarted client or holder
/// does not reuse the numbers (and so the [`Reference`]s) of its earlier
/// life, which holders remember as applied or released. Drawn from `std`'s
/// randomly keyed `RandomState`: 64 random bits, so two lives' ranges of
/// numbers overlap with negligible probability.
pub(crate) fn random_op_start() -> u64 {
    RandomState::new().hash_one(0x6465_6475_7020_6f70_u64)
}

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
///
/// A store of an object up to [`DIRECT_PUT_BYTES`] (configurable) is one
/// round: the object goes to every owner with the reference, and each
/// answers whether it held the object already. A larger object first asks
/// who has it, and sends its bytes only to owners that lack it.
/// [`store_many`](Self::store_many) stores many objects with one request
/// per owner (a `PutMany`), each object applied and answered on its own.
///
/// The client is `Sync`: share it between tasks and threads to run many
/// operations at once. Each request is numbered (from a random start, so a
/// restarted client never reuses a number), and a holder applies each
/// number once.
pub struct DeduplicationNetwork {
    pub(super) transport: Arc<dyn Transport>,
    ring: Arc<RwLock<HashRing>>,
    replication: usize,
    timeout: Duration,
    pub(super) direct_put_bytes: usize,
    next_op: AtomicU64,
    /// The references this client holds, oldest first, per address.
    held: Mutex<FastMap<Address, VecDeque<Reference>>>,
}

impl DeduplicationNetwork {
    /// A client over `transport`, placing with `ring` (shared, so joins and
    /// leaves are seen), keeping `replication` copies (at least 1).
    pub fn new(
        transport: Arc<dyn Transport>,
        ring: Arc<RwLock<HashRing>>,
        replication: usize,
    ) -> Self {
        Self {
            transport,
            ring,
            replication: replication.max(1),
            timeout: Duration::from_secs(2),
            direct_put_bytes: DIRECT_PUT_BYTES,
            next_op: AtomicU64::new(random_op_start()),
            held: Mutex::new(FastMap::default()),
        }
    }

    /// Sets the timeout of each request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Numbers this client's requests from `op` on, instead of from a
    /// random start: for a deterministic simulation, where the seed must
    /// fix every byte sent. Holders apply each number of a client once, so a
    /// client that starts again under the same id must start past every
    /// number its earlier lives used.
    pub fn with_first_op(self, op: u64) -> Self {
        self.next_op.store(op, Ordering::Relaxed);
        self
    }

    /// Objects up to `bytes` are stored in one round (sent to every owner
    /// at once); larger ones ask first who has them.
    pub fn with_direct_put_bytes(mut self, bytes: usize) -> Self {
        self.direct_put_bytes = bytes;
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

    pub(super) fn next_op(&self) -> u64 {
        self.next_op.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `message` to every peer of `peers` as one numbered request
    /// (encoded once; each holder sees the number once); the answers in
    /// the order of `peers`, `None` where a peer failed or answered garbage.
    pub(super) async fn ask_all(
        &self,
        peers: &[PeerId],
        message: DedupMessage,
    ) -> Vec<Option<DedupMessage>> {
        let request = Request {
            op: self.next_op(),
            message,
        }
        .encode();
        // Each peer owns its copy; the last takes the original.
        let mut copies: Vec<Vec<u8>> = (1..peers.len()).map(|_| request.clone()).collect();
        copies.push(request);
        join_all(peers.iter().zip(copies).map(|(&peer, request)| async move {
            let answer = self
                .transport
                .request(peer, crate::DEDUP_PROTOCOL, request, self.timeout)
                .await
                .ok()?;
            DedupMessage::decode_owned(answer).ok()
        }))
        .await
    }

    /// Stores `data` once across the network: a duplicate only counts a
    /// reference; a new object goes to all `N` owners and succeeds on `W`
    /// acknowledgements. It is a duplicate when at least `R` owners held it
    /// before.
    pub async fn store_unique(&self, data: impl Into<SharedBytes>) -> StoreResult {
        let data: SharedBytes = data.into();
        let address = Address::of(&data);
        let owners = self.owners(&address);
        let reference = Reference {
            client: self.transport.local_id(),
            op: self.next_op(),
        };
        let (answers, had) = if data.len() <= self.direct_put_bytes {
            let put = DedupMessage::Put {
                address,
                reference: Some(reference),
                data,
            };
            let answers = self.ask_all(&owners, put).await;
            let had = answers
                .iter()
                .map(|a| matches!(a, Some(DedupMessage::Held { before: true, .. })))
                .collect();
            (answers, had)
        } else {
            self.probe_then_store(&owners, address, reference, data)
                .await
        };
        let had = had.iter().filter(|&&h| h).count();
        let acks = answers
            .iter()
            .filter(|a| matches!(a, Some(DedupMessage::Held { .. } | DedupMessage::Refs(_))))
            .count();
        self.settle(&owners, address, reference, acks, had).await
    }

    /// The result of a store that `acks` owners acknowledged, `had` of
    /// which held the object before: with fewer than `W` acknowledgements
    /// it failed, and the reference is taken back where it was counted (best
    /// effort); otherwise the client holds the reference, and the object was
    /// a duplicate if at least `R` owners had it.
    pub(super) async fn settle(
        &self,
        owners: &[PeerId],
        address: Address,
        reference: Reference,
        acks: usize,
        had: usize,
    ) -> StoreResult {
        if acks < self.write_quorum() {
            self.drop_reference(owners, address, reference).await;
            return StoreResult::Failed(address);
        }
        if let Ok(mut held) = self.held.lock() {
            held.entry(address).or_default().push_back(reference);
        }
        if had > 0 && had >= self.read_quorum().min(owners.len()) {
            StoreResult::Duplicate(address)
        } else {
            StoreResult::Stored(address, acks)
        }
    }

    /// The two-round store of a large object: who has it? Then a reference
    /// to those that do, the bytes to those that do not. Returns the
    /// answers, per owner, and which owners had it.
    async fn probe_then_store(
        &self,
        owners: &[PeerId],
        address: Address,
        reference: Reference,
        data: SharedBytes,
    ) -> (Vec<Option<DedupMessage>>, Vec<bool>) {
        let has = self.ask_all(owners, DedupMessage::Has(address)).await;
        let had: Vec<bool> = has
            .iter()
            .map(|a| *a == Some(DedupMessage::HasAnswer(true)))
            .collect();
        let (with, without): (Vec<_>, Vec<_>) = owners.iter().zip(&had).partition(|(_, has)| **has);
        let ids =
            |pairs: Vec<(&PeerId, &bool)>| pairs.into_iter().map(|(p, _)| *p).collect::<Vec<_>>();
        let put = DedupMessage::Put {
            address,
            reference: Some(reference),
            data,
        };
        let (counted, stored) = join(
            self.ask_all(&ids(with), DedupMessage::AddRef(address, reference)),
            self.ask_all(&ids(without), put),
        )
        .await;
        (counted.into_iter().chain(stored).collect(), had)
    }

    /// Sends `Release(address, reference)` to `owners`; returns the counts
    /// they answered with.
    async fn drop_reference(
        &self,
        owners: &[PeerId],
        address: Address,
        reference: Reference,
    ) -> Vec<u64> {
        let answers = self
            .ask_all(owners, DedupMessage::Release(address, reference))
            .await;
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
    /// reference) to owners that lacked it, answered with bad bytes or
    /// reported their copy corrupt.
    pub async fn get(&self, address: Address) -> Result<Object, CamError> {
        self.read(address, false).await.map(|(object, _)| object)
    }

    /// Repairs an object at every owner: [`get`](Self::get), asking all
    /// of them; returns the object and how many owners it wrote back to.
    /// What a holder's scrub found rotten ([`DedupHandler::scrub`](crate::DedupHandler::scrub))
    /// is put back this way.
    pub async fn repair(&self, address: Address) -> Result<(Object, usize), CamError> {
        self.read(address, true).await
    }

    /// A quorum read (of every owner if `all`), repairing the owners
    /// found without a good copy.
    async fn read(&self, address: Address, all: bool) -> Result<(Object, usize), CamError> {
        let owners = self.owners(&address);
        let mut found: Option<Object> = None;
        let mut answered = 0;
        let mut stale = Vec::new();
        for &peer in &owners {
            if !all && found.is_some() && answered >= self.read_quorum() {
                break;
            }
            let answer = self
                .ask_all(&[peer], DedupMessage::Get(address))
                .await
                .pop()
                .flatten();
            match answer {
                Some(DedupMessage::Found(data)) => {
                    answered += 1;
                    match Object::verify(address, data) {
                        Ok(object) => found = found.or(Some(object)),
                        Err(_) => stale.push(peer),
                    }
                }
                // A holder whose copy rotted dropped it: repair it too.
                Some(DedupMessage::NotFound | DedupMessage::Corrupt) => {
                    answered += 1;
                    stale.push(peer);
                }
                _ => {}
            }
        }
        let object = found.ok_or(CamError::NotFound(address))?;
        if !stale.is_empty() {
            ::metrics::counter!("hologram_dedup_repairs_total").increment(stale.len() as u64);
            tracing::debug!(%address, owners = stale.len(), "read repair");
            let repair = DedupMessage::Put {
                address,
                reference: None,
                data: object.shared_data(),
            };
            self.ask_all(&stale, repair).await;
        }
        Ok((object, stale.len()))
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
            let answers = self.ask_all(&owners, DedupMessage::Free(address)).await;
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
