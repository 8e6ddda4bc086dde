//! A data directory written by today's format, committed to the repository
//! (`tests/fixtures/data-v1/`), opened and read back: a change to the
//! store's format that cannot read old data fails here.
//!
//! The fixture is a [`RedbStore`] file of format version 1
//! ([`STORE_FORMAT_VERSION`]) holding objects (small ones packed in a
//! segment, one over a segment's size, an empty one), named records (one
//! of them a dedup scrub cursor) and durable reference sets. The test
//! opens a copy (opening may write) and checks every byte of it.
//!
//! Regenerating it is for a deliberate format change only, and then the
//! old directory stays beside the new one (under its own version) so that
//! its test keeps opening it:
//!
//! ```text
//! HOLOGRAM_WRITE_FIXTURES=1 cargo test -p hologram-cam --test fixture_data_dir
//! ```

use futures::executor::block_on;
use hologram_cam::dedup::{Reference, ReferenceSet, SCRUB_CURSOR};
use hologram_cam::{DedupHandler, Name, Object, RedbStore, ReferenceStore, Store};
use hologram_lattice::{Address, NodeId};
use std::path::{Path, PathBuf};

/// The fixture's directory and the store file in it.
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/data-v1");
const STORE_FILE: &str = "store.redb";

/// The format version the fixture was written with.
const FIXTURE_VERSION: u32 = 1;

/// `n` pseudo-random bytes (xorshift from `x`).
fn bytes(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The objects: eight small ones, one of 65 KiB (over a segment of 64 KiB), an
/// empty one.
fn objects() -> Vec<Object> {
    let mut objects: Vec<Object> = (0..8)
        .map(|i| Object::new(format!("hologram fixture object {i}").into_bytes()))
        .collect();
    objects.push(Object::new(bytes(65 << 10, 22)));
    objects.push(Object::new(Vec::new()));
    objects
}

/// The named records.
fn names() -> Vec<(Name, Object)> {
    let cursor = objects()[3].address();
    vec![
        (
            Name::new(&b"hologram fixture name"[..]).unwrap(),
            Object::new(&b"a named value"[..]),
        ),
        (
            Name::new(SCRUB_CURSOR).unwrap(),
            Object::new(cursor.as_bytes().to_vec()),
        ),
    ]
}

/// The reference sets, of the first two objects.
fn references() -> Vec<(Address, ReferenceSet)> {
    let reference = |client: u8, op| Reference {
        client: NodeId::from_bytes([client; 32]),
        op,
    };
    let objects = objects();
    vec![
        (
            objects[0].address(),
            ReferenceSet {
                live: [reference(7, 1), reference(7, 2)].into_iter().collect(),
                released: [reference(7, 3)].into_iter().collect(),
            },
        ),
        (
            objects[1].address(),
            ReferenceSet {
                live: [reference(8, u64::MAX)].into_iter().collect(),
                released: Default::default(),
            },
        ),
    ]
}

/// A copy of the fixture in a fresh temporary directory.
fn copy_of_fixture() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hologram-fixture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(FIXTURE).expect("the committed fixture directory") {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

/// The format version recorded in the file's `meta` table, read with redb
/// itself rather than through the store.
fn recorded_version(file: &Path) -> Option<u32> {
    use redb::{ReadableDatabase, ReadableTable};
    let meta: redb::TableDefinition<&str, u32> = redb::TableDefinition::new("meta");
    let db = redb::Database::open(file).ok()?;
    let txn = db.begin_read().ok()?;
    let table = txn.open_table(meta).ok()?;
    let version = table.get("format").ok()??.value();
    Some(version)
}

#[test]
fn the_committed_data_directory_of_format_1_opens_and_reads_back() {
    if std::env::var_os("HOLOGRAM_WRITE_FIXTURES").is_some() {
        return; // The writer below is rewriting it.
    }
    let dir = copy_of_fixture();
    let file = dir.join(STORE_FILE);
    assert_eq!(recorded_version(&file), Some(FIXTURE_VERSION));
    let store = std::sync::Arc::new(RedbStore::open(&file).expect("a format 1 file opens"));
    let objects = objects();
    let mut addresses: Vec<Address> = objects.iter().map(Object::address).collect();
    addresses.sort();
    assert_eq!(block_on(store.scan(None, 100)).unwrap(), addresses);
    for o in &objects {
        assert_eq!(
            block_on(store.get(&o.address())).unwrap().as_ref(),
            Some(o),
            "{}",
            o.address()
        );
    }
    for (name, value) in names() {
        assert_eq!(block_on(store.get_named(&name)).unwrap(), Some(value));
    }
    for (address, set) in references() {
        assert_eq!(block_on(store.load(&address)).unwrap(), Some(set));
    }
    // A durable dedup holder over it counts the references it recorded,
    // and one unknown reference for an object without a record.
    let holder = DedupHandler::durable(std::sync::Arc::clone(&store));
    assert_eq!(block_on(holder.refs(&objects[0].address())).unwrap(), 2);
    assert_eq!(block_on(holder.refs(&objects[1].address())).unwrap(), 1);
    assert_eq!(block_on(holder.refs(&objects[5].address())).unwrap(), 1);
    drop(holder);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rewrites the fixture (only with `HOLOGRAM_WRITE_FIXTURES` set; see the
/// module docs).
#[test]
fn write_fixture() {
    if std::env::var_os("HOLOGRAM_WRITE_FIXTURES").is_none() {
        return;
    }
    let _ = std::fs::remove_dir_all(FIXTURE);
    std::fs::create_dir_all(FIXTURE).unwrap();
    let file = Path::new(FIXTURE).join(STORE_FILE);
    let store = RedbStore::create(&file).unwrap();
    block_on(store.put_batch(objects())).unwrap();
    block_on(
        store.set_named(
            names()
                .into_iter()
                .map(|(name, value)| (name, Some(value)))
                .collect(),
        ),
    )
    .unwrap();
    for (address, set) in references() {
        block_on(store.save(&address, &set)).unwrap();
    }
    drop(store);
    // A store that does not journal its names is stamped format 1.
    assert_eq!(recorded_version(&file), Some(FIXTURE_VERSION));
    println!(
        "wrote {} ({} bytes)",
        file.display(),
        std::fs::metadata(&file).unwrap().len()
    );
}
