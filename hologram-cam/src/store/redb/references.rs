//! [`RedbStore`] as a [`ReferenceStore`]: the reference sets of a holder in
//! the same file as its objects, so that they survive a crash with them.

use super::{storage, RedbStore};
use crate::dedup::ReferenceSet;
use crate::CamError;
use crate::ReferenceStore;
use ::redb::{ReadableTable, TableDefinition};
use async_trait::async_trait;
use hologram_lattice::Address;

/// Address bytes → the [`ReferenceSet::to_bytes`] of its references.
pub(super) const REFERENCES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("references");

/// Each `save` and `forget` is one durable transaction (see the durability
/// clause of [`ReferenceStore`]); a record that does not decode is reported
/// as [`CamError::CorruptReferences`], never trusted.
#[async_trait]
impl ReferenceStore for RedbStore {
    async fn load(&self, address: &Address) -> Result<Option<ReferenceSet>, CamError> {
        self.guarded("reading references", || self.load_now(address))
    }

    async fn save(&self, address: &Address, set: &ReferenceSet) -> Result<(), CamError> {
        self.guarded("writing references", || self.save_now(address, set))
    }

    async fn forget(&self, address: &Address) -> Result<(), CamError> {
        self.guarded("removing references", || self.forget_now(address))
    }
}

impl RedbStore {
    fn load_now(&self, address: &Address) -> Result<Option<ReferenceSet>, CamError> {
        let path = &self.path;
        let txn = self.begin_read()?;
        let table = txn
            .open_table(REFERENCES)
            .map_err(storage("opening the references", path))?;
        let record = table
            .get(address.as_bytes())
            .map_err(storage("reading references", path))?;
        record
            .map(|bytes| {
                ReferenceSet::from_bytes(bytes.value()).map_err(|e| CamError::CorruptReferences {
                    address: *address,
                    source: Box::new(e),
                })
            })
            .transpose()
    }

    fn save_now(&self, address: &Address, set: &ReferenceSet) -> Result<(), CamError> {
        let bytes = set.to_bytes();
        self.write("committing references", |txn| {
            txn.open_table(REFERENCES)
                .and_then(|mut table| {
                    table.insert(address.as_bytes(), bytes.as_slice())?;
                    Ok(())
                })
                .map_err(storage("writing references", &self.path))?;
            Ok(((), true))
        })
    }

    fn forget_now(&self, address: &Address) -> Result<(), CamError> {
        self.write("committing a forgotten reference set", |txn| {
            let present = txn
                .open_table(REFERENCES)
                .and_then(|mut table| Ok(table.remove(address.as_bytes())?.is_some()))
                .map_err(storage("removing references", &self.path))?;
            Ok(((), present))
        })
    }
}
