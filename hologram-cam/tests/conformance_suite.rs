//! Tests of the store conformance suite itself: a store that loses updates
//! under concurrency, a store that silently keeps only its newest 512
//! objects, and a store that keeps its names among its objects each make
//! `run` fail, naming the check that caught them.

use async_trait::async_trait;
use futures::executor::block_on;
use hologram_cam::{conformance, MemoryStore, Name};
use hologram_cam::{CamError, Object, Store};
use hologram_lattice::Address;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a test mutex (a panic elsewhere fails the test anyway).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every write copies the map under the lock, releases it, changes the copy
/// and writes it back: two writers at once lose one's update. Reads and
/// each single step hold the lock, so one thread alone sees a correct store.
#[derive(Default)]
struct LosesUpdates {
    objects: Mutex<BTreeMap<Address, Object>>,
    named: MemoryStore,
}

impl LosesUpdates {
    fn update<T>(&self, change: impl FnOnce(&mut BTreeMap<Address, Object>) -> T) -> T {
        let mut copy = lock(&self.objects).clone();
        let out = change(&mut copy);
        *lock(&self.objects) = copy;
        out
    }
}

#[async_trait]
impl Store for LosesUpdates {
    async fn get(&self, address: &Address) -> Result<Option<Object>, CamError> {
        Ok(lock(&self.objects).get(address).cloned())
    }
    async fn put(&self, object: Object) -> Result<(), CamError> {
        self.update(|m| m.insert(object.address(), object));
        Ok(())
    }
    async fn put_batch(&self, objects: Vec<Object>) -> Result<(), CamError> {
        self.update(|m| m.extend(objects.into_iter().map(|o| (o.address(), o))));
        Ok(())
    }
    async fn contains(&self, address: &Address) -> Result<bool, CamError> {
        Ok(lock(&self.objects).contains_key(address))
    }
    async fn remove(&self, address: &Address) -> Result<bool, CamError> {
        Ok(self.update(|m| m.remove(address).is_some()))
    }
    async fn scan(&self, after: Option<Address>, limit: usize) -> Result<Vec<Address>, CamError> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let objects = lock(&self.objects);
        Ok(objects
            .range((lower, Bound::Unbounded))
            .take(limit)
            .map(|(a, _)| *a)
            .collect())
    }
    async fn get_named(&self, name: &Name) -> Result<Option<Object>, CamError> {
        self.named.get_named(name).await
    }
    async fn set_named(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError> {
        self.named.set_named(changes).await
    }
}

/// A memory store that silently drops its oldest object once it holds 512.
#[derive(Default)]
struct KeepsNewest512 {
    inner: MemoryStore,
    order: Mutex<VecDeque<Address>>,
}

impl KeepsNewest512 {
    async fn evict(&self, added: impl IntoIterator<Item = Address>) -> Result<(), CamError> {
        let evicted: Vec<Address> = {
            let mut order = lock(&self.order);
            for address in added {
                if !order.contains(&address) {
                    order.push_back(address);
                }
            }
            let excess = order.len().saturating_sub(512);
            order.drain(..excess).collect()
        };
        for address in evicted {
            self.inner.remove(&address).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Store for KeepsNewest512 {
    async fn get(&self, address: &Address) -> Result<Option<Object>, CamError> {
        self.inner.get(address).await
    }
    async fn put(&self, object: Object) -> Result<(), CamError> {
        let address = object.address();
        self.inner.put(object).await?;
        self.evict([address]).await
    }
    async fn put_batch(&self, objects: Vec<Object>) -> Result<(), CamError> {
        let addresses: Vec<Address> = objects.iter().map(Object::address).collect();
        self.inner.put_batch(objects).await?;
        self.evict(addresses).await
    }
    async fn contains(&self, address: &Address) -> Result<bool, CamError> {
        self.inner.contains(address).await
    }
    async fn remove(&self, address: &Address) -> Result<bool, CamError> {
        lock(&self.order).retain(|a| a != address);
        self.inner.remove(address).await
    }
    async fn scan(&self, after: Option<Address>, limit: usize) -> Result<Vec<Address>, CamError> {
        self.inner.scan(after, limit).await
    }
    async fn get_named(&self, name: &Name) -> Result<Option<Object>, CamError> {
        self.inner.get_named(name).await
    }
    async fn set_named(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError> {
        self.inner.set_named(changes).await
    }
}

/// A memory store whose names are kept in the object space: each name
/// points at an object stored with the others (so `scan` lists it and
/// `remove` of the same bytes loses it).
#[derive(Default)]
struct NamesInObjects {
    inner: MemoryStore,
    names: Mutex<BTreeMap<Name, Address>>,
}

#[async_trait]
impl Store for NamesInObjects {
    async fn get(&self, address: &Address) -> Result<Option<Object>, CamError> {
        self.inner.get(address).await
    }
    async fn put(&self, object: Object) -> Result<(), CamError> {
        self.inner.put(object).await
    }
    async fn put_batch(&self, objects: Vec<Object>) -> Result<(), CamError> {
        self.inner.put_batch(objects).await
    }
    async fn contains(&self, address: &Address) -> Result<bool, CamError> {
        self.inner.contains(address).await
    }
    async fn remove(&self, address: &Address) -> Result<bool, CamError> {
        self.inner.remove(address).await
    }
    async fn scan(&self, after: Option<Address>, limit: usize) -> Result<Vec<Address>, CamError> {
        self.inner.scan(after, limit).await
    }
    async fn get_named(&self, name: &Name) -> Result<Option<Object>, CamError> {
        let address = lock(&self.names).get(name).copied();
        match address {
            Some(address) => self.inner.get(&address).await,
            None => Ok(None),
        }
    }
    async fn set_named(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError> {
        for (name, object) in changes {
            match object {
                Some(object) => {
                    lock(&self.names).insert(name, object.address());
                    self.inner.put(object).await?;
                }
                None => {
                    lock(&self.names).remove(&name);
                }
            }
        }
        Ok(())
    }
}

#[test]
fn the_suite_catches_names_kept_among_the_objects() {
    let store = NamesInObjects::default();
    let failure = block_on(conformance::run(&store)).unwrap_err();
    assert_eq!(failure.check, "named key space", "{failure}");
}

#[test]
fn the_suite_catches_a_store_that_loses_concurrent_updates() {
    let store = LosesUpdates::default();
    let failure = block_on(conformance::run(&store)).unwrap_err();
    assert_eq!(failure.check, "concurrent", "{failure}");
}

#[test]
fn the_suite_catches_a_store_that_keeps_only_its_newest_512_objects() {
    let store = KeepsNewest512::default();
    let failure = block_on(conformance::run(&store)).unwrap_err();
    assert_eq!(failure.check, "many objects", "{failure}");
}
