//! [`RedbStore`]: a durable [`Store`] in one [redb](::redb) database file.
//!
//! Objects are packed into segments under an index ([`layout`] describes
//! the tables and why). Nothing read from the file is trusted: a damaged
//! file can at worst yield bytes that fail the hash check, which `get`
//! reports as [`CamError::Corrupt`], or make redb itself fail, which every
//! call reports as an error ([`guard`](self) below: redb panics on some
//! damaged pages).

mod journal;
#[cfg(test)]
mod journal_faults;
mod layout;
mod named;
mod references;
#[cfg(test)]
mod tests;

pub use self::journal::{
    JOURNAL_CHECKPOINT_BYTES, JOURNAL_CHECKPOINT_RECORDS, JOURNAL_MAX_RECORD_BYTES,
};
pub use self::layout::SEGMENT_BYTES;

use self::layout::{slice, Location, Tables, INDEX, LIVE, MEMBERS, SEGMENTS};
use super::{Name, Store};
use crate::{CamError, Object, SharedBytes};
use ::redb::{
    Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition, WriteTransaction,
};
use async_trait::async_trait;
use hologram_lattice::Address;
use std::fmt::Display;
use std::ops::Bound;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The page cache a [`RedbStore`] keeps by default: 64 MiB. redb's own
/// default (1 GiB) lets a long-running process's cache grow to a large share
/// of RAM as the file grows; pass another bound to
/// [`RedbStore::create_with_cache`] or [`RedbStore::open_with_cache`]. The
/// operating system's page cache still holds recently read file pages.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// The format version of a store's file that this build writes and reads:
/// its tables and their encodings. A file carries it in its `meta` table;
/// one without it predates versioning and is version 1. A newer version is
/// refused with [`CamError::UnsupportedFormat`], before anything is written.
///
/// Version 2 adds the names journal ([`RedbStore::with_names_journal`]): a
/// file that journals its names is stamped 2, so that a build that would
/// not replay the journal refuses it. A file that does not journal is
/// stamped 1, so that earlier builds still open it.
pub const STORE_FORMAT_VERSION: u32 = 2;

/// The format version a new file is stamped with until it journals its
/// names: version 1, which builds from before the journal read.
const PLAIN_FORMAT_VERSION: u32 = 1;

/// The store's own facts about its file: `"format"` → its version.
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");

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
/// - **Damaged files.** redb panics on some damaged pages (a flipped byte
///   in a table's definition, for one) rather than returning an error.
///   Every call into redb runs under [`catch_unwind`]: such a panic is
///   answered with [`CamError::Storage`] naming the file, and the store
///   refuses every later call the same way (redb's state after a panic is
///   not trusted); open the file again after restoring it, or rebuild the
///   node's data from its peers. The panic's own message still reaches the
///   process's panic hook (stderr by default). With `panic = "abort"` no
///   panic can be caught, and a damaged file stops the process.
///   (`tests/redb_file_rot.rs` flips bytes of real files.)
/// - **Crashes.** Opening a file left by a crashed process works: redb
///   detects the unclean shutdown and repairs the file on open (which can
///   take a while for a large file), keeping every committed transaction.
/// - **Threads.** redb is synchronous and this crate has no runtime, so the
///   async methods do their I/O (including the fsync of a commit) on the
///   thread that polls them and complete on the first poll. Under an async
///   runtime, call them from a blocking pool (e.g. `spawn_blocking`) if
///   blocking a worker thread for a commit is a problem. Write transactions
///   are serialized by redb; reads run concurrently with them.
/// - **Memory.** redb caches pages in memory up to a bound fixed at open:
///   [`DEFAULT_CACHE_BYTES`] unless given ([`RedbStore::create_with_cache`]).
/// - **Names.** The named key space is a table of its own, one lookup per
///   `get_named`; `set_named` is one durable transaction, or, with
///   [`with_names_journal`](Self::with_names_journal), one record appended
///   and synced to a journal beside the file, its changes kept in memory
///   (where reads look first) until a checkpoint commits them to redb:
///   at most [`JOURNAL_CHECKPOINT_RECORDS`] records and
///   [`JOURNAL_CHECKPOINT_BYTES`] bytes (opening a store replays a journal
///   it finds, whether or not it journals itself).
/// - **Layout.** Small objects are packed into segments of about
///   [`SEGMENT_BYTES`] under an index: a B-tree of 1 KiB values keyed by
///   random addresses would rewrite one page per object in each commit,
///   while packed, a batch of them commits about three times faster. A
///   `get` reads the object's segment and re-hashes its slice. A segment's
///   space is reclaimed when its last object is removed (there is no
///   compaction).
///
/// ```
/// use futures::executor::block_on;
/// use hologram_cam::RedbStore;
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
    /// A call into redb panicked: nothing more is asked of it.
    broken: AtomicBool,
    /// The names journal, if `set_named` writes ahead to one.
    journal: Option<named::Journaled>,
    /// What opening left of the journal (emptied, and the sequence number
    /// its next record takes) until [`with_names_journal`](Self::with_names_journal)
    /// starts it; `None` once started.
    replayed: Option<journal::Replayed>,
}

