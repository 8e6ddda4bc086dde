//! The conformance suite against both stores, and a store that breaks the
//! contract to show the suite catches it.

use async_trait::async_trait;
use futures::executor::block_on;
use hologram_cam::{conformance, DiskFaults, FaultyStore, MemoryStore, Name, RedbStore};
use hologram_cam::{CamError, Object, Store};
use hologram_lattice::Address;
use std::path::PathBuf;

/// A fresh file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "hologram-cam-test-{name}-{}.redb",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn memory_store_conforms() {
    let store = MemoryStore::new();
    block_on(conformance::run(&store)).unwrap();
    assert!(store.len() > 300, "{} objects", store.len());
}

#[test]
fn a_faulty_disk_with_no_faults_over_real_files_conforms() {
    let file = TempFile::new("faulty");
    let store = FaultyStore::new(RedbStore::create(&file.0).unwrap(), 1, DiskFaults::NONE);
    block_on(conformance::run(&store)).unwrap();
    assert_eq!(store.counts(), Default::default());
}

#[test]
fn redb_store_conforms_and_keeps_everything_across_a_reopen() {
    let file = TempFile::new("conformance");
    let store = RedbStore::create(&file.0).unwrap();
    block_on(conformance::run(&store)).unwrap();
    let before = block_on(store.scan(None, usize::MAX)).unwrap();
    drop(store);

    let store = RedbStore::open(&file.0).unwrap();
    assert_eq!(block_on(store.scan(None, usize::MAX)).unwrap(), before);
    for address in &before {
        let object = block_on(store.get(address)).unwrap().unwrap();
        assert_eq!(object.address(), *address);
    }
}

#[test]
fn the_suite_refuses_a_store_that_is_not_empty() {
    let store = MemoryStore::new();
    block_on(store.put(Object::new(b"already here".to_vec()))).unwrap();
    let failure = block_on(conformance::run(&store)).unwrap_err();
    assert_eq!(failure.check, "starts empty");
}

/// How [`Faulty`] breaks the contract.
#[derive(Clone, Copy)]
enum Fault {
    /// `scan` forgets the last address of every full page.
    ShortPages,
    /// `get` answers with the object stored under the next address (a store
    /// mixing up keys).
    WrongObject,
}

/// A memory store with one fault.
struct Faulty(MemoryStore, Fault);

#[async_trait]
impl Store for Faulty {
    async fn get(&self, address: &Address) -> Result<Option<Object>, CamError> {
        if let Fault::WrongObject = self.1 {
            let next = self.0.scan(Some(*address), 1).await?;
            if let Some(other) = next.first() {
                if self.0.contains(address).await? {
                    return self.0.get(other).await;
                }
            }
        }
        self.0.get(address).await
    }
    async fn put(&self, object: Object) -> Result<(), CamError> {
        self.0.put(object).await
    }
    async fn put_batch(&self, objects: Vec<Object>) -> Result<(), CamError> {
        self.0.put_batch(objects).await
    }
    async fn contains(&self, address: &Address) -> Result<bool, CamError> {
        self.0.contains(address).await
    }
    async fn remove(&self, address: &Address) -> Result<bool, CamError> {
        self.0.remove(address).await
    }
    async fn scan(&self, after: Option<Address>, limit: usize) -> Result<Vec<Address>, CamError> {
        let mut page = self.0.scan(after, limit).await?;
        if let Fault::ShortPages = self.1 {
            if page.len() == limit && limit > 1 {
                page.pop();
            }
        }
        Ok(page)
    }
    async fn get_named(&self, name: &Name) -> Result<Option<Object>, CamError> {
        self.0.get_named(name).await
    }
    async fn set_named(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError> {
        self.0.set_named(changes).await
    }
}

#[test]
fn the_suite_catches_a_scan_that_skips_addresses() {
    let store = Faulty(MemoryStore::new(), Fault::ShortPages);
    let failure = block_on(conformance::run(&store)).unwrap_err();
    assert_eq!(failure.check, "scan", "{failure}");
}

#[test]
fn the_suite_catches_a_get_that_returns_another_object() {
    let store = Faulty(MemoryStore::new(), Fault::WrongObject);
    let failure = block_on(conformance::run(&store)).unwrap_err();
    assert_eq!(failure.check, "round trip", "{failure}");
}
