//! `DistributedCAM` over the in-memory network: fetching through provider
//! records, lying peers, single-flight gets. Driven by
//! `futures::executor::block_on`: no runtime.

use futures::executor::block_on;
use hologram_cam::CamMessage;
use hologram_cam::MemoryStore;
use hologram_cam::{CamError, CamHandler, DistributedCAM, Object, ProviderRecords, Store};
use hologram_lattice::sim::Faults;
use hologram_lattice::transport::{async_trait, Handler, HandlerError, MemoryNetwork, Protocol};
use hologram_lattice::LatticeRouter;
use hologram_lattice::{Address, NodeId, PeerId};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

type Cam = DistributedCAM<MemoryStore>;

/// Counts `Get` requests, then lets the real handler answer.
struct Counting {
    inner: CamHandler<MemoryStore>,
    gets: Arc<AtomicUsize>,
}

#[async_trait]
impl Handler for Counting {
    async fn request(
        &self,
        from: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.request(from, protocol, payload).await
    }
    async fn message(&self, from: PeerId, protocol: Protocol, payload: Vec<u8>) {
        self.inner.message(from, protocol, payload).await
    }
}

/// Answers every `Get` with substituted bytes.
struct Liar;

#[async_trait]
impl Handler for Liar {
    async fn request(&self, _: PeerId, _: Protocol, _: Vec<u8>) -> Result<Vec<u8>, HandlerError> {
        Ok(CamMessage::Found(b"substituted".as_slice().into()).encode())
    }
    async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {}
}

struct Net {
    ids: Vec<NodeId>,
    cams: Vec<Option<Cam>>,
    gets: Vec<Arc<AtomicUsize>>,
}

/// `n` nodes, each routing to all others (asking up to `k` of them); the
/// nodes in `liars` lie.
fn network(n: u8, liars: &[usize], k: usize) -> Net {
    let network = MemoryNetwork::new(5);
    // Some latency, so that requests are in flight while others start.
    network.set_faults(Faults {
        latency_ms: (1, 3),
        ..Faults::NONE
    });
    let ids: Vec<NodeId> = (0..n)
        .map(|i| NodeId::from_bytes(*blake3::hash(&[i]).as_bytes()))
        .collect();
    let mut cams = Vec::new();
    let mut gets = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let count = Arc::new(AtomicUsize::new(0));
        gets.push(Arc::clone(&count));
        if liars.contains(&i) {
            network.join(id, Arc::new(Liar));
            cams.push(None);
            continue;
        }
        let store = Arc::new(MemoryStore::new());
        let providers = ProviderRecords::new(1_000);
        let handler = Counting {
            inner: CamHandler::new(Arc::clone(&store), providers.clone()),
            gets: count,
        };
        let transport = Arc::new(network.join(id, Arc::new(handler)));
        let mut router = LatticeRouter::new(id).with_k(k);
        for &other in &ids {
            if other != id {
                router.table_mut().insert(other);
            }
        }
        cams.push(Some(DistributedCAM::new(
            id,
            store,
            transport,
            Arc::new(RwLock::new(router)),
            providers,
        )));
    }
    Net { ids, cams, gets }
}

fn cam(net: &Net, i: usize) -> &Cam {
    net.cams[i].as_ref().expect("an honest node")
}

#[test]
fn get_fetches_verifies_and_caches() {
    let net = network(8, &[], 3);
    let address = block_on(cam(&net, 0).put(b"content-addressed".to_vec())).unwrap();
    assert_eq!(address, Address::of(b"content-addressed"));
    for i in 1..8 {
        let object = block_on(cam(&net, i).get(address)).unwrap();
        assert_eq!(object.data(), b"content-addressed");
        // Cached: present in the local store now.
        assert!(block_on(cam(&net, i).store().contains(&address)).unwrap());
    }
    let missing = Address::of(b"never stored");
    assert_eq!(
        block_on(cam(&net, 3).get(missing)),
        Err(CamError::NotFound(missing))
    );
    let _ = &net.ids;
}

