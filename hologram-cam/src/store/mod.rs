//! The `Store` seam: durable object storage keyed by [`Address`].

use crate::{CamError, Object};
use async_trait::async_trait;
use hologram_lattice::Address;

pub mod conformance;
mod memory;
mod redb;

pub use self::memory::MemoryStore;
pub use self::redb::{RedbStore, SEGMENT_BYTES};

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
/// Stores take `&self` and are shared between tasks; the
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
}
