//! [`Offloaded`]: a store whose durable writes run on tokio's blocking
//! threads.
//!
//! A redb commit syncs the file before it returns, and `RedbStore` does it
//! inside its `async fn`: on a runtime worker, the sync would hold the
//! worker, and every task queued on it (the QUIC endpoint, the node task,
//! client requests) would wait with it. The consensus driver awaits its
//! write anyway (write-ahead); through [`Offloaded`] only the driver
//! waits, on [`tokio::task::spawn_blocking`]. Reads are served in place
//! (they do not sync).

use hologram_cam::{CamError, Name, Object, Store};
use hologram_lattice::transport::async_trait;
use hologram_lattice::Address;
use std::sync::Arc;

/// A store whose `set_named` runs on a blocking thread; see the
/// [module docs](self).
pub(crate) struct Offloaded(pub(crate) Arc<dyn Store>);

impl Offloaded {
    /// Runs `write` on the inner store on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        write: impl FnOnce(Arc<dyn Store>) -> Result<T, CamError> + Send + 'static,
    ) -> Result<T, CamError> {
        let inner = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || write(inner))
            .await
            .map_err(|e| CamError::Storage(format!("the store's writer thread failed: {e}")))?
    }
}

#[async_trait]
impl Store for Offloaded {
    async fn get(&self, address: &Address) -> Result<Option<Object>, CamError> {
        self.0.get(address).await
    }

    async fn put(&self, object: Object) -> Result<(), CamError> {
        self.blocking(move |s| futures::executor::block_on(s.put(object)))
            .await
    }

    async fn put_batch(&self, objects: Vec<Object>) -> Result<(), CamError> {
        self.blocking(move |s| futures::executor::block_on(s.put_batch(objects)))
            .await
    }

    async fn contains(&self, address: &Address) -> Result<bool, CamError> {
        self.0.contains(address).await
    }

    async fn remove(&self, address: &Address) -> Result<bool, CamError> {
        let address = *address;
        self.blocking(move |s| futures::executor::block_on(s.remove(&address)))
            .await
    }

    async fn scan(&self, after: Option<Address>, limit: usize) -> Result<Vec<Address>, CamError> {
        self.0.scan(after, limit).await
    }

    async fn get_named(&self, name: &Name) -> Result<Option<Object>, CamError> {
        self.0.get_named(name).await
    }

    async fn set_named(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError> {
        self.blocking(move |s| futures::executor::block_on(s.set_named(changes)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_cam::MemoryStore;

    #[tokio::test]
    async fn writes_and_reads_go_to_the_inner_store() {
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let store = Offloaded(Arc::clone(&inner));
        let name = Name::new(b"n".to_vec()).unwrap();
        let object = Object::new(b"value".to_vec());
        store
            .set_named(vec![(name.clone(), Some(object.clone()))])
            .await
            .unwrap();
        assert_eq!(inner.get_named(&name).await.unwrap(), Some(object.clone()));
        assert_eq!(store.get_named(&name).await.unwrap(), Some(object.clone()));
        store.put(object.clone()).await.unwrap();
        assert!(store.contains(&object.address()).await.unwrap());
        assert!(store.remove(&object.address()).await.unwrap());
        assert!(!inner.contains(&object.address()).await.unwrap());
    }
}
