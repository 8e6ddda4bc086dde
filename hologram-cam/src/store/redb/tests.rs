//! Unit tests of the redb layout: corruption, segments, idempotence.

use super::layout::{INDEX, LIVE, MEMBERS, SEGMENTS};
use super::*;
use ::redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use futures::executor::block_on;

/// A fresh path in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("hologram-cam-{name}-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `f` on the raw tables of the file at `path`, behind the store's back.
fn raw(path: &Path, f: impl FnOnce(&mut Tables<'_>)) {
    let db = Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut tables = Tables {
            index: txn.open_table(INDEX).unwrap(),
            segments: txn.open_table(SEGMENTS).unwrap(),
            live: txn.open_table(LIVE).unwrap(),
            members: txn.open_table(MEMBERS).unwrap(),
            compact: Vec::new(),
        };
        f(&mut tables);
    }
    txn.commit().unwrap();
}

/// Flips the first stored byte of `address`.
fn tamper(path: &Path, address: &Address) {
    raw(path, |t| {
        let (segment, offset, _) = t.index.get(address.as_bytes()).unwrap().unwrap().value();
        let mut bytes = t.segments.get(segment).unwrap().unwrap().value().to_vec();
        bytes[offset as usize] ^= 1;
        t.segments.insert(segment, bytes.as_slice()).unwrap();
    });
}

/// How many segments the file at `path` holds.
fn segments(store: &RedbStore) -> u64 {
    let txn = store.db.begin_read().unwrap();
    txn.open_table(SEGMENTS).unwrap().len().unwrap()
}

fn objects(n: u32, len: usize) -> Vec<Object> {
    (0..n)
        .map(|i| Object::new(i.to_le_bytes().repeat(len / 4)))
        .collect()
}

#[test]
fn corrupt_bytes_on_disk_are_reported_not_returned_and_a_put_repairs_them() {
    let file = TempFile::new("corrupt");
    let good = Object::new(b"HELLO WORLD".to_vec());
    let neighbour = Object::new(b"in the same segment".to_vec());
    let store = RedbStore::create(&file.0).unwrap();
    block_on(store.put_batch(vec![good.clone(), neighbour.clone()])).unwrap();
    drop(store);

    tamper(&file.0, &good.address());
    let store = RedbStore::open(&file.0).unwrap();
    assert_eq!(
        block_on(store.get(&good.address())),
        Err(CamError::Corrupt(good.address()))
    );
    assert_eq!(block_on(store.contains(&good.address())), Ok(true));
    assert_eq!(
        block_on(store.get(&neighbour.address())),
        Ok(Some(neighbour.clone()))
    );
    // A scrub's batched check finds the same, and only it.
    let absent = Object::new(b"never stored".to_vec()).address();
    assert_eq!(
        block_on(store.corrupt_among(&[neighbour.address(), good.address(), absent])),
        Ok(vec![good.address()])
    );

    block_on(store.put(good.clone())).unwrap();
    assert_eq!(block_on(store.get(&good.address())), Ok(Some(good)));
    assert_eq!(
        block_on(store.get(&neighbour.address())),
        Ok(Some(neighbour))
    );
}

#[test]
fn an_index_entry_pointing_outside_its_segment_is_corrupt_not_a_panic() {
    let file = TempFile::new("outside");
    let object = Object::new(b"pointed at wrongly".to_vec());
    let store = RedbStore::create(&file.0).unwrap();
    block_on(store.put(object.clone())).unwrap();
    drop(store);
    for entry in [(0, u64::MAX, 4), (0, 4, u64::MAX), (99, 0, 4)] {
        raw(&file.0, |t| {
            t.index.insert(object.address().as_bytes(), entry).unwrap();
        });
        let store = RedbStore::open(&file.0).unwrap();
        assert_eq!(
            block_on(store.get(&object.address())),
            Err(CamError::Corrupt(object.address())),
            "{entry:?}"
        );
        assert_eq!(
            block_on(store.corrupt_among(&[object.address()])),
            Ok(vec![object.address()]),
            "{entry:?}"
        );
    }
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
    let objects = objects(50, 256);
    block_on(store.put_batch(objects.clone())).unwrap();
    let before = std::fs::read(&file.0).unwrap();
    block_on(store.put_batch(objects)).unwrap();
    assert_eq!(std::fs::read(&file.0).unwrap(), before);
}

