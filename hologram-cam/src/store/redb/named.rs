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
use ::redb::{ReadableTable, TableDefinition};
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use futures::executor::block_on;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store in a fresh temp file, removed on drop.
    struct Temp(Option<RedbStore>, std::path::PathBuf);

    impl Temp {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "hologram-cam-named-{}-{}.redb",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_file(&path);
            Self(Some(RedbStore::create(&path).unwrap()), path)
        }

        fn store(&self) -> &RedbStore {
            self.0.as_ref().unwrap()
        }

        /// Writes `value` under `name` behind the store's back.
        fn raw(&self, name: &Name, value: &[u8]) {
            let txn = self.store().db.begin_write().unwrap();
            txn.open_table(NAMED)
                .unwrap()
                .insert(name.as_bytes(), value)
                .unwrap();
            txn.commit().unwrap();
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            self.0.take();
            let _ = std::fs::remove_file(&self.1);
        }
    }

    #[test]
    fn a_damaged_named_value_is_corrupt_and_a_set_repairs_it() {
        let temp = Temp::new();
        let name = Name::new(b"test/head".to_vec()).unwrap();
        let object = Object::new(b"named bytes".to_vec());
        block_on(
            temp.store()
                .set_named(vec![(name.clone(), Some(object.clone()))]),
        )
        .unwrap();
        let mut value = object.address().as_bytes().to_vec();
        value.extend_from_slice(b"named bytez");
        temp.raw(&name, &value);
        assert_eq!(
            block_on(temp.store().get_named(&name)),
            Err(CamError::Corrupt(object.address()))
        );
        temp.raw(&name, &value[..31]);
        assert!(matches!(
            block_on(temp.store().get_named(&name)),
            Err(CamError::Storage(why)) if why.contains("too short")
        ));
        block_on(
            temp.store()
                .set_named(vec![(name.clone(), Some(object.clone()))]),
        )
        .unwrap();
        assert_eq!(block_on(temp.store().get_named(&name)), Ok(Some(object)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever bytes a named value holds, `get_named` never panics and
        /// returns an object only if its bytes hash to the stored address.
        #[test]
        fn any_named_value_is_an_object_or_an_error(value in prop::collection::vec(any::<u8>(), 0..100), valid in any::<bool>()) {
            let temp = Temp::new();
            let name = Name::new(b"test/any".to_vec()).unwrap();
            let value = if valid {
                let mut v = Address::of(&value).as_bytes().to_vec();
                v.extend_from_slice(&value);
                v
            } else {
                value
            };
            temp.raw(&name, &value);
            match block_on(temp.store().get_named(&name)) {
                Ok(Some(object)) => {
                    prop_assert_eq!(Address::of(object.data()), object.address());
                    prop_assert_eq!(&object.address().to_bytes()[..], &value[..32]);
                    prop_assert_eq!(object.data(), &value[32..]);
                }
                Ok(None) => prop_assert!(false, "a value was written"),
                Err(CamError::Corrupt(_)) | Err(CamError::Storage(_)) => prop_assert!(!valid),
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }
}
