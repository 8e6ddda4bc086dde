//! [`RedbStore`]: a durable [`Store`] in one [redb](::redb) database file.
//!
//! One table, `objects`, maps the 32 bytes of an address to the object's raw
//! bytes: nothing else is stored and nothing is decoded, so a damaged file
//! can at worst yield bytes that fail the hash check, which `get` reports as
//! [`CamError::Corrupt`].

use super::Store;
use crate::{CamError, Object};
use ::redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};
use async_trait::async_trait;
use hologram_lattice::Address;
use std::fmt::Display;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The one table: address bytes to object bytes.
const OBJECTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("objects");

/// A durable [`Store`] backed by a [redb](::redb) database file.
///
/// - **Durability.** `put`, `put_batch` and `remove` each commit one write
///   transaction with [`Durability::Immediate`]: when they return `Ok`, the
///   change is on disk (fsynced). A batch is one transaction, so after a
///   crash all of it is present or none. Putting objects that are all present
///   already commits nothing and costs no fsync.
/// - **Integrity.** `get` re-hashes the bytes it reads and answers
///   [`CamError::Corrupt`] if they no longer match the address; it never
///   returns bad bytes. Putting an object over a corrupt copy repairs it.
/// - **Crashes.** Opening a file left by a crashed process works: redb
///   detects the unclean shutdown and repairs the file on open (which can
///   take a while for a large file), keeping every committed transaction.
/// - **Threads.** redb is synchronous and this crate has no runtime, so the
///   async methods do their I/O (including the fsync of a commit) on the
///   thread that polls them and complete on the first poll. Under an async
///   runtime, call them from a blocking pool (e.g. `spawn_blocking`) if
///   blocking a worker thread for a commit is a problem. Write transactions
///   are serialized by redb; reads run concurrently with them.
///
/// ```
/// use futures::executor::block_on;
/// use hologram_cam::store::RedbStore;
/// use hologram_cam::{Object, Store};
///
/// let path = std::env::temp_dir().join(format!("hologram-doc-{}.redb", std::process::id()));
/// let store = RedbStore::create(&path).unwrap();
/// let obj = Object::new(b"HELLO WORLD".to_vec());
/// block_on(store.put(obj.clone())).unwrap();
/// drop(store);
/// let store = RedbStore::open(&path).unwrap();
/// assert_eq!(block_on(store.get(&obj.address())).unwrap(), Some(obj));
/// # drop(store);
/// # std::fs::remove_file(&path).unwrap();
/// ```
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

/// Turns a redb error into [`CamError::Storage`] saying what was being done.
fn storage<'p, E: Display>(doing: &'static str, path: &'p Path) -> impl FnOnce(E) -> CamError + 'p {
    move |e| CamError::Storage(format!("redb: {doing} in {}: {e}", path.display()))
}

