//! One mutation at a time per address: an async lock keyed by [`Address`].

use crate::hashing::FastMap;
use futures::channel::oneshot;
use hologram_lattice::Address;
use std::collections::hash_map::Entry;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Async locks, one per address, taken by the holder around every request
/// that changes an object or its references.
///
/// Two copies of one request (a duplicate on the network, delivered on two
/// threads at once) name the same address, so the second waits until the
/// first has applied and recorded its answer, then finds that answer. So do
/// a `Put` and a `Free` of one object, which must not interleave (the `Free`
/// must not remove an object between the `Put` finding it present and
/// counting its reference).
///
/// An uncontended lock costs one map insertion and one removal; a waiter
/// parks on a oneshot channel that the holder of the lock drops on release.
/// The map is cut into [`SHARDS`] by the address's first byte, so requests
/// about different objects on different threads rarely meet on one mutex.
/// A lock is released when its guard is dropped, also when the future that
/// holds it is dropped midway (a request that timed out), so it is never
/// leaked.
#[derive(Default)]
pub(crate) struct AddressLocks {
    /// The locked addresses, each with the channels of its waiters, by
    /// shard.
    held: [Mutex<FastMap<Address, Vec<oneshot::Sender<()>>>>; SHARDS],
}

/// How many independently locked parts the map has.
const SHARDS: usize = 16;

/// Holds the lock of one address until dropped.
pub(crate) struct AddressGuard<'a> {
    locks: &'a AddressLocks,
    address: Address,
}

impl AddressLocks {
    fn map(&self, address: &Address) -> MutexGuard<'_, FastMap<Address, Vec<oneshot::Sender<()>>>> {
        let shard = usize::from(address.as_bytes()[0]) % SHARDS;
        // Every critical section is one map operation: a panic elsewhere
        // cannot leave the map inconsistent.
        self.held[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether no address is locked.
    #[cfg(test)]
    fn is_unlocked(&self) -> bool {
        self.held
            .iter()
            .all(|m| m.lock().unwrap_or_else(PoisonError::into_inner).is_empty())
    }

    /// Waits until the lock of `address` is free and takes it.
    pub(crate) async fn lock(&self, address: Address) -> AddressGuard<'_> {
        loop {
            let released = match self.map(&address).entry(address) {
                Entry::Vacant(free) => {
                    free.insert(Vec::new());
                    return AddressGuard {
                        locks: self,
                        address,
                    };
                }
                Entry::Occupied(mut taken) => {
                    let (tx, rx) = oneshot::channel();
                    taken.get_mut().push(tx);
                    rx
                }
            };
            // Woken (with an error: the sender is dropped) on release; then
            // every waiter tries again and one of them wins.
            let _ = released.await;
        }
    }
}

impl Drop for AddressGuard<'_> {
    fn drop(&mut self) {
        let waiters = self.locks.map(&self.address).remove(&self.address);
        drop(waiters);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_second_locker_waits_until_the_first_releases() {
        let locks = AddressLocks::default();
        let a = Address::of(b"a");
        let first = locks.lock(a).now_or_never().expect("free");
        let mut second = Box::pin(locks.lock(a));
        assert!(second.as_mut().now_or_never().is_none(), "taken");
        assert!(
            locks.lock(Address::of(b"b")).now_or_never().is_some(),
            "another address is free"
        );
        drop(first);
        assert!(second.now_or_never().is_some(), "released");
        assert!(locks.is_unlocked());
    }

    #[test]
    fn a_dropped_waiter_or_holder_leaks_nothing() {
        let locks = AddressLocks::default();
        let a = Address::of(b"a");
        let first = locks.lock(a).now_or_never().expect("free");
        let mut waiter = Box::pin(locks.lock(a));
        assert!(waiter.as_mut().now_or_never().is_none());
        drop(waiter);
        drop(first);
        assert!(locks.lock(a).now_or_never().is_some());
    }

    #[test]
    fn threads_never_hold_one_address_at_once() {
        let locks = Arc::new(AddressLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let a = Address::of(b"contended");
        std::thread::scope(|s| {
            for _ in 0..4 {
                let (locks, inside) = (Arc::clone(&locks), Arc::clone(&inside));
                s.spawn(move || {
                    for _ in 0..2000 {
                        let _guard = futures::executor::block_on(locks.lock(a));
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        std::hint::spin_loop();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert!(locks.is_unlocked());
    }
}