/// Turns a redb error into [`CamError::Storage`] saying what was being done.
pub(crate) fn storage<'p, E: Display>(
    doing: &'static str,
    path: &'p Path,
) -> impl FnOnce(E) -> CamError + 'p {
    move |e| CamError::Storage(format!("redb: {doing} in {}: {e}", path.display()))
}

/// Runs `f`, which calls into redb; a panic in it becomes
/// [`CamError::Storage`] naming the file and what was being done.
fn guard<T>(
    doing: &'static str,
    path: &Path,
    f: impl FnOnce() -> Result<T, CamError>,
) -> Result<T, CamError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(panicked(doing, path)))
}

/// The error for a panic in redb while `doing` in `path`, logged.
fn panicked(doing: &str, path: &Path) -> CamError {
    tracing::error!(path = %path.display(), doing, "redb panicked: the file is damaged");
    CamError::Storage(format!(
        "redb: {doing} in {}: redb panicked (the file is damaged); the store refuses every further call",
        path.display()
    ))
}

impl RedbStore {
    /// Opens the store in the existing file at `path` (repairing it if a
    /// crashed process left it behind), with a page cache of
    /// [`DEFAULT_CACHE_BYTES`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CamError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`open`](Self::open) with a page cache of at most `cache_bytes`.
    pub fn open_with_cache(path: impl AsRef<Path>, cache_bytes: usize) -> Result<Self, CamError> {
        let path = path.as_ref();
        guard("opening the database", path, || {
            let db = Database::builder()
                .set_cache_size(cache_bytes)
                .open(path)
                .map_err(storage("opening the database", path))?;
            Self::with_tables(db, path)
        })
    }

