//! The named key space of a [`RedbStore`]: a table of its own.
//!
//! [`NAMED`] maps a name's bytes to the object's address (32 bytes)
//! followed by its bytes. A read re-hashes the bytes against the stored
//! address, so a damaged value is reported as [`CamError::Corrupt`] (or, if
//! too short to hold an address, as a storage error), never returned. The
//! object tables are untouched by names, and names by objects.

use super::{journal, storage, RedbStore, META, STORE_FORMAT_VERSION};
use crate::store::Name;
use crate::{CamError, Object, SharedBytes};
use ::redb::{ReadableTable, TableDefinition};
use hologram_lattice::Address;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The names journal of a store that journals, and what its records
/// changed since the last checkpoint.
#[derive(Debug)]
pub(super) struct Journaled {
    /// The journal file; held while a write appends to it or checkpoints.
    log: Mutex<journal::Journal>,
    /// The latest change to each name written since the last checkpoint:
    /// on disk only in the journal, so reads look here first. Bounded by a
    /// checkpoint's records and bytes.
    pending: Mutex<HashMap<Name, Option<Object>>>,
}

/// Locks `m`; a panic while it was held leaves nothing half-changed in
/// the journal's state that a later write does not repair.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Name bytes → address (32 bytes) ‖ object bytes.
pub(super) const NAMED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("named");

/// The names journal's applied mark: [`APPLIED`] → the sequence number of
/// the last journal record whose changes this file holds.
const JOURNAL_MARK: TableDefinition<&str, u64> = TableDefinition::new("journal");
/// The key of the applied mark.
const APPLIED: &str = "applied";
/// The store's journal key (32 bytes; see [`journal::JournalKey`]), under
/// [`KEY`]: drawn when a store is first opened by a build that journals.
const JOURNAL_KEY: TableDefinition<&str, &[u8]> = TableDefinition::new("journal-key");
/// The key of the journal key.
const KEY: &str = "key";

impl RedbStore {
    /// The object under `name`: the journal's latest change to it since the
    /// last checkpoint, if any; else the file's, re-hashed against its
    /// stored address.
    pub(super) fn read_named(&self, name: &Name) -> Result<Option<Object>, CamError> {
        if let Some(journal) = &self.journal {
            if let Some(change) = lock(&journal.pending).get(name) {
                return Ok(change.clone());
            }
        }
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

    /// Applies `changes`: in one durable transaction, or, when the store
    /// journals its names, appended to the journal and kept in memory until
    /// a checkpoint commits them all (see [`journal`](super::journal)).
    pub(super) fn write_named(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError> {
        if changes.is_empty() {
            return Ok(());
        }
        let Some(journal) = &self.journal else {
            return self.commit_named(changes, None);
        };
        let mut log = lock(&journal.log);
        let sequence = log.next;
        log.next += 1;
        let mut durable = log.durable_due();
        if !durable {
            if journal::encoded_len(&changes) > journal::JOURNAL_MAX_RECORD_BYTES {
                durable = true;
            } else if let Err(e) = log.append(sequence, &journal::encode(&changes)) {
                // The record may or may not be on disk: the next write
                // commits past its sequence, durably.
                log.failed = true;
                return Err(e);
            }
        }
        if !durable {
            // Durable in the journal; readers find it in memory.
            lock(&journal.pending).extend(changes);
            return Ok(());
        }
        // A checkpoint: the changes held in memory, then these, and the
        // mark past this sequence, in one synced commit. Readers wait for
        // it: between the commit and the clearing of what is held, a read
        // would find this write's new values in redb beside older values
        // still held for other names (half of an atomic write). If the
        // commit fails, the changes held stay held and readable.
        let mut pending = lock(&journal.pending);
        let held: Vec<_> = pending
            .iter()
            .map(|(name, object)| (name.clone(), object.clone()))
            .collect();
        let all = held.into_iter().chain(changes).collect();
        #[cfg(test)]
        if journal::faults::take(&journal::faults::FAIL_CHECKPOINT) {
            log.failed = true;
            return Err(CamError::Storage("a checkpoint: a test's fault".into()));
        }
        if let Err(e) = self.commit_named(all, Some(sequence)) {
            log.failed = true;
            return Err(e);
        }
        pending.clear();
        drop(pending);
        // Every record is now below the durable mark; an emptying that
        // fails leaves them to be skipped, and is tried again next time.
        if let Err(e) = log.empty() {
            tracing::warn!(error = %e, "the names journal could not be emptied");
            log.failed = true;
        }
        Ok(())
    }

    /// Applies `changes` in one durable transaction, with the journal's
    /// applied mark set to `mark` if given.
    fn commit_named(
        &self,
        changes: Vec<(Name, Option<Object>)>,
        mark: Option<u64>,
    ) -> Result<(), CamError> {
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
            if let Some(mark) = mark {
                txn.open_table(JOURNAL_MARK)
                    .and_then(|mut t| t.insert(APPLIED, mark).map(drop).map_err(Into::into))
                    .map_err(storage("writing the journal's applied mark", &self.path))?;
            }
            Ok(((), true))
        })
    }

    /// The sequence number of the last journal record applied durably (0:
    /// none).
    fn journal_mark(&self) -> Result<u64, CamError> {
        self.write("reading the journal's mark", |txn| {
            let table = txn
                .open_table(JOURNAL_MARK)
                .map_err(storage("opening the journal's mark", &self.path))?;
            let mark = table
                .get(APPLIED)
                .map_err(storage("reading the journal's mark", &self.path))?
                .map_or(0, |v| v.value());
            Ok((mark, false))
        })
    }

