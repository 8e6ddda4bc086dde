//! Plugging in your own `Store`: a directory with one file per object.
//!
//! Run it with `cargo run --release --example custom_store`.
//!
//! `Store` is the storage seam of `hologram-cam`: six async methods over
//! content-addressed objects, with a durability contract (when `put` returns,
//! the object survives a crash), and two over a separate named key space
//! (objects under names the caller chooses, which the consensus log uses to
//! find its blocks without a scan). This example implements it on plain files,
//! then does what you should do with any store of your own:
//!
//! 1. run the public conformance suite (`hologram::cam::conformance`)
//!    on it, and
//! 2. use it under a `DistributedCAM`, which needs nothing else from it.
//!
//! The file store writes each object to a temporary file, syncs it, renames
//! it into place and syncs the directory: an object is either wholly there or
//! absent after a crash. Named objects live in a `named/` subdirectory, one
//! file per name (the name in hex) holding the object's address and bytes.
//! Reads re-hash the bytes, so a file damaged on disk is
//! reported as `CamError::Corrupt` and never returned; the end of the example
//! shows that. (It uses blocking `std::fs` calls inside async methods, which is
//! fine for a demonstration; a production store would hand them to a blocking
//! thread pool.)

use futures::executor::block_on;
use hologram::cam::{conformance, Name};
use hologram::cam::{CamError, DistributedCAM, Object, ProviderRecords, Store};
use hologram::lattice::transport::{async_trait, MemoryNetwork};
use hologram::lattice::LatticeRouter;
use hologram::lattice::{Address, NodeId};
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// One file per object, named by the object's address in hex.
struct FileStore {
    dir: PathBuf,
}

/// Maps an I/O failure to the store's error, saying what it was doing.
fn storage(what: &str, path: &Path, e: std::io::Error) -> CamError {
    CamError::Storage(format!("{what} {}: {e}", path.display()))
}

impl FileStore {
    /// A store in `dir`, created if missing.
    fn open(dir: impl Into<PathBuf>) -> Result<FileStore, CamError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| storage("creating", &dir, e))?;
        Ok(FileStore { dir })
    }

    fn path(&self, address: &Address) -> PathBuf {
        self.dir.join(address.to_string())
    }

    /// The directory of the named key space, and the file of `name` in it.
    fn named(&self, name: &Name) -> (PathBuf, PathBuf) {
        let dir = self.dir.join("named");
        let hex: String = name.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let file = dir.join(hex);
        (dir, file)
    }

    /// Writes one object durably: temporary file, sync, rename, sync the directory.
    fn write(&self, object: &Object) -> Result<(), CamError> {
        let target = self.path(&object.address());
        if target.exists() {
            return Ok(()); // content-addressed: the same address holds the same bytes
        }
        write_file(&self.dir, &target, &[object.data()])
    }
}

/// Writes `parts` to `target` in `dir` durably: a temporary file, synced,
/// renamed into place, then the directory synced.
fn write_file(dir: &Path, target: &Path, parts: &[&[u8]]) -> Result<(), CamError> {
    let temp = target.with_extension("tmp");
    let mut file = fs::File::create(&temp).map_err(|e| storage("creating", &temp, e))?;
    parts
        .iter()
        .try_for_each(|part| file.write_all(part))
        .and_then(|()| file.sync_all())
        .map_err(|e| storage("writing", &temp, e))?;
    fs::rename(&temp, target).map_err(|e| storage("renaming", &temp, e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), CamError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| storage("syncing", dir, e))
}

#[async_trait]
impl Store for FileStore {
    async fn get(&self, address: &Address) -> Result<Option<Object>, CamError> {
        let path = self.path(address);
        match fs::read(&path) {
            Ok(bytes) => Object::verify(*address, bytes)
                .map(Some)
                .map_err(|_| CamError::Corrupt(*address)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage("reading", &path, e)),
        }
    }

    async fn put(&self, object: Object) -> Result<(), CamError> {
        self.write(&object)
    }

    async fn put_batch(&self, objects: Vec<Object>) -> Result<(), CamError> {
        // Each object is atomic on its own; the batch is durable when this
        // returns. (A store that must make a batch all-or-nothing would write
        // a manifest first, as redb does with one transaction.)
        objects.iter().try_for_each(|o| self.write(o))
    }

