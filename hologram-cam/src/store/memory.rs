//! [`MemoryStore`]: objects in memory, for tests, caches and the simulator.
//!
//! # Design
//!
//! The address space is cut into 16 (`SHARDS`) contiguous ranges by the top bits
//! of the address; each range is a shard behind its own `RwLock`, holding a
//! `HashMap` (for `get`, `contains`: one hash and one probe) and a
//! `BTreeSet` of the same addresses (for `scan`). Because shards are ranges
//! and not hash buckets, a scan walks the shards in order and reads each one's
//! `BTreeSet` from `after`, so it is in address order without merging.
//! Addresses are BLAKE3 outputs, so the shards fill evenly, and concurrent
//! readers and writers of different shards never touch the same lock.
//!
//! The ordered set is brought up to date lazily: a put only appends the new
//! address to a list, and the first scan after puts sorts that list into the
//! set (dropping addresses removed meanwhile). A store that is never scanned
//! (a cache, most stores most of the time) pays no ordered insert per put,
//! which with random keys in a set of millions is a cache miss per level. The
//! list is compacted when it outgrows the objects, so it stays within twice
//! their number plus a constant.
//!
//! The maps hash an address with the crate's keyed folded-multiply hasher
//! (`hashing`), a few nanoseconds where SipHash costs about twenty.

use super::{Name, Store};
use crate::hashing::AddressHashing;
use crate::{CamError, Object};
use async_trait::async_trait;
use hologram_lattice::Address;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// How many shards a [`MemoryStore`] has (a power of two, at most 256).
const SHARDS: usize = 16;

/// The address bits above these select a shard.
const SHARD_SHIFT: u32 = 8 - SHARDS.trailing_zeros();

/// One contiguous range of the address space.
#[derive(Debug)]
struct Shard {
    objects: HashMap<Address, Object, AddressHashing>,
    /// Addresses in order, as of the last scan.
    order: BTreeSet<Address>,
    /// Addresses put since the last scan (some may have been removed since).
    fresh: Vec<Address>,
}

/// `fresh` is compacted when longer than twice the objects and this, so a
/// compaction (O(k log k) for k fresh addresses) comes only after at least
/// as many puts: amortized O(log k) per put.
const FRESH_SLACK: usize = 1024;

impl Shard {
    fn new(hashing: AddressHashing) -> Self {
        Shard {
            objects: HashMap::with_hasher(hashing),
            order: BTreeSet::new(),
            fresh: Vec::new(),
        }
    }

    fn insert(&mut self, object: Object) {
        let address = object.address();
        if self.objects.insert(address, object).is_none() {
            self.fresh.push(address);
            if self.fresh.len() > 2 * self.objects.len() + FRESH_SLACK {
                // Removals and re-puts between scans: keep what is present, once.
                let objects = &self.objects;
                self.fresh.retain(|a| objects.contains_key(a));
                self.fresh.sort_unstable();
                self.fresh.dedup();
            }
        }
    }

    fn remove(&mut self, address: &Address) -> bool {
        // An address still in `fresh` is dropped from it at the next scan.
        self.order.remove(address);
        self.objects.remove(address).is_some()
    }

    /// Brings `order` up to date with the puts since the last scan.
    fn settle_order(&mut self) {
        let objects = &self.objects;
        let order = &mut self.order;
        order.extend(self.fresh.drain(..).filter(|a| objects.contains_key(a)));
    }
}

/// An in-memory [`Store`]. **Not durable**: everything is lost when the
/// process ends, so the durability clause of the [`Store`] contract does not
/// apply; every other clause does.
///
/// A `get` hit costs a read lock, a hash probe and an `Arc` bump (see the
/// module docs for the layout). The named key space is one ordered map
/// behind its own lock. `put_batch` takes the write locks of every
/// shard it touches before inserting anything, so other tasks see a batch
/// whole or not at all.
///
/// ```
/// use futures::executor::block_on;
/// use hologram_cam::MemoryStore;
/// use hologram_cam::{Object, Store};
///
/// let store = MemoryStore::new();
/// let obj = Object::new(b"HELLO WORLD".to_vec());
/// block_on(store.put(obj.clone())).unwrap();
/// assert_eq!(block_on(store.get(&obj.address())).unwrap(), Some(obj));
/// assert_eq!(store.len(), 1);
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    shards: [RwLock<Shard>; SHARDS],
    /// The named key space.
    named: RwLock<BTreeMap<Name, Object>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