    /// The store's journal key, drawn and committed (durably) if it has
    /// none yet.
    fn journal_key(&self) -> Result<journal::JournalKey, CamError> {
        self.write("reading the journal's key", |txn| {
            let mut table = txn
                .open_table(JOURNAL_KEY)
                .map_err(storage("opening the journal's key", &self.path))?;
            let found = table
                .get(KEY)
                .map_err(storage("reading the journal's key", &self.path))?
                .map(|v| <[u8; 32]>::try_from(v.value()));
            match found {
                Some(Ok(key)) => Ok((journal::JournalKey::new(key), false)),
                Some(Err(_)) => Err(CamError::Storage(format!(
                    "redb: the journal's key in {} is not 32 bytes",
                    self.path.display()
                ))),
                None => {
                    let key = journal::JournalKey::generate();
                    table
                        .insert(KEY, &key.bytes()[..])
                        .map_err(storage("writing the journal's key", &self.path))?;
                    Ok((key, true))
                }
            }
        })
    }

    /// Replays the names journal beside the file, if there is one: the
    /// records after the durable mark, in one durable commit; then empties
    /// it. Returns the sequence number the next record takes, and the
    /// emptied journal.
    pub(super) fn replay_journal(&self) -> Result<journal::Replayed, CamError> {
        let mark = self.journal_mark()?;
        let key = self.journal_key()?;
        let path = journal::path_for(&self.path);
        let Some(read) = journal::read(&path, mark, &key)? else {
            return Ok(journal::Replayed {
                next: mark + 1,
                file: None,
                key,
            });
        };
        let mut changes = Vec::new();
        let mut last = mark;
        for (sequence, payload) in &read.records {
            if *sequence <= mark {
                continue;
            }
            if *sequence != last + 1 {
                return Err(CamError::Storage(format!(
                    "names journal {}: record {} follows {last}: the records between are missing",
                    path.display(),
                    sequence
                )));
            }
            let decoded = journal::decode(payload).map_err(|why| {
                CamError::Storage(format!(
                    "names journal {}: record {sequence} does not decode: {why}",
                    path.display()
                ))
            })?;
            changes.extend(decoded);
            last = *sequence;
        }
        if read.torn_bytes > 0 {
            tracing::warn!(
                journal = %path.display(),
                bytes = read.torn_bytes,
                "dropping an incomplete last record of the names journal"
            );
        }
        if last > mark {
            tracing::info!(journal = %path.display(), records = last - mark, "replaying the names journal");
            self.commit_named(changes, Some(last))?;
        }
        Ok(journal::Replayed {
            next: last + 1,
            file: Some(journal::reset(&path, &key)?),
            key,
        })
    }

    /// From now on, `set_named` appends each change set to a journal
    /// beside the file (`<file>.journal`) and syncs that, instead of
    /// syncing a redb commit: a few KiB written per call rather than every
    /// page the commit touched. Every [`JOURNAL_CHECKPOINT_RECORDS`](super::JOURNAL_CHECKPOINT_RECORDS)
    /// records or [`JOURNAL_CHECKPOINT_BYTES`](super::JOURNAL_CHECKPOINT_BYTES) bytes, a
    /// durable redb commit empties the journal. The durability promise is
    /// the same: when `set_named` returns `Ok`, the change survives a
    /// crash (opening the store replays the journal). The file is stamped
    /// with format version 2, so that builds that would not replay the
    /// journal refuse it. On a store that journals already, this does
    /// nothing.
    ///
    /// ```
    /// use futures::executor::block_on;
    /// use hologram_cam::{Name, Object, RedbStore, Store};
    ///
    /// let path = std::env::temp_dir().join(format!("hologram-journal-doc-{}.redb", std::process::id()));
    /// let store = RedbStore::create(&path).unwrap().with_names_journal().unwrap();
    /// let name = Name::new(b"head".to_vec()).unwrap();
    /// let obj = Object::new(b"block 7".to_vec());
    /// block_on(store.set_named(vec![(name.clone(), Some(obj.clone()))])).unwrap();
    /// assert_eq!(block_on(store.get_named(&name)).unwrap(), Some(obj));
    /// # drop(store);
    /// # std::fs::remove_file(&path).unwrap();
    /// # std::fs::remove_file(format!("{}.journal", path.display())).unwrap();
    /// ```
    pub fn with_names_journal(mut self) -> Result<Self, CamError> {
        let path = self.path.clone();
        // Opening replayed the journal and left it empty; nothing else
        // writes to it until it is started here.
        let Some(replayed) = self.replayed.take() else {
            return Ok(self);
        };
        self.guarded("starting the names journal", || {
            self.write("stamping the format version", |txn| {
                let mut meta = txn
                    .open_table(META)
                    .map_err(storage("opening the meta table", &path))?;
                meta.insert("format", STORE_FORMAT_VERSION)
                    .map_err(storage("writing the format version", &path))?;
                Ok(((), true))
            })
        })?;
        let log = journal::Journal::start(journal::path_for(&path), replayed)?;
        self.journal = Some(Journaled {
            log: Mutex::new(log),
            pending: Mutex::new(HashMap::new()),
        });
        Ok(self)
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