impl RedbStore {
    /// Opens the store in the existing file at `path` (repairing it if a
    /// crashed process left it behind).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CamError> {
        let path = path.as_ref();
        let db = Database::open(path).map_err(storage("opening the database", path))?;
        Self::with_table(db, path)
    }

    /// Opens the store at `path`, creating the file if it does not exist or
    /// is empty (an existing store is opened as by [`RedbStore::open`]).
    pub fn create(path: impl AsRef<Path>) -> Result<Self, CamError> {
        let path = path.as_ref();
        let db = Database::create(path).map_err(storage("creating the database", path))?;
        Self::with_table(db, path)
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes sure the table exists, so that readers can always open it.
    fn with_table(db: Database, path: &Path) -> Result<Self, CamError> {
        let store = Self {
            db,
            path: path.to_path_buf(),
        };
        let txn = store.begin_write()?;
        txn.open_table(OBJECTS)
            .map_err(storage("creating the objects table", path))?;
        txn.commit()
            .map_err(storage("committing the objects table", path))?;
        Ok(store)
    }

    fn begin_write(&self) -> Result<WriteTransaction, CamError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(storage("beginning a write transaction", &self.path))?;
        txn.set_durability(Durability::Immediate);
        Ok(txn)
    }

    fn read<T>(
        &self,
        doing: &'static str,
        f: impl FnOnce(
            &::redb::ReadOnlyTable<&'static [u8; 32], &'static [u8]>,
        ) -> Result<T, ::redb::StorageError>,
    ) -> Result<T, CamError> {
        let txn = self
            .db
            .begin_read()
            .map_err(storage("beginning a read transaction", &self.path))?;
        let table = txn
            .open_table(OBJECTS)
            .map_err(storage("opening the objects table", &self.path))?;
        f(&table).map_err(storage(doing, &self.path))
    }

    /// Writes the objects that are missing or differ in one durable
    /// transaction; commits nothing if every one is present already.
    fn put_all(&self, objects: &[Object]) -> Result<(), CamError> {
        let path = &self.path;
        let txn = self.begin_write()?;
        let mut changed = false;
        {
            let mut table = txn
                .open_table(OBJECTS)
                .map_err(storage("opening the objects table", path))?;
            for object in objects {
                let key = object.address().to_bytes();
                let present = table
                    .get(&key)
                    .map_err(storage("reading before a put", path))?
                    .is_some_and(|stored| stored.value() == object.data());
                if !present {
                    table
                        .insert(&key, object.data())
                        .map_err(storage("inserting an object", path))?;
                    changed = true;
                }
            }
        }
        if changed {
            txn.commit().map_err(storage("committing a put", path))
        } else {
            txn.abort()
                .map_err(storage("aborting a put of present objects", path))
        }
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, address: &Address) -> Result<Option<Object>, CamError> {
        let bytes = self.read("reading an object", |table| {
            Ok(table
                .get(address.as_bytes())?
                .map(|stored| Arc::<[u8]>::from(stored.value())))
        })?;
        bytes
            .map(|data| Object::verify(*address, data).map_err(|_| CamError::Corrupt(*address)))
            .transpose()
    }

    async fn put(&self, object: Object) -> Result<(), CamError> {
        self.put_all(std::slice::from_ref(&object))
    }

    async fn put_batch(&self, objects: Vec<Object>) -> Result<(), CamError> {
        if objects.is_empty() {
            return Ok(());
        }
        self.put_all(&objects)
    }

    async fn contains(&self, address: &Address) -> Result<bool, CamError> {
        self.read("looking an object up", |table| {
            Ok(table.get(address.as_bytes())?.is_some())
        })
    }

    async fn remove(&self, address: &Address) -> Result<bool, CamError> {
        let path = &self.path;
        let txn = self.begin_write()?;
        let present = txn
            .open_table(OBJECTS)
            .map_err(storage("opening the objects table", path))?
            .remove(address.as_bytes())
            .map_err(storage("removing an object", path))?
            .is_some();
        if present {
            txn.commit().map_err(storage("committing a remove", path))?;
        } else {
            txn.abort()
                .map_err(storage("aborting a remove of an absent object", path))?;
        }
        Ok(present)
    }

    async fn scan(&self, after: Option<Address>, limit: usize) -> Result<Vec<Address>, CamError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after = after.map(Address::to_bytes);
        self.read("scanning addresses", |table| {
            let lower = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
            let range = table.range::<&[u8; 32]>((lower, Bound::Unbounded))?;
            let mut out = Vec::new();
            for entry in range.take(limit) {
                let (key, _) = entry?;
                out.push(Address::from_bytes(*key.value()));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    /// A fresh path in the temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("hologram-cam-{name}-{}.redb", std::process::id()));
            let _ = std::fs::remove_file(&path);
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Overwrites the stored bytes of `address` behind the store's back.
    fn tamper(path: &Path, address: &Address, bytes: &[u8]) {
        let db = Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(OBJECTS)
            .unwrap()
            .insert(address.as_bytes(), bytes)
            .unwrap();
        txn.commit().unwrap();
    }

    #[test]
    fn corrupt_bytes_on_disk_are_reported_not_returned_and_a_put_repairs_them() {
        let file = TempFile::new("corrupt");
        let good = Object::new(b"HELLO WORLD".to_vec());
        let store = RedbStore::create(&file.0).unwrap();
        block_on(store.put(good.clone())).unwrap();
        drop(store);

        tamper(&file.0, &good.address(), b"HELLO WORLd");
        let store = RedbStore::open(&file.0).unwrap();
        assert_eq!(
            block_on(store.get(&good.address())),
            Err(CamError::Corrupt(good.address()))
        );
        assert_eq!(block_on(store.contains(&good.address())), Ok(true));

        block_on(store.put(good.clone())).unwrap();
        assert_eq!(block_on(store.get(&good.address())), Ok(Some(good)));
    }

    #[test]
    fn open_refuses_a_missing_file_and_says_which() {
        let file = TempFile::new("missing");
        match RedbStore::open(&file.0) {
            Err(CamError::Storage(message)) => {
                assert!(message.contains(&file.0.display().to_string()), "{message}")
            }
            other => panic!("expected a storage error, got {other:?}"),
        }
    }

    #[test]
    fn a_put_of_present_objects_leaves_the_file_unchanged() {
        let file = TempFile::new("idempotent");
        let store = RedbStore::create(&file.0).unwrap();
        let objects: Vec<Object> = (0..50u32)
            .map(|i| Object::new(i.to_le_bytes().repeat(64)))
            .collect();
        block_on(store.put_batch(objects.clone())).unwrap();
        let before = std::fs::read(&file.0).unwrap();
        block_on(store.put_batch(objects)).unwrap();
        assert_eq!(std::fs::read(&file.0).unwrap(), before);
    }
}
