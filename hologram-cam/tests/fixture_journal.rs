//! Stores whose names journal holds records their file does not (what a
//! crash leaves), committed to the repository, one per journal format
//! (`tests/fixtures/journal-v1/`: `store.redb` of format version 2 and
//! `store.redb.journal` of format `HGNAMEJ1`; `journal-v2/`: `HGNAMEJ2`,
//! keyed checksums, the key in the file), opened and read back: a change
//! to the journal's format that cannot replay old journals fails here.
//!
//! Regenerating it is for a deliberate format change only, and then the
//! old directory stays beside the new one (under its own version):
//!
//! ```text
//! HOLOGRAM_WRITE_FIXTURES=1 cargo test -p hologram-cam --test fixture_journal
//! ```

use futures::executor::block_on;
use hologram_cam::{Name, Object, RedbStore, Store};
use std::path::{Path, PathBuf};

/// The fixtures' directories, oldest first; the writer rewrites the last.
const FIXTURES: [&str; 2] = [
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/journal-v1"),
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/journal-v2"),
];
/// The store file and its journal in each.
const STORE_FILE: &str = "store.redb";
const JOURNAL_FILE: &str = "store.redb.journal";

/// The names as the fixture's writer left them: each of its writes, in
/// order (the later ones overwrite or remove earlier ones).
fn writes() -> Vec<Vec<(Name, Option<Object>)>> {
    let name = |i: u32| Name::new(format!("hologram fixture name {i}").into_bytes()).unwrap();
    let value = |s: &str| Some(Object::new(s.as_bytes().to_vec()));
    vec![
        vec![(name(0), value("zero")), (name(1), value("one"))],
        vec![(name(2), value("two")), (name(1), value("one, again"))],
        vec![
            (name(0), None),
            (name(3), Some(Object::new(vec![7u8; 5000]))),
        ],
        vec![(name(4), Some(Object::new(Vec::new())))],
    ]
}

/// What each name holds after every write.
fn expected() -> Vec<(Name, Option<Object>)> {
    let mut last: Vec<(Name, Option<Object>)> = Vec::new();
    for (name, value) in writes().into_iter().flatten() {
        last.retain(|(n, _)| *n != name);
        last.push((name, value));
    }
    last
}

/// A copy of `fixture` in a fresh temporary directory.
fn copy_of_fixture(fixture: &str, n: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hologram-fixture-journal-{}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in [STORE_FILE, JOURNAL_FILE] {
        std::fs::copy(Path::new(fixture).join(file), dir.join(file))
            .expect("the committed fixture directory");
    }
    dir
}

#[test]
fn the_committed_journals_are_replayed() {
    if std::env::var_os("HOLOGRAM_WRITE_FIXTURES").is_some() {
        return; // The writer below is rewriting them.
    }
    for (n, fixture) in FIXTURES.into_iter().enumerate() {
        let dir = copy_of_fixture(fixture, n);
        let file = dir.join(STORE_FILE);
        // Without the journal, the file holds none of the names.
        {
            let bare = dir.join("bare.redb");
            std::fs::copy(&file, &bare).unwrap();
            let store = RedbStore::open(&bare).unwrap();
            for (name, _) in expected() {
                assert_eq!(block_on(store.get_named(&name)).unwrap(), None, "{fixture}");
            }
        }
        let store = RedbStore::open(&file).expect("the fixture opens");
        for (name, value) in expected() {
            assert_eq!(
                block_on(store.get_named(&name)).unwrap(),
                value,
                "{fixture}: {name:?}"
            );
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Rewrites the newest fixture (only with `HOLOGRAM_WRITE_FIXTURES` set; see the
/// module docs): the writes journaled, then the file and the journal
/// copied while the store is open, as a crash would leave them.
#[test]
fn write_fixture() {
    if std::env::var_os("HOLOGRAM_WRITE_FIXTURES").is_none() {
        return;
    }
    let scratch = std::env::temp_dir().join(format!("hologram-journal-w-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let file = scratch.join(STORE_FILE);
    let store = RedbStore::create(&file)
        .unwrap()
        .with_names_journal()
        .unwrap();
    for changes in writes() {
        block_on(store.set_named(changes)).unwrap();
    }
    let newest = FIXTURES[FIXTURES.len() - 1];
    let _ = std::fs::remove_dir_all(newest);
    std::fs::create_dir_all(newest).unwrap();
    for name in [STORE_FILE, JOURNAL_FILE] {
        std::fs::copy(scratch.join(name), Path::new(newest).join(name)).unwrap();
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&scratch);
}