    /// Opens the store at `path`, creating the file if it does not exist or
    /// is empty (an existing store is opened as by [`RedbStore::open`]),
    /// with a page cache of [`DEFAULT_CACHE_BYTES`].
    pub fn create(path: impl AsRef<Path>) -> Result<Self, CamError> {
        Self::create_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`create`](Self::create) with a page cache of at most `cache_bytes`.
    pub fn create_with_cache(path: impl AsRef<Path>, cache_bytes: usize) -> Result<Self, CamError> {
        let path = path.as_ref();
        guard("creating the database", path, || {
            let db = Database::builder()
                .set_cache_size(cache_bytes)
                .create(path)
                .map_err(storage("creating the database", path))?;
            Self::with_tables(db, path)
        })
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f`, one operation `op` of the store's traits, timed (see
    /// `telemetry`) and [`guarded`](Self::guarded).
    fn call<T>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T, CamError>,
    ) -> Result<T, CamError> {
        crate::telemetry::timed(op, || self.guarded(op, f))
    }

    /// Runs `f`, which calls into redb while `doing`; a panic in it becomes
    /// an error, and once one did, every call is refused.
    pub(crate) fn guarded<T>(
        &self,
        doing: &'static str,
        f: impl FnOnce() -> Result<T, CamError>,
    ) -> Result<T, CamError> {
        if self.broken.load(Ordering::Acquire) {
            return Err(CamError::Storage(format!(
                "redb: {doing} in {}: refused, an earlier call into redb panicked (the file is damaged)",
                self.path.display()
            )));
        }
        catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
            self.broken.store(true, Ordering::Release);
            Err(panicked(doing, &self.path))
        })
    }

    /// Checks the file's format version, then makes sure the tables exist,
    /// so that readers can always open them.
    fn with_tables(db: Database, path: &Path) -> Result<Self, CamError> {
        let store = Self {
            db,
            path: path.to_path_buf(),
            broken: AtomicBool::new(false),
            journal: None,
            replayed: None,
        };
        store.write("stamping the format version", |txn| {
            let mut meta = txn
                .open_table(META)
                .map_err(storage("opening the meta table", path))?;
            let found = meta
                .get("format")
                .map_err(storage("reading the format version", path))?
                .map(|v| v.value());
            match found {
                Some(found) if found > STORE_FORMAT_VERSION => Err(CamError::UnsupportedFormat {
                    what: format!("the store {}", path.display()),
                    found,
                    supported: STORE_FORMAT_VERSION,
                }),
                Some(_) => Ok(((), false)),
                // A new file, or one from before versions: the plain format.
                None => {
                    meta.insert("format", PLAIN_FORMAT_VERSION)
                        .map_err(storage("writing the format version", path))?;
                    Ok(((), true))
                }
            }
        })?;
        store.write("creating the tables", |txn| {
            store.tables(txn)?;
            txn.open_table(references::REFERENCES)
                .map_err(storage("opening the references", path))?;
            txn.open_table(named::NAMED)
                .map_err(storage("opening the named table", path))?;
            Ok(((), true))
        })?;
        let replayed = store.replay_journal()?;
        Ok(Self {
            replayed: Some(replayed),
            ..store
        })
    }

    /// Runs `f` in one durable write transaction. `f` returns its result
    /// and whether it changed anything: the transaction is committed if it
    /// did and aborted otherwise (costing no fsync).
    pub(crate) fn write<T>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&WriteTransaction) -> Result<(T, bool), CamError>,
    ) -> Result<T, CamError> {
        let path = &self.path;
        let mut txn = self
            .db
            .begin_write()
            .map_err(storage("beginning a write transaction", path))?;
        txn.set_durability(Durability::Immediate)
            .map_err(storage("asking for a durability", path))?;
        let (out, changed) = f(&txn)?;
        if changed {
            txn.commit().map_err(storage(doing, path))?;
        } else {
            txn.abort().map_err(storage(doing, path))?;
        }
        Ok(out)
    }

    /// The object tables, opened in `txn`.
    fn tables<'t>(&self, txn: &'t WriteTransaction) -> Result<Tables<'t>, CamError> {
        let open = storage("opening the object tables", &self.path);
        let (index, segments, live, members) = (|| {
            Ok::<_, ::redb::TableError>((
                txn.open_table(INDEX)?,
                txn.open_table(SEGMENTS)?,
                txn.open_table(LIVE)?,
                txn.open_table(MEMBERS)?,
            ))
        })()
        .map_err(open)?;
        Ok(Tables {
            index,
            segments,
            live,
            members,
            compact: Vec::new(),
        })
    }

    /// A read transaction.
    fn begin_read(&self) -> Result<ReadTransaction, CamError> {
        self.db
            .begin_read()
            .map_err(storage("beginning a read transaction", &self.path))
    }

    /// The index, opened for reading in `txn`.
    fn index(
        &self,
        txn: &ReadTransaction,
    ) -> Result<ReadOnlyTable<&'static [u8; 32], Location>, CamError> {
        txn.open_table(INDEX)
            .map_err(storage("opening the index", &self.path))
    }

    /// [`Store::corrupt_among`]: one read transaction; the index walked
    /// once over the addresses' span (a scrub's page is a run of
    /// neighbours), each segment read once, each object's slice re-hashed
    /// in place.
    fn corrupt_among_now(&self, addresses: &[Address]) -> Result<Vec<Address>, CamError> {
        let path = &self.path;
        let mut wanted = addresses.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let (Some(first), Some(last)) = (wanted.first(), wanted.last()) else {
            return Ok(Vec::new());
        };
        let txn = self.begin_read()?;
        let index = self.index(&txn)?;
        let mut located = Vec::with_capacity(wanted.len());
        let mut next = wanted.iter().peekable();
        let span = index
            .range(first.as_bytes()..=last.as_bytes())
            .map_err(storage("reading the index", path))?;
        for entry in span {
            let (key, location) = entry.map_err(storage("reading the index", path))?;
            let key = Address::from_bytes(*key.value());
            // Addresses asked for but not stored are skipped, as stored
            // ones not asked for.
            while next.next_if(|a| **a < key).is_some() {}
            if next.next_if_eq(&&key).is_some() {
                let (segment, offset, length) = location.value();
                located.push((segment, offset, length, key));
            }
            if next.peek().is_none() {
                break;
            }
        }
        located.sort_unstable();
        let segments = txn
            .open_table(SEGMENTS)
            .map_err(storage("opening the segments", path))?;
        let mut corrupt = Vec::new();
        for group in located.chunk_by(|a, b| a.0 == b.0) {
            let stored = segments
                .get(group[0].0)
                .map_err(storage("reading a segment", path))?;
            for &(_, offset, length, address) in group {
                let good = stored
                    .as_ref()
                    .and_then(|s| slice(s.value(), offset, length))
                    .is_some_and(|bytes| Address::of(bytes) == address);
                if !good {
                    corrupt.push(address);
                }
            }
        }
        corrupt.sort_unstable();
        Ok(corrupt)
    }

    /// Writes the objects that are missing or differ in one durable
    /// transaction; commits nothing if every one is present already.
    fn put_all(&self, objects: &[Object]) -> Result<(), CamError> {
        self.write("committing a put", |txn| {
            let changed = self
                .tables(txn)?
                .put_all(objects)
                .map_err(storage("writing objects", &self.path))?;
            Ok(((), changed))
        })
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, address: &Address) -> Result<Option<Object>, CamError> {
        self.call("get", || {
            let path = &self.path;
            let txn = self.begin_read()?;
            let Some((segment, offset, length)) = self
                .index(&txn)?
                .get(address.as_bytes())
                .map_err(storage("reading the index", path))?
                .map(|entry| entry.value())
            else {
                return Ok(None);
            };
            let segments = txn
                .open_table(SEGMENTS)
                .map_err(storage("opening the segments", path))?;
            let bytes = segments
                .get(segment)
                .map_err(storage("reading a segment", path))?
                .and_then(|stored| {
                    slice(stored.value(), offset, length).map(SharedBytes::copy_from_slice)
                })
                .ok_or(CamError::Corrupt(*address))?;
            Object::verify(*address, bytes)
                .map(Some)
                .map_err(|_| CamError::Corrupt(*address))
        })
    }

    async fn put(&self, object: Object) -> Result<(), CamError> {
        self.call("put", || self.put_all(std::slice::from_ref(&object)))
    }

    /// One read transaction; the index walked once over the addresses'
    /// span (a scrub's page is a run of neighbours), each segment read
    /// once, each object's slice re-hashed in place.
    async fn corrupt_among(&self, addresses: &[Address]) -> Result<Vec<Address>, CamError> {
        self.guarded("checking objects", || self.corrupt_among_now(addresses))
    }

    async fn put_batch(&self, objects: Vec<Object>) -> Result<(), CamError> {
        self.call("put", || {
            if objects.is_empty() {
                return Ok(());
            }
            self.put_all(&objects)
        })
    }

    async fn contains(&self, address: &Address) -> Result<bool, CamError> {
        self.call("contains", || {
            let txn = self.begin_read()?;
            let index = self.index(&txn)?;
            let found = index
                .get(address.as_bytes())
                .map_err(storage("reading the index", &self.path))?;
            Ok(found.is_some())
        })
    }

    async fn remove(&self, address: &Address) -> Result<bool, CamError> {
        self.call("remove", || {
            self.write("committing a remove", |txn| {
                let present = self
                    .tables(txn)?
                    .remove(address)
                    .map_err(storage("removing an object", &self.path))?;
                Ok((present, present))
            })
        })
    }

    async fn scan(&self, after: Option<Address>, limit: usize) -> Result<Vec<Address>, CamError> {
        self.call("scan", || {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let path = &self.path;
            let after = after.map(Address::to_bytes);
            let txn = self.begin_read()?;
            let index = self.index(&txn)?;
            let lower = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
            let range = index
                .range((lower, Bound::Unbounded))
                .map_err(storage("scanning addresses", path))?;
            let mut out = Vec::new();
            for entry in range.take(limit) {
                let (key, _) = entry.map_err(storage("scanning addresses", path))?;
                out.push(Address::from_bytes(*key.value()));
            }
            Ok(out)
        })
    }

    async fn get_named(&self, name: &Name) -> Result<Option<Object>, CamError> {
        self.call("get_named", || self.read_named(name))
    }

    async fn set_named(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError> {
        self.call("set_named", || self.write_named(changes))
    }
}
