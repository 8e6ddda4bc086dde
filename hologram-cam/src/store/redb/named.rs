//! The named key space of a [`RedbStore`]: a table of its own.
//!
//! [`NAMED`] maps a name's bytes to the object's address (32 bytes)
//! followed by its bytes. A read re-hashes the bytes against the stored
//! address, so a damaged value is reported as [`CamError::Corrupt`] (or, if
//! too short to hold an address, as a storage error), never returned. The
//! object tables are untouched by names, and names by objects.

use super::{storage, RedbStore};
use crate::store::Name;
use crate::{CamError, Object, SharedBytes};
use ::redb::TableDefinition;
use hologram_lattice::Address;

/// Name bytes → address (32 bytes) ‖ object bytes.
pub(super) const NAMED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("named");

impl RedbStore {
    /// The object under `name`, re-hashed against its stored address.
    pub(super) fn read_named(&self, name: &Name) -> Result<Option<Object>, CamError> {
        let path = &self.path;
        let txn = self.begin_read()?;
        let table = txn
            .open_table(NAMED)
            .map_err(storage("opening the named table", path))?;
        let Some(value) = table
            .get(name.as_bytes())
            .map_err(storage("reading a name", path))?
        else {
            return Ok(None);
        };
        let Some((address, bytes)) = value.value().split_first_chunk::<32>() else {
            return Err(CamError::Storage(format!(
                "redb: the value of a name in {} is {} bytes, too short to hold an address",
                path.display(),
                value.value().len()
            )));
        };
        let address = Address::from_bytes(*address);
        Object::verify(address, SharedBytes::copy_from_slice(bytes))
            .map(Some)
            .map_err(|_| CamError::Corrupt(address))
    }

    /// Applies `changes` in one durable transaction.
    pub(super) fn write_named(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.write("committing names", |txn| {
            let mut table = txn
                .open_table(NAMED)
                .map_err(storage("opening the named table", &self.path))?;
            let mut value = Vec::new();
            for (name, object) in changes {
                let done = match object {
                    Some(object) => {
                        value.clear();
                        value.extend_from_slice(object.address().as_bytes());
                        value.extend_from_slice(object.data());
                        table.insert(name.as_bytes(), value.as_slice()).map(drop)
                    }
                    None => table.remove(name.as_bytes()).map(drop),
                };
                done.map_err(storage("writing a name", &self.path))?;
            }
            Ok(((), true))
        })
    }
}