#[test]
fn small_objects_share_segments_which_are_freed_with_their_last_object() {
    let file = TempFile::new("segments");
    let store = RedbStore::create(&file.0).unwrap();
    // 200 objects of 1 KiB, the same one twice, and one larger than a segment.
    let mut batch = objects(200, 1024);
    batch.push(batch[0].clone());
    let large = Object::new(vec![7u8; SEGMENT_BYTES + 1]);
    batch.push(large.clone());
    block_on(store.put_batch(batch.clone())).unwrap();
    let packed = (200 * 1024usize).div_ceil(SEGMENT_BYTES) as u64;
    assert_eq!(segments(&store), packed + 1);
    for object in &batch {
        assert_eq!(
            block_on(store.get(&object.address())),
            Ok(Some(object.clone()))
        );
    }
    assert!(block_on(store.remove(&large.address())).unwrap());
    assert_eq!(segments(&store), packed);
    // Removing all but one object keeps that object's segment only.
    for object in &batch[1..200] {
        assert!(block_on(store.remove(&object.address())).unwrap());
    }
    assert_eq!(segments(&store), 1);
    assert_eq!(
        block_on(store.get(&batch[0].address())),
        Ok(Some(batch[0].clone()))
    );
    assert!(block_on(store.remove(&batch[0].address())).unwrap());
    assert_eq!(segments(&store), 0);
    assert!(!block_on(store.remove(&batch[0].address())).unwrap());
}

/// The bytes all segments of the store at `store` hold.
fn segment_bytes(store: &RedbStore) -> usize {
    let txn = store.db.begin_read().unwrap();
    let table = txn.open_table(SEGMENTS).unwrap();
    table
        .iter()
        .unwrap()
        .map(|e| e.unwrap().1.value().len())
        .sum()
}

#[test]
fn scattered_removals_compact_segments_and_lose_nothing() {
    let file = TempFile::new("compact");
    let store = RedbStore::create(&file.0).unwrap();
    let len = 1024;
    let all = objects(192, len);
    block_on(store.put_batch(all.clone())).unwrap();
    // Remove in a scattered order; after every removal every survivor reads
    // back and the segments hold at most about four times the live bytes.
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by_key(|&i| (i * 37) % all.len());
    for (n, &i) in order.iter().enumerate() {
        assert!(block_on(store.remove(&all[i].address())).unwrap());
        let live = all.len() - n - 1;
        let held = segment_bytes(&store);
        let bound = 4 * live * len + segments(&store) as usize * len;
        assert!(held <= bound, "{held} bytes held for {live} live objects");
        if n % 16 == 0 {
            for &j in &order[n + 1..] {
                assert_eq!(
                    block_on(store.get(&all[j].address())).unwrap().as_ref(),
                    Some(&all[j])
                );
            }
        }
    }
    assert_eq!(segments(&store), 0);
    assert_eq!(segment_bytes(&store), 0);
}