#[test]
fn lying_peers_are_skipped_reported_and_never_cached() {
    // Everyone but the holder (0) and the asker (1) lies. The holder stores
    // without announcing, so the asker goes by distance: pick content whose
    // nearest peer (from the asker's view) is a liar.
    let liars: Vec<usize> = (2..8).collect();
    let net = network(8, &liars, 8);
    let data = (0u32..)
        .map(|i| format!("the real bytes #{i}").into_bytes())
        .find(|d| {
            let mut view = LatticeRouter::new(net.ids[1]);
            for (j, &id) in net.ids.iter().enumerate() {
                if j != 1 {
                    view.table_mut().insert(id);
                }
            }
            view.route_to_address(&Address::of(d)).first() != Some(&net.ids[0])
        })
        .unwrap();
    let address = Address::of(&data);
    block_on(cam(&net, 0).store().put(Object::new(data.clone()))).unwrap();
    let object = block_on(cam(&net, 1).get(address)).unwrap();
    assert_eq!(object.data(), &data[..]);
    let suspects = cam(&net, 1).suspects();
    assert!(!suspects.is_empty());
    assert!(suspects
        .iter()
        .all(|s| liars.iter().any(|&l| net.ids[l] == *s)));
    // Nothing but verified objects is in the asker's store.
    let store = cam(&net, 1).store();
    let stored = block_on(store.scan(None, 100)).unwrap();
    assert_eq!(stored, vec![address]);
    assert!(!block_on(store.contains(&Address::of(b"substituted"))).unwrap());
}

#[test]
fn concurrent_gets_of_one_address_fetch_once() {
    let net = network(6, &[], 3);
    let address = block_on(cam(&net, 0).put(vec![7u8; 10_000])).unwrap();
    let asker = cam(&net, 4);
    let before: usize = net.gets.iter().map(|g| g.load(Ordering::SeqCst)).sum();
    let results = block_on(futures::future::join_all(
        (0..10).map(|_| asker.get(address)),
    ));
    assert!(results
        .iter()
        .all(|r| r.as_ref().is_ok_and(|o| o.address() == address)));
    let after: usize = net.gets.iter().map(|g| g.load(Ordering::SeqCst)).sum();
    // One fetch, not ten: without sharing, each of the ten gets would send
    // at least one request (all start before any answer arrives).
    assert!(after > before);
    assert!(
        after - before < 10,
        "{} requests for 10 concurrent gets",
        after - before
    );
}

fn random(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

#[test]
fn large_blobs_are_chunked_deduplicated_and_streamed() {
    use hologram_cam::BlobRef;
    use hologram_cam::ChunkParams;
    let net = network(5, &[], 3);
    let params = ChunkParams::default();
    let data = random(2 << 20, 9);
    let blob = block_on(cam(&net, 0).put_blob(&data, params)).unwrap();
    assert!(matches!(blob, BlobRef::Manifest(_)));
    let stored = block_on(cam(&net, 0).store().scan(None, 10_000))
        .unwrap()
        .len();
    assert!(stored > 3, "{stored} objects for 2 MiB");
    // A small edit near the start adds only a few new objects.
    let mut edited = data.clone();
    edited.splice(500..500, b"inserted".iter().copied());
    block_on(cam(&net, 0).put_blob(&edited, params)).unwrap();
    let after = block_on(cam(&net, 0).store().scan(None, 10_000))
        .unwrap()
        .len();
    assert!(
        after - stored <= 3,
        "{} new objects for an 8-byte insertion",
        after - stored
    );
    // Another node streams it back chunk by chunk.
    let mut read = Vec::new();
    let mut pieces = 0;
    let n = block_on(cam(&net, 3).read_blob(blob, |chunk| {
        pieces += 1;
        read.extend_from_slice(chunk);
        Ok(())
    }))
    .unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(read, data);
    assert!(pieces > 1);
}

#[test]
fn a_corrupt_chunk_stops_the_read_at_that_chunk() {
    use hologram_cam::ChunkParams;
    use hologram_cam::{BlobRef, Manifest};
    let liars: Vec<usize> = (2..6).collect();
    let net = network(6, &liars, 6);
    let data = random(1 << 20, 4);
    let blob = block_on(cam(&net, 0).put_blob(&data, ChunkParams::default())).unwrap();
    let BlobRef::Manifest(manifest) = blob else {
        panic!("1 MiB is chunked")
    };
    let manifest = Manifest::decode(block_on(cam(&net, 0).get(manifest)).unwrap().data()).unwrap();
    // The holder loses its second chunk; only liars remain to "provide" it.
    let second = manifest.chunks[1].0;
    assert!(block_on(cam(&net, 0).store().remove(&second)).unwrap());
    let mut pieces = 0;
    let result = block_on(cam(&net, 1).read_blob(blob, |_| {
        pieces += 1;
        Ok(())
    }));
    assert_eq!(result, Err(CamError::NotFound(second)));
    assert_eq!(pieces, 1, "the read stops at the first bad chunk");
    assert!(!cam(&net, 1).suspects().is_empty());
}
