//! A memory store that counts what is read from it and the size of its
//! named key space.

use async_trait::async_trait;
use hologram_cam::{CamError, MemoryStore, Name, Object, Store};
use hologram_lattice::Address;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// A memory store that counts what is read from it.
#[derive(Default)]
pub struct Counting {
    inner: MemoryStore,
    /// `get` and `contains` calls (the object space).
    pub object_reads: AtomicUsize,
    /// `scan` calls.
    pub scans: AtomicUsize,
    /// `get_named` calls.
    pub named_reads: AtomicUsize,
    /// The named key space's entries and their sizes.
    named: Mutex<BTreeMap<Name, usize>>,
}

impl Counting {
    /// The named entries and their bytes.
    pub fn named(&self) -> (usize, usize) {
        let named = self.named.lock().unwrap_or_else(PoisonError::into_inner);
        (named.len(), named.values().sum())
    }

    pub fn reset(&self) {
        for counter in [&self.object_reads, &self.scans, &self.named_reads] {
            counter.store(0, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl Store for Counting {
    async fn get(&self, address: &Address) -> Result<Option<Object>, CamError> {
        self.object_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get(address).await
    }
    async fn put(&self, object: Object) -> Result<(), CamError> {
        self.inner.put(object).await
    }
    async fn put_batch(&self, objects: Vec<Object>) -> Result<(), CamError> {
        self.inner.put_batch(objects).await
    }
    async fn contains(&self, address: &Address) -> Result<bool, CamError> {
        self.object_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.contains(address).await
    }
    async fn remove(&self, address: &Address) -> Result<bool, CamError> {
        self.inner.remove(address).await
    }
    async fn scan(&self, after: Option<Address>, limit: usize) -> Result<Vec<Address>, CamError> {
        self.scans.fetch_add(1, Ordering::SeqCst);
        self.inner.scan(after, limit).await
    }
    async fn get_named(&self, name: &Name) -> Result<Option<Object>, CamError> {
        self.named_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_named(name).await
    }
    async fn set_named(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError> {
        {
            let mut named = self.named.lock().unwrap_or_else(PoisonError::into_inner);
            for (name, object) in &changes {
                match object {
                    Some(o) => named.insert(name.clone(), o.len()),
                    None => named.remove(name),
                };
            }
        }
        self.inner.set_named(changes).await
    }
}
