//! The names journal under failed appends, emptyings and checkpoints (test-only faults
//! of [`journal::faults`](super::journal::faults)): no acknowledged write
//! is lost, none comes back older, and the next write repairs the journal.

use super::journal::faults::{FAIL_APPEND, FAIL_CHECKPOINT, FAIL_EMPTY};
use super::journal::JOURNAL_CHECKPOINT_RECORDS;
use super::RedbStore;
use crate::{Name, Object, Store};
use futures::executor::block_on;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory in the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hologram-cam-journal-faults-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn journal_of(store: &Path) -> PathBuf {
    PathBuf::from(format!("{}.journal", store.display()))
}

/// What a crash now would leave: the file and its journal, copied.
fn crash_image(from: &Path, to: &Path) -> RedbStore {
    std::fs::copy(from, to).unwrap();
    std::fs::copy(journal_of(from), journal_of(to)).unwrap();
    RedbStore::open(to).unwrap()
}

fn name(i: u64) -> Name {
    Name::new(format!("name-{i}").into_bytes()).unwrap()
}

fn value(s: String) -> Option<Object> {
    Some(Object::new(s.into_bytes()))
}

/// Every name of `model` reads as in it.
fn check(store: &RedbStore, model: &BTreeMap<u64, Option<Object>>, what: &str) {
    for (i, v) in model {
        assert_eq!(
            &block_on(store.get_named(&name(*i))).unwrap(),
            v,
            "name {i}, {what}"
        );
    }
}

/// A new journaling store in `dir`, and its path.
fn journaled(dir: &TempDir) -> (PathBuf, RedbStore) {
    let path = dir.0.join("store.redb");
    let store = RedbStore::create(&path).unwrap();
    (path, store.with_names_journal().unwrap())
}

#[test]
fn a_failed_append_loses_nothing_acknowledged_and_the_next_write_checkpoints() {
    let dir = TempDir::new();
    let (path, store) = journaled(&dir);
    let mut model = BTreeMap::new();
    for i in 0..5 {
        block_on(store.set_named(vec![(name(i), value(format!("v{i}")))])).unwrap();
        model.insert(i, value(format!("v{i}")));
    }
    // The append of name 5 reaches the disk and reports an error.
    FAIL_APPEND.with(|f| f.set(true));
    assert!(block_on(store.set_named(vec![(name(5), value("lost?".into()))])).is_err());
    // Not acknowledged: not read in this process.
    assert_eq!(block_on(store.get_named(&name(5))).unwrap(), None);
    // A crash now may replay it (it is on disk); what was acknowledged is there.
    check(
        &crash_image(&path, &dir.0.join("a.redb")),
        &model,
        "crash after the failed append",
    );
    // The next write is a checkpoint: the failed record falls below the
    // mark, and the journal is emptied.
    block_on(store.set_named(vec![(name(6), value("v6".into()))])).unwrap();
    model.insert(6, value("v6".into()));
    model.insert(5, None);
    check(&store, &model, "after the next write");
    let image = crash_image(&path, &dir.0.join("b.redb"));
    check(&image, &model, "crash after the next write");
    drop(image);
    // Journaling goes on as before.
    for i in 7..12 {
        block_on(store.set_named(vec![(name(i), value(format!("v{i}")))])).unwrap();
        model.insert(i, value(format!("v{i}")));
    }
    check(
        &crash_image(&path, &dir.0.join("c.redb")),
        &model,
        "crash after more writes",
    );
}

#[test]
fn a_failed_emptying_takes_nothing_back_and_the_next_write_repairs_it() {
    let dir = TempDir::new();
    let (path, store) = journaled(&dir);
    let mut model = BTreeMap::new();
    // Name 0 is rewritten by every write: an older value coming back shows.
    let write = |store: &RedbStore, i: u64, model: &mut BTreeMap<u64, Option<Object>>| {
        let changes = vec![
            (name(0), value(format!("w{i}"))),
            (name(i), value(format!("v{i}"))),
        ];
        block_on(store.set_named(changes)).unwrap();
        model.insert(0, value(format!("w{i}")));
        model.insert(i, value(format!("v{i}")));
    };
    for i in 1..=JOURNAL_CHECKPOINT_RECORDS {
        write(&store, i, &mut model);
    }
    // The next write is a checkpoint; its emptying fails after zeroing the
    // first header: the write itself is acknowledged.
    FAIL_EMPTY.with(|f| f.set(true));
    write(&store, JOURNAL_CHECKPOINT_RECORDS + 1, &mut model);
    check(&store, &model, "after the failed emptying");
    check(
        &crash_image(&path, &dir.0.join("a.redb")),
        &model,
        "crash after the failed emptying",
    );
    // The next write checkpoints again and empties the journal.
    write(&store, JOURNAL_CHECKPOINT_RECORDS + 2, &mut model);
    for i in JOURNAL_CHECKPOINT_RECORDS + 3..JOURNAL_CHECKPOINT_RECORDS + 10 {
        write(&store, i, &mut model);
    }
    check(&store, &model, "after more writes");
    check(
        &crash_image(&path, &dir.0.join("b.redb")),
        &model,
        "crash after more writes",
    );
}

#[test]
fn a_failed_checkpoint_keeps_what_it_held_readable_and_replayable() {
    let dir = TempDir::new();
    let (path, store) = journaled(&dir);
    let mut model = BTreeMap::new();
    for i in 1..=JOURNAL_CHECKPOINT_RECORDS {
        block_on(store.set_named(vec![(name(i % 7), value(format!("v{i}")))])).unwrap();
        model.insert(i % 7, value(format!("v{i}")));
    }
    // The checkpoint fails before its commit: the write is refused, and
    // what was held stays readable here and replayable after a crash.
    FAIL_CHECKPOINT.with(|f| f.set(true));
    assert!(block_on(store.set_named(vec![(name(100), value("refused".into()))])).is_err());
    model.insert(100, None);
    check(&store, &model, "after the failed checkpoint");
    check(
        &crash_image(&path, &dir.0.join("a.redb")),
        &model,
        "crash after it",
    );
    // The next write checkpoints.
    block_on(store.set_named(vec![(name(3), value("last".into()))])).unwrap();
    model.insert(3, value("last".into()));
    check(&store, &model, "after the next write");
    check(
        &crash_image(&path, &dir.0.join("b.redb")),
        &model,
        "crash after the next write",
    );
}
