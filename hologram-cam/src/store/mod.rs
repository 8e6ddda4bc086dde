//! The `Store` seam: durable object storage keyed by [`Address`].

use crate::{CamError, Object};
use async_trait::async_trait;
use hologram_lattice::Address;

pub mod conformance;
mod faulty;
mod memory;
mod name;
mod redb;

pub use self::faulty::{DiskFaultCounts, DiskFaults, FaultyStore, UNFLUSHED};
pub use self::memory::MemoryStore;
pub use self::name::Name;
pub use self::redb::{
    RedbStore, DEFAULT_CACHE_BYTES, JOURNAL_CHECKPOINT_BYTES, JOURNAL_CHECKPOINT_RECORDS,
    JOURNAL_MAX_RECORD_BYTES, SEGMENT_BYTES, STORE_FORMAT_VERSION,
};

/// Durable storage of [`Object`]s keyed by their address.
///
/// # Contract
///
/// - **Integrity.** `put` takes only verified [`Object`]s; `get` returns only
///   objects whose bytes hash to their address. A store that cannot trust its
///   medium (a disk) re-checks on read and answers [`CamError::Corrupt`]
///   rather than return bad bytes.
/// - **Durability.** When `put` or `put_batch` returns `Ok`, the objects
///   survive a crash of the process (for a durable store; `MemoryStore`
///   is not durable and says so). A batch is atomic: after a crash either all
///   of it is present or none.
/// - **Idempotence.** Putting an object that is present is a no-op that
///   succeeds; removing an absent one returns `false`.
/// - **Bounded scans.** `scan` returns the first `limit` addresses greater than
///   `after`, in address order (fewer only at the end), so a caller can page
///   through any store in bounded memory, passing the last address of a page
///   as the next `after` until a page comes back empty.
///
/// - **Named key space.** Beside the objects, a store keeps objects under
///   caller-chosen [`Name`]s (`get_named`, `set_named`), separate from the
///   content-addressed space: a named object is not listed by `scan`, not
///   found by `get` or `contains` (unless also put there), and `remove`
///   never touches it; putting or removing objects never changes a name.
///   Setting a name replaces what it held. Integrity and durability are as
///   for objects: `get_named` returns the object set under the name, its
///   bytes hashing to its address (else [`CamError::Corrupt`]), and
///   `set_named` is durable and atomic when it returns `Ok`. Reading a name
///   costs one lookup, whatever the number of objects, so a component can
///   keep state that is found without a scan in a store shared with a CAM
///   (the consensus log does).
///
/// Stores take `&self` and are shared between tasks and threads; the
/// [`conformance`] suite checks an implementation against this contract.
#[async_trait]
pub trait Store: Send + Sync {
    /// The object at `address`, if present.
    async fn get(&self, address: &Address) -> Result<Option<Object>, CamError>;

    /// Stores an object.
    async fn put(&self, object: Object) -> Result<(), CamError>;

    /// Stores many objects atomically.
    async fn put_batch(&self, objects: Vec<Object>) -> Result<(), CamError>;

    /// Whether an object is present.
    async fn contains(&self, address: &Address) -> Result<bool, CamError>;

    /// Removes an object; returns whether it was present.
    async fn remove(&self, address: &Address) -> Result<bool, CamError>;

    /// The `limit` smallest stored addresses greater than `after` (than none,
    /// if `None`), in increasing order; fewer only when fewer are stored.
    async fn scan(&self, after: Option<Address>, limit: usize) -> Result<Vec<Address>, CamError>;

    /// The object stored under `name` in the named key space, if any.
    async fn get_named(&self, name: &Name) -> Result<Option<Object>, CamError>;

    /// Sets each name to its object (`Some`) or clears it (`None`), in
    /// order (a name given twice ends with its last value), atomically.
    async fn set_named(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError>;

    /// Reads back each of `addresses` and returns those `get` would answer
    /// [`CamError::Corrupt`] for (absent ones are skipped): what a scrub
    /// asks. The default calls `get` for each; a store may check many at
    /// once more cheaply (`RedbStore` reads each segment once).
    async fn corrupt_among(&self, addresses: &[Address]) -> Result<Vec<Address>, CamError> {
        let mut corrupt = Vec::new();
        for address in addresses {
            match self.get(address).await {
                Ok(_) => {}
                Err(CamError::Corrupt(_)) => corrupt.push(*address),
                Err(e) => return Err(e),
            }
        }
        Ok(corrupt)
    }
}

/// A shared store is a store: `Arc<MemoryStore>` or `Arc<dyn Store>` go
/// wherever an `S: Store` does.
#[async_trait]
impl<T: Store + ?Sized> Store for std::sync::Arc<T> {
    async fn get(&self, address: &Address) -> Result<Option<Object>, CamError> {
        (**self).get(address).await
    }

    async fn put(&self, object: Object) -> Result<(), CamError> {
        (**self).put(object).await
    }

    async fn put_batch(&self, objects: Vec<Object>) -> Result<(), CamError> {
        (**self).put_batch(objects).await
    }

    async fn contains(&self, address: &Address) -> Result<bool, CamError> {
        (**self).contains(address).await
    }

    async fn remove(&self, address: &Address) -> Result<bool, CamError> {
        (**self).remove(address).await
    }

    async fn scan(&self, after: Option<Address>, limit: usize) -> Result<Vec<Address>, CamError> {
        (**self).scan(after, limit).await
    }

    async fn get_named(&self, name: &Name) -> Result<Option<Object>, CamError> {
        (**self).get_named(name).await
    }

    async fn set_named(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError> {
        (**self).set_named(changes).await
    }

    async fn corrupt_among(&self, addresses: &[Address]) -> Result<Vec<Address>, CamError> {
        (**self).corrupt_among(addresses).await
    }
}
