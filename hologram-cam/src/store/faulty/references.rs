//! [`FaultyStore`] as a [`ReferenceStore`]: the reference sets of a holder
//! that keeps them in the same store as its objects
//! ([`DedupHandler::durable`](crate::DedupHandler::durable)), on the same
//! faulty disk.
//!
//! The faults, from the same seed and rates as the objects':
//!
//! - `save` and `forget` fail before changing anything (`EIO`, `ENOSPC`);
//! - a set rots at rest when written ([`DiskFaults::rot_at_rest`](super::DiskFaults::rot_at_rest)) and a
//!   read returns rotten bytes ([`DiskFaults::flip_on_read`](super::DiskFaults::flip_on_read)): the load
//!   reports [`CamError::CorruptReferences`], as a `RedbStore` does for a
//!   record that does not decode;
//! - an acknowledged `save` or `forget` is lost at
//!   [`crash_with_references`](FaultyStore::crash_with_references);
//! - every operation is slow ([`DiskFaults::delay`](super::DiskFaults::delay)).
//!
//! Not injected: stale and misdirected reads of a set. A set records
//! neither its address nor a version, so no reader could tell another
//! set, or an older one, from the right one; a store serving one would
//! break its contract in a way nobody can detect, not fail in a way a
//! holder must survive.

use super::{FaultyStore, Key, Undo};
use crate::dedup::ReferenceSet;
use crate::{CamError, ReferenceStore, Store};
use async_trait::async_trait;
use hologram_lattice::Address;

impl<S: Store + ReferenceStore> FaultyStore<S> {
    /// [`crash`](Self::crash), and writes of reference sets are lost too,
    /// at the same rate: what a holder keeping its sets in this store
    /// suffers when its process crashes.
    pub async fn crash_with_references(&self) -> Result<u64, CamError> {
        let lost = self.lose_unflushed(true);
        let n = lost.len() as u64;
        for (address, before) in self.undo(lost).await? {
            match before {
                Some(set) => self.inner.save(&address, &set).await?,
                None => self.inner.forget(&address).await?,
            }
        }
        Ok(n)
    }

    /// Notes an acknowledged write of `address`'s set, which held `before`.
    fn references_written(&self, address: &Address, before: Option<ReferenceSet>) {
        self.state().written(
            Key::References(*address),
            Undo::References(*address, before),
        );
    }

    /// What was there before a write, for a crash to restore: a rotten
    /// record as no set (a crash cannot make it readable again).
    async fn before(&self, address: &Address) -> Result<Option<ReferenceSet>, CamError> {
        match self.inner.load(address).await {
            Err(CamError::CorruptReferences { .. }) => Ok(None),
            other => other,
        }
    }
}

#[async_trait]
impl<S: Store + ReferenceStore> ReferenceStore for FaultyStore<S> {
    async fn load(&self, address: &Address) -> Result<Option<ReferenceSet>, CamError> {
        self.slow().await;
        let Some(set) = self.inner.load(address).await? else {
            return Ok(None);
        };
        match self.state().rotten_read(&Key::References(*address)) {
            true => Err(CamError::CorruptReferences {
                address: *address,
                source: Box::new(CamError::Storage(
                    "injected disk fault: a rotten reference set".into(),
                )),
            }),
            false => Ok(Some(set)),
        }
    }

    async fn save(&self, address: &Address, set: &ReferenceSet) -> Result<(), CamError> {
        self.slow().await;
        self.state().write_fails()?;
        let before = self.before(address).await?;
        self.inner.save(address, set).await?;
        self.references_written(address, before);
        Ok(())
    }

    async fn forget(&self, address: &Address) -> Result<(), CamError> {
        self.slow().await;
        self.state().write_fails()?;
        let before = self.before(address).await?;
        self.inner.forget(address).await?;
        self.references_written(address, before);
        Ok(())
    }
}
