//! Content-addressed storage with deduplication, on durable redb stores.
//!
//! Run it with `cargo run --release --example cam_dedup`.
//!
//! Part 1, `DeduplicationNetwork`: five holders, each with a `RedbStore` in a
//! temporary directory, keep N = 3 copies of every object on a consistent-hash
//! ring. Storing the same bytes twice adds a reference instead of a copy;
//! releasing frees the object only when no reference is left. Reference sets
//! live in the same redb file as the objects, so a holder that crashes and
//! restarts still counts what it counted.
//!
//! Part 2, `DistributedCAM` and large objects: a 2 MiB file and a version of
//! it with a few bytes inserted near the start are stored as content-defined
//! chunks under manifests; almost every chunk of the second version is
//! already stored. Reading streams chunk by chunk, each verified against its
//! address.

use futures::executor::block_on;
use hologram::cam::ChunkParams;
use hologram::cam::{
    BlobRef, CamHandler, DedupHandler, DeduplicationNetwork, DistributedCAM, HashRing, Manifest,
    ProviderRecords, Store, StoreResult,
};
use hologram::cam::{MemoryStore, RedbStore};
use hologram::lattice::transport::MemoryNetwork;
use hologram::lattice::LatticeRouter;
use hologram::lattice::{Address, NodeId};
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::error::Error;
use std::sync::{Arc, RwLock};

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::temp_dir().join(format!("hologram-cam-dedup-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(&dir);
    std::fs::remove_dir_all(&dir)?;
    result
}

fn run(dir: &std::path::Path) -> Result<(), Box<dyn Error>> {
    // --- Part 1: the deduplication network ----------------------------------
    let network = MemoryNetwork::new(5);
    let ids: Vec<NodeId> = (1..=5u8).map(|i| NodeId::from_bytes([i; 32])).collect();
    let path = |id: &NodeId| dir.join(format!("holder-{}.redb", id.as_bytes()[0]));
    let mut ring = HashRing::new();
    let mut holders = Vec::new();
    for id in &ids {
        let store = Arc::new(RedbStore::create(path(id))?);
        let holder = Arc::new(DedupHandler::durable(store));
        network.join(*id, holder.clone());
        holders.push(holder);
        ring.add(*id);
    }
    let ring = Arc::new(RwLock::new(ring));
    let client_id = NodeId::from_bytes([0xc1; 32]);
    let client_transport = network.join(
        client_id,
        Arc::new(DedupHandler::new(Arc::new(MemoryStore::new()))),
    );
    let client = DeduplicationNetwork::new(Arc::new(client_transport), ring, 3);

    let report = b"quarterly report, final".to_vec();
    let address = Address::of(&report);
    let owners = client.owners(&address);
    let first = block_on(client.store_unique(report.clone()));
    let second = block_on(client.store_unique(report.clone()));
    let short = &address.to_string()[..8];
    println!("store {short}… once:  {}", describe(&first));
    println!("store {short}… again: {}", describe(&second));
    assert!(matches!(first, StoreResult::Stored(_, 3)));
    assert_eq!(second, StoreResult::Duplicate(address));

    // A holder crashes and restarts: its references come back from disk.
    let victim = owners[0];
    let index = ids.iter().position(|id| *id == victim).ok_or("owner")?;
    network.crash(victim);
    drop(holders.remove(index));
    let reopened = Arc::new(DedupHandler::durable(Arc::new(RedbStore::open(path(
        &victim,
    ))?)));
    network.restart(victim, reopened.clone());
    println!(
        "holder {} restarted from its redb file and still counts {} references",
        victim.as_bytes()[0],
        block_on(reopened.refs(&address))?
    );
    assert_eq!(block_on(reopened.refs(&address))?, 2);

    let release = block_on(client.release(address));
    println!("release one reference: freed = {}", release.freed);
    let release = block_on(client.release(address));
    println!("release the last:      freed = {}", release.freed);
    assert!(release.freed);
    assert!(matches!(
        block_on(client.get(address)),
        Err(hologram::cam::CamError::NotFound(_))
    ));

    // --- Part 2: large objects, chunked by content --------------------------
    let cam_net = MemoryNetwork::new(6);
    let (a, b) = (NodeId::from_bytes([0xa; 32]), NodeId::from_bytes([0xb; 32]));
    let cam = |me: NodeId, peer: NodeId| {
        let store = Arc::new(MemoryStore::new());
        let providers = ProviderRecords::new(4_096);
        let handler = Arc::new(CamHandler::new(store.clone(), providers.clone()));
        let transport = Arc::new(cam_net.join(me, handler));
        let mut router = LatticeRouter::new(me);
        router.table_mut().insert(peer);
        DistributedCAM::new(
            me,
            store,
            transport,
            Arc::new(RwLock::new(router)),
            providers,
        )
    };
    let (writer, reader) = (cam(a, b), cam(b, a));
    let mut file = vec![0u8; 2 << 20];
    rand_chacha::ChaCha8Rng::seed_from_u64(1).fill_bytes(&mut file);
    let mut edited = file.clone();
    edited.splice(1_000..1_000, b"an inserted sentence".iter().copied());

    let params = ChunkParams::default();
    let v1 = block_on(writer.put_blob(&file, params))?;
    let before = count(writer.store().as_ref())?;
    let v2 = block_on(writer.put_blob(&edited, params))?;
    let after = count(writer.store().as_ref())?;
    let chunks = |blob: BlobRef| -> Result<BTreeSet<Address>, Box<dyn Error>> {
        let BlobRef::Manifest(m) = blob else {
            return Err("expected a chunked blob".into());
        };
        let manifest =
            Manifest::decode(block_on(writer.store().get(&m))?.ok_or("manifest")?.data())?;
        Ok(manifest.chunks.iter().map(|(a, _)| *a).collect())
    };
    let (c1, c2) = (chunks(v1)?, chunks(v2)?);
    println!(
        "\n2 MiB file: {} chunks; the edited version: {} chunks, {} of them already stored; \
         the edit added {} objects (new chunks and a manifest)",
        c1.len(),
        c2.len(),
        c2.intersection(&c1).count(),
        after - before
    );
    assert!(c2.intersection(&c1).count() + 2 >= c2.len());

    // The other node streams the edited version, verifying chunk by chunk.
    let mut read = Vec::new();
    let total = block_on(reader.read_blob(v2, |chunk| {
        read.extend_from_slice(chunk);
        Ok(())
    }))?;
    assert_eq!(read, edited);
    println!("node b read {total} bytes of the edited file from node a, every chunk verified");
    Ok(())
}

/// A result in words.
fn describe(result: &StoreResult) -> String {
    match result {
        StoreResult::Stored(_, acks) => format!("stored, {acks} of 3 owners acknowledged"),
        StoreResult::Duplicate(_) => "a duplicate: one more reference, no new copy".into(),
        StoreResult::Failed(_) => "failed: fewer than a majority acknowledged".into(),
    }
}

/// Objects in a store, by scanning it.
fn count(store: &MemoryStore) -> Result<usize, Box<dyn Error>> {
    let (mut n, mut after) = (0, None);
    loop {
        let page = block_on(store.scan(after, 1_024))?;
        n += page.len();
        match page.last() {
            Some(last) if page.len() == 1_024 => after = Some(*last),
            _ => return Ok(n),
        }
    }
}