fn shard_of(address: &Address) -> usize {
    address
        .as_bytes()
        .first()
        .map_or(0, |b| usize::from(b >> SHARD_SHIFT))
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        let hashing = AddressHashing::default();
        Self {
            shards: std::array::from_fn(|_| RwLock::new(Shard::new(hashing))),
            named: RwLock::new(BTreeMap::new()),
        }
    }

    /// How many objects are stored (summed shard by shard, so concurrent
    /// writes may or may not be counted).
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.read(i).objects.len()).sum()
    }

    /// Whether no object is stored.
    pub fn is_empty(&self) -> bool {
        (0..SHARDS).all(|i| self.read(i).objects.is_empty())
    }

    // `shard` is always `shard_of(..)` or below `SHARDS`.
    // A poisoned lock means a panic while inserting or removing, and those
    // only panic on allocation failure, which aborts: the data is consistent.
    fn read(&self, shard: usize) -> RwLockReadGuard<'_, Shard> {
        self.shards[shard]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, shard: usize) -> RwLockWriteGuard<'_, Shard> {
        self.shards[shard]
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn get_now(&self, address: &Address) -> Option<Object> {
        self.read(shard_of(address)).objects.get(address).cloned()
    }

    fn scan_now(&self, after: Option<Address>, limit: usize) -> Vec<Address> {
        let mut out = Vec::new();
        let first = after.as_ref().map_or(0, shard_of);
        for shard in first..SHARDS {
            if out.len() >= limit {
                break;
            }
            if !self.read(shard).fresh.is_empty() {
                self.write(shard).settle_order();
            }
            let guard = self.read(shard);
            let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
            let room = limit - out.len();
            out.extend(guard.order.range((lower, Bound::Unbounded)).take(room));
        }
        out
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, address: &Address) -> Result<Option<Object>, CamError> {
        Ok(self.get_now(address))
    }

    async fn put(&self, object: Object) -> Result<(), CamError> {
        self.write(shard_of(&object.address())).insert(object);
        Ok(())
    }

    async fn put_batch(&self, objects: Vec<Object>) -> Result<(), CamError> {
        let mut by_shard: [Vec<Object>; SHARDS] = std::array::from_fn(|_| Vec::new());
        for object in objects {
            by_shard[shard_of(&object.address())].push(object);
        }
        // Take every needed lock, in increasing shard order (so two batches
        // cannot deadlock), before inserting anything.
        let locked: Vec<_> = by_shard
            .into_iter()
            .enumerate()
            .filter(|(_, bucket)| !bucket.is_empty())
            .map(|(i, bucket)| (self.write(i), bucket))
            .collect();
        for (mut guard, bucket) in locked {
            for object in bucket {
                guard.insert(object);
            }
        }
        Ok(())
    }

    async fn contains(&self, address: &Address) -> Result<bool, CamError> {
        Ok(self.read(shard_of(address)).objects.contains_key(address))
    }

    async fn remove(&self, address: &Address) -> Result<bool, CamError> {
        Ok(self.write(shard_of(address)).remove(address))
    }

    async fn scan(&self, after: Option<Address>, limit: usize) -> Result<Vec<Address>, CamError> {
        Ok(self.scan_now(after, limit))
    }

    async fn get_named(&self, name: &Name) -> Result<Option<Object>, CamError> {
        let named = self.named.read().unwrap_or_else(PoisonError::into_inner);
        Ok(named.get(name).cloned())
    }

    async fn set_named(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError> {
        // One write lock for the whole batch: others see all of it or none.
        let mut named = self.named.write().unwrap_or_else(PoisonError::into_inner);
        for (name, object) in changes {
            match object {
                Some(object) => named.insert(name, object),
                None => named.remove(&name),
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::address_with_first_byte;

    #[test]
    fn shards_are_contiguous_ranges_covering_every_first_byte() {
        let shards: Vec<usize> = (0..=255u8)
            .map(|b| shard_of(&address_with_first_byte(b)))
            .collect();
        assert_eq!(shards.first(), Some(&0));
        assert_eq!(shards.last(), Some(&(SHARDS - 1)));
        assert!(shards.windows(2).all(|w| w[0] <= w[1] && w[1] - w[0] <= 1));
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;
    use futures::executor::block_on;
    use proptest::prelude::*;

    proptest! {
        /// Whatever mix of puts, removes and scans, a scan returns the
        /// smallest present addresses after its bound, in order, once each.
        #[test]
        fn scans_see_exactly_the_present_objects_in_order(
            ops in prop::collection::vec((0u8..3, 0u16..64), 0..400),
        ) {
            let store = MemoryStore::new();
            let mut model = BTreeSet::new();
            for (op, n) in ops {
                let object = Object::new(n.to_le_bytes().to_vec());
                match op {
                    0 => {
                        block_on(store.put(object.clone())).unwrap();
                        model.insert(object.address());
                    }
                    1 => {
                        let was = block_on(store.remove(&object.address())).unwrap();
                        prop_assert_eq!(was, model.remove(&object.address()));
                    }
                    _ => {
                        let after = model.iter().nth(usize::from(n) % (model.len() + 1)).copied();
                        let got = block_on(store.scan(after, 7)).unwrap();
                        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
                        let want: Vec<Address> =
                            model.range((lower, Bound::Unbounded)).take(7).copied().collect();
                        prop_assert_eq!(got, want);
                    }
                }
            }
            let all = block_on(store.scan(None, usize::MAX)).unwrap();
            prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn churn_without_scans_keeps_the_fresh_list_bounded() {
        let store = MemoryStore::new();
        let object = Object::new(b"churned".to_vec());
        for _ in 0..10_000 {
            block_on(store.put(object.clone())).unwrap();
            block_on(store.remove(&object.address())).unwrap();
        }
        let fresh: usize = (0..SHARDS).map(|i| store.read(i).fresh.len()).sum();
        assert!(fresh <= FRESH_SLACK + 3, "{fresh} fresh addresses");
    }
}
