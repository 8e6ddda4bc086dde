//! The names journal of `RedbStore` (`with_names_journal`): what a crash at
//! any point leaves, replay, and the journals opening refuses.
//!
//! A crash is imitated by copying the store's file and its journal while
//! the store is open: the copy holds what reached the disk (the journal's
//! synced records, the file as of its last durable commit; redb keeps the
//! commits it did not sync in memory), and opening the copy is what a
//! restarted process would do.

use futures::executor::block_on;
use hologram_cam::JOURNAL_CHECKPOINT_RECORDS;
use hologram_cam::{conformance, CamError, Name, Object, RedbStore, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A fresh directory in the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "hologram-cam-journal-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
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

/// Copies the store file and its journal at `from` to `to`: what a crash
/// now would leave on disk.
fn crash_image(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    let _ = std::fs::remove_file(journal_of(to));
    if journal_of(from).exists() {
        std::fs::copy(journal_of(from), journal_of(to)).unwrap();
    }
}

/// A new store at `path` that journals its names.
fn journaled(path: &Path) -> RedbStore {
    RedbStore::create(path)
        .unwrap()
        .with_names_journal()
        .unwrap()
}

fn name(i: u64) -> Name {
    Name::new(format!("name-{i}").into_bytes()).unwrap()
}

/// splitmix64: the test's own deterministic choices.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Every name of `model` reads back as in it from `store`.
fn check(store: &RedbStore, model: &BTreeMap<u64, Option<Object>>, at: usize) {
    for (i, value) in model {
        let got = block_on(store.get_named(&name(*i))).unwrap();
        assert_eq!(&got, value, "name {i} after write {at}");
    }
}

#[test]
fn a_journaled_store_conforms_and_keeps_its_names_across_a_reopen() {
    let dir = TempDir::new("conforms");
    let path = dir.file("store.redb");
    let store = journaled(&path);
    block_on(conformance::run(&store)).unwrap();
    let names: Vec<_> = (0..20).map(name).collect();
    let set: Vec<_> = names
        .iter()
        .map(|n| (n.clone(), Some(Object::new(n.as_bytes().to_vec()))))
        .collect();
    block_on(store.set_named(set.clone())).unwrap();
    drop(store);
    // Reopened without the journal: what the journal held is replayed all the same.
    let store = RedbStore::open(&path).unwrap();
    for (n, value) in &set {
        assert_eq!(&block_on(store.get_named(n)).unwrap(), value);
    }
}

#[test]
fn a_crash_after_any_write_keeps_every_acknowledged_name() {
    let dir = TempDir::new("crash");
    let path = dir.file("store.redb");
    let image = dir.file("image.redb");
    let store = journaled(&path);
    let mut model: BTreeMap<u64, Option<Object>> = BTreeMap::new();
    let mut rng = 7;
    // Past two checkpoints, so that emptied journals and durable marks are crossed.
    let writes = 2 * JOURNAL_CHECKPOINT_RECORDS as usize + 40;
    for at in 0..writes {
        let mut changes = Vec::new();
        for _ in 0..1 + next(&mut rng) % 3 {
            let i = next(&mut rng) % 12;
            let value = match next(&mut rng) % 4 {
                0 => None,
                _ => Some(Object::new(
                    format!("{at}-{i}-{}", next(&mut rng)).into_bytes(),
                )),
            };
            model.insert(i, value.clone());
            changes.push((name(i), value));
        }
        block_on(store.set_named(changes)).unwrap();
        if next(&mut rng).is_multiple_of(50) || at == writes - 1 {
            crash_image(&path, &image);
            let restarted = RedbStore::open(&image)
                .unwrap()
                .with_names_journal()
                .unwrap();
            check(&restarted, &model, at);
            // And after a second restart of the image (the replay emptied its journal).
            drop(restarted);
            check(&RedbStore::open(&image).unwrap(), &model, at);
        }
    }
    check(&store, &model, writes);
}

#[test]
fn records_at_or_below_the_durable_mark_are_skipped() {
    let dir = TempDir::new("stale");
    let path = dir.file("store.redb");
    let stale = dir.file("stale.journal");
    let store = journaled(&path);
    let one = Object::new(b"one".to_vec());
    let two = Object::new(b"two".to_vec());
    block_on(store.set_named(vec![(name(1), Some(one))])).unwrap();
    std::fs::copy(journal_of(&path), &stale).unwrap();
    block_on(store.set_named(vec![(name(1), Some(two.clone()))])).unwrap();
    drop(store);
    // Opening replays both records and marks them applied durably.
    drop(RedbStore::open(&path).unwrap());
    // A journal that was not emptied (or whose emptying a crash undid)
    // must not take the name back.
    std::fs::copy(&stale, journal_of(&path)).unwrap();
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(block_on(store.get_named(&name(1))).unwrap(), Some(two));
}

/// Where each record of a journal's bytes ends: records follow the 8
/// magic bytes and the 16 bytes of the store's tag, each 28 header bytes (its payload's length first, u32 LE)
/// and its payload; a header of zeros ends them.
fn record_ends(journal: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 24;
    while journal[at..at + 28].iter().any(|&b| b != 0) {
        let len = u32::from_le_bytes(journal[at..at + 4].try_into().unwrap()) as usize;
        at += 28 + len;
        ends.push(at);
    }
    ends
}

#[test]
fn a_cut_last_record_is_dropped_and_a_missing_one_refused() {
    let dir = TempDir::new("cut");
    let path = dir.file("store.redb");
    let image = dir.file("image.redb");
    let store = journaled(&path);
    let one = Object::new(b"one".to_vec());
    block_on(store.set_named(vec![(name(1), Some(one.clone()))])).unwrap();
    block_on(store.set_named(vec![(name(2), Some(Object::new(b"two".to_vec())))])).unwrap();
    block_on(store.set_named(vec![(name(3), Some(Object::new(b"three".to_vec())))])).unwrap();
    let whole = std::fs::read(journal_of(&path)).unwrap();
    let ends = record_ends(&whole);
    assert_eq!(ends.len(), 3);

    // The last append cut short (its last bytes never written: zeros):
    // the first two records are replayed.
    crash_image(&path, &image);
    let mut cut = whole.clone();
    cut[ends[2] - 2..ends[2]].fill(0);
    std::fs::write(journal_of(&image), &cut).unwrap();
    let restarted = RedbStore::open(&image).unwrap();
    assert_eq!(block_on(restarted.get_named(&name(1))).unwrap(), Some(one));
    assert!(block_on(restarted.get_named(&name(2))).unwrap().is_some());
    assert_eq!(block_on(restarted.get_named(&name(3))).unwrap(), None);
    drop(restarted);

    // The second record removed: the third cannot be applied without it.
    crash_image(&path, &image);
    let mut gap = whole[..ends[0]].to_vec();
    gap.extend_from_slice(&whole[ends[1]..]);
    std::fs::write(journal_of(&image), &gap).unwrap();
    match RedbStore::open(&image) {
        Err(CamError::Storage(why)) => assert!(why.contains("missing"), "{why}"),
        other => panic!("opened a journal missing a record: {other:?}"),
    }

    // A damaged record followed by another: refused, not skipped.
    let mut damaged = whole.clone();
    damaged[ends[0] - 1] ^= 1;
    std::fs::write(journal_of(&image), &damaged).unwrap();
    std::fs::copy(&path, &image).unwrap();
    match RedbStore::open(&image) {
        Err(CamError::Storage(why)) => assert!(why.contains("damaged"), "{why}"),
        other => panic!("opened a journal with a damaged record: {other:?}"),
    }
}

#[test]
fn asking_a_journaling_store_to_journal_again_keeps_its_journal() {
    let dir = TempDir::new("again");
    let path = dir.file("store.redb");
    let image = dir.file("image.redb");
    let store = journaled(&path);
    let mut model = BTreeMap::new();
    for i in 0..5 {
        let value = Some(Object::new(format!("value {i}").into_bytes()));
        block_on(store.set_named(vec![(name(i), value.clone())])).unwrap();
        model.insert(i, value);
    }
    // A second call must not start a new journal over the records that
    // hold the acknowledged names (redb has not synced them; a copy of the
    // file cannot show that, as the page cache holds its unsynced pages).
    let before = std::fs::read(journal_of(&path)).unwrap();
    let store = store.with_names_journal().unwrap();
    assert_eq!(std::fs::read(journal_of(&path)).unwrap(), before);
    crash_image(&path, &image);
    check(&RedbStore::open(&image).unwrap(), &model, 5);
    drop(store);
}

/// A `set_named` is atomic for readers too, across checkpoints: a reader
/// that sees a write's fresh name never sees an older value of a name the
/// same write changed (review of session 15: between a checkpoint's
/// commit and the clearing of the changes held in memory, a read found the
/// new name in redb and the old value still held).
#[test]
fn a_reader_never_sees_half_of_a_write_across_checkpoints() {
    let dir = TempDir::new("atomic");
    let path = dir.file("store.redb");
    let store = std::sync::Arc::new(journaled(&path));
    let writes = 10 * (JOURNAL_CHECKPOINT_RECORDS + 1);
    let counter = |i: u64| Some(Object::new(i.to_le_bytes().to_vec()));
    let value = |o: Option<Object>| o.map(|o| u64::from_le_bytes(o.data().try_into().unwrap()));
    let shared = name(u64::MAX);
    let fresh = |i: u64| Name::new(format!("fresh-{i}").into_bytes()).unwrap();
    let reader = {
        let store = std::sync::Arc::clone(&store);
        let shared = shared.clone();
        std::thread::spawn(move || {
            for i in 1..=writes {
                // Wait for write i's fresh name, then read the shared one.
                while block_on(store.get_named(&fresh(i))).unwrap().is_none() {
                    std::hint::spin_loop();
                }
                let seen = value(block_on(store.get_named(&shared)).unwrap());
                assert!(
                    seen >= Some(i),
                    "write {i} seen in part: shared name at {seen:?}"
                );
            }
        })
    };
    for i in 1..=writes {
        block_on(store.set_named(vec![(shared.clone(), counter(i)), (fresh(i), counter(i))]))
            .unwrap();
    }
    reader.join().unwrap();
}