    async fn contains(&self, address: &Address) -> Result<bool, CamError> {
        Ok(self.path(address).exists())
    }

    async fn remove(&self, address: &Address) -> Result<bool, CamError> {
        let path = self.path(address);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir).map(|()| true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(storage("removing", &path, e)),
        }
    }

    async fn scan(&self, after: Option<Address>, limit: usize) -> Result<Vec<Address>, CamError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| storage("listing", &self.dir, e))?;
        let mut addresses: Vec<Address> = entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .filter(|a| after.is_none_or(|after| *a > after))
            .collect();
        addresses.sort_unstable();
        addresses.truncate(limit);
        Ok(addresses)
    }

    async fn get_named(&self, name: &Name) -> Result<Option<Object>, CamError> {
        let (_, path) = self.named(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(storage("reading", &path, e)),
        };
        let Some((address, data)) = bytes.split_first_chunk::<32>() else {
            return Err(CamError::Storage(format!(
                "{} is truncated",
                path.display()
            )));
        };
        let address = Address::from_bytes(*address);
        Object::verify(address, data.to_vec())
            .map(Some)
            .map_err(|_| CamError::Corrupt(address))
    }

    async fn set_named(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError> {
        // Each name is replaced atomically (rename), in order; like
        // `put_batch`, the batch as a whole is not all-or-nothing here.
        for (name, object) in changes {
            let (dir, path) = self.named(&name);
            fs::create_dir_all(&dir).map_err(|e| storage("creating", &dir, e))?;
            match object {
                Some(object) => {
                    write_file(&dir, &path, &[object.address().as_bytes(), object.data()])?
                }
                None => match fs::remove_file(&path) {
                    Ok(()) => sync_dir(&dir)?,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(storage("removing", &path, e)),
                },
            }
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::temp_dir().join(format!("hologram-custom-store-{}", std::process::id()));

    // 1. The conformance suite, on an empty store.
    let suite_store = FileStore::open(root.join("suite"))?;
    block_on(conformance::run(&suite_store))?;
    println!(
        "FileStore passes all {} conformance checks: {}",
        conformance::CHECKS.len(),
        conformance::CHECKS.join(", ")
    );

    // 2. Under a DistributedCAM: two nodes on the in-memory network, each
    //    with its own FileStore; node b fetches what node a stored.
    let network = MemoryNetwork::new(1);
    let ids = [NodeId::from_bytes([1; 32]), NodeId::from_bytes([2; 32])];
    let mut cams = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let store = Arc::new(FileStore::open(root.join(format!("node{i}")))?);
        let providers = ProviderRecords::new(1_024);
        let handler = Arc::new(hologram::cam::CamHandler::new(
            Arc::clone(&store),
            providers.clone(),
        ));
        let transport = Arc::new(network.join(*id, handler));
        let mut router = LatticeRouter::new(*id);
        router.table_mut().insert(ids[1 - i]);
        let router = Arc::new(RwLock::new(router));
        cams.push(DistributedCAM::new(
            *id, store, transport, router, providers,
        ));
    }
    let data = b"stored on disk by node a, fetched and verified by node b".to_vec();
    let address = block_on(cams[0].put(data.clone()))?;
    let fetched = block_on(cams[1].get(address))?;
    assert_eq!(fetched.data(), &data[..]);
    println!(
        "node b fetched {}… from node a and cached it: {}",
        &address.to_string()[..8],
        block_on(cams[1].store().contains(&address))?
    );

    // 3. Damage on disk is caught on read, never returned.
    let path = root.join("node0").join(address.to_string());
    let mut bytes = fs::read(&path)?;
    bytes[0] ^= 1;
    fs::write(&path, bytes)?;
    match block_on(cams[0].store().get(&address)) {
        Err(CamError::Corrupt(a)) => println!(
            "a flipped bit on disk is reported: object {}… is corrupt",
            &a.to_string()[..8]
        ),
        other => return Err(format!("expected Corrupt, got {other:?}").into()),
    }

    fs::remove_dir_all(&root)?;
    Ok(())
}
