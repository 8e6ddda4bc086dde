//! A bounded process-wide cache (behind [`verifying_key`] and
//! [`verify_signature`]): two generations of at most half the capacity
//! each. Inserts go to the young one; when it is full it becomes the old
//! one (the previous old one is dropped). A hit in the old generation moves
//! the entry to the young one, so entries in use survive and the cache never
//! holds more than its capacity.
//!
//! [`verifying_key`]: crate::verifying_key
//! [`verify_signature`]: crate::verify_signature

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

struct Generations<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
}

/// A cache of at most `capacity` entries, for a `static`.
pub(crate) struct Cache<K, V> {
    generations: OnceLock<Mutex<Generations<K, V>>>,
    capacity: usize,
}

impl<K: Hash + Eq + Copy, V: Copy> Cache<K, V> {
    pub(crate) const fn new(capacity: usize) -> Self {
        Cache {
            generations: OnceLock::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Generations<K, V>> {
        // The maps stay consistent whatever a panicking holder did (every
        // entry is valid), so a poisoned lock is still usable.
        self.generations
            .get_or_init(|| {
                Mutex::new(Generations {
                    young: HashMap::new(),
                    old: HashMap::new(),
                })
            })
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let mut cache = self.lock();
        if let Some(value) = cache.young.get(key) {
            return Some(*value);
        }
        let value = cache.old.remove(key)?;
        self.put(&mut cache, *key, value);
        Some(value)
    }

    pub(crate) fn insert(&self, key: K, value: V) {
        self.put(&mut self.lock(), key, value);
    }

    /// Empties the cache.
    pub(crate) fn clear(&self) {
        let mut cache = self.lock();
        cache.young = HashMap::new();
        cache.old = HashMap::new();
    }

    fn put(&self, cache: &mut Generations<K, V>, key: K, value: V) {
        if cache.young.len() >= self.capacity / 2 {
            cache.old = std::mem::take(&mut cache.young);
        }
        cache.young.insert(key, value);
    }

    /// How many entries the cache holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let cache = self.lock();
        cache.young.len() + cache.old.len()
    }

    /// Whether `key` is cached (without refreshing it).
    #[cfg(test)]
    pub(crate) fn contains(&self, key: &K) -> bool {
        let cache = self.lock();
        cache.young.contains_key(key) || cache.old.contains_key(key)
    }
}