#[test]
fn corrupt_stored_references_are_reported_with_their_object() {
    use crate::ReferenceStore;
    let file = TempFile::new("references");
    let store = RedbStore::create(&file.0).unwrap();
    let address = Address::of(b"referenced");
    let txn = store.db.begin_write().unwrap();
    {
        let mut table = txn.open_table(references::REFERENCES).unwrap();
        // A count of 1 with no reference after it.
        table
            .insert(address.as_bytes(), [1u8, 0, 0, 0].as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
    assert!(matches!(
        block_on(store.load(&address)),
        Err(CamError::CorruptReferences { address: a, source })
            if a == address && matches!(*source, CamError::Decode(_))
    ));
}

#[test]
fn a_small_page_cache_still_reads_back_everything() {
    let file = TempFile::new("small-cache");
    // 64 KiB of cache for ~2 MiB of objects: most reads miss the cache.
    let store = RedbStore::create_with_cache(&file.0, 64 << 10).unwrap();
    let objects: Vec<Object> = (0..512u32)
        .map(|i| Object::new(vec![(i % 251) as u8; 4096 + i as usize]))
        .collect();
    block_on(store.put_batch(objects.clone())).unwrap();
    drop(store);
    let store = RedbStore::open_with_cache(&file.0, 64 << 10).unwrap();
    for o in &objects {
        assert_eq!(block_on(store.get(&o.address())).unwrap().as_ref(), Some(o));
    }
}

#[test]
fn a_file_of_a_newer_format_is_refused_and_left_alone() {
    let file = TempFile::new("format-newer");
    drop(RedbStore::create(&file.0).unwrap());
    {
        let db = Database::create(&file.0).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            assert_eq!(
                meta.get("format").unwrap().unwrap().value(),
                PLAIN_FORMAT_VERSION
            );
            meta.insert("format", STORE_FORMAT_VERSION + 1).unwrap();
        }
        txn.commit().unwrap();
    }
    match RedbStore::open(&file.0) {
        Err(CamError::UnsupportedFormat {
            found, supported, ..
        }) => assert_eq!(
            (found, supported),
            (STORE_FORMAT_VERSION + 1, STORE_FORMAT_VERSION)
        ),
        other => panic!("{:?}", other.map(|s| s.path().to_path_buf())),
    }
    // Still the newer version: the refusal wrote nothing.
    let db = Database::open(&file.0).unwrap();
    let meta = db.begin_read().unwrap().open_table(META).unwrap();
    assert_eq!(
        meta.get("format").unwrap().unwrap().value(),
        STORE_FORMAT_VERSION + 1
    );
}

#[test]
fn a_plain_store_is_stamped_1_and_a_journaling_one_2() {
    let file = TempFile::new("format-journal");
    let version = |path: &Path| {
        let db = Database::open(path).unwrap();
        let meta = db.begin_read().unwrap().open_table(META).unwrap();
        let v = meta.get("format").unwrap().unwrap().value();
        v
    };
    drop(RedbStore::create(&file.0).unwrap());
    assert_eq!(version(&file.0), PLAIN_FORMAT_VERSION);
    drop(
        RedbStore::open(&file.0)
            .unwrap()
            .with_names_journal()
            .unwrap(),
    );
    assert_eq!(version(&file.0), STORE_FORMAT_VERSION);
    let _ = std::fs::remove_file(journal::path_for(&file.0));
}

#[test]
fn a_file_from_before_versions_opens_as_version_one() {
    let file = TempFile::new("format-legacy");
    let object = Object::new(&b"kept from before"[..]);
    block_on(RedbStore::create(&file.0).unwrap().put(object.clone())).unwrap();
    // Remove the stamp, as a file written before versions has none.
    {
        let db = Database::create(&file.0).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(META).unwrap());
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&file.0).unwrap();
    assert_eq!(
        block_on(store.get(&object.address())).unwrap(),
        Some(object)
    );
    drop(store);
    let db = Database::open(&file.0).unwrap();
    let meta = db.begin_read().unwrap().open_table(META).unwrap();
    assert_eq!(meta.get("format").unwrap().unwrap().value(), 1);
}

#[test]
fn a_full_segment_and_its_leaf_fit_one_64_kib_page() {
    let file = TempFile::new("page-fit");
    let store = RedbStore::create(&file.0).unwrap();
    // 4,000 objects of 1 KiB in batches of 1,000: full segments, each of
    // which took a 128 KiB page when a segment could reach 64 KiB.
    let data = 4_000 * 1024;
    for batch in objects(4_000, 1024).chunks(1_000) {
        block_on(store.put_batch(batch.to_vec())).unwrap();
    }
    let file_bytes = std::fs::metadata(&file.0).unwrap().len() as usize;
    assert!(
        file_bytes <= 2 * data,
        "{file_bytes} bytes of file for {data} bytes of objects"
    );
}
