//! Holders whose disks rot (issue 22): a read never returns a rotten byte
//! and repairs the copies it finds rotten; a holder's scrub finds every
//! rotten copy, resumes where it stopped, and the network puts each back
//! from a replica, so every object is at N good copies again.
//!
//! Seeds: `HOLOGRAM_SEEDS=<n>` (default 3), `HOLOGRAM_SEED=<s>`.

use futures::executor::block_on;
use hologram_cam::dedup::ScrubStep;
use hologram_cam::{
    DedupHandler, DeduplicationNetwork, DiskFaults, FaultyStore, HashRing, MemoryStore, Object,
    Store, StoreResult,
};
use hologram_lattice::sim::seeds;
use hologram_lattice::transport::MemoryNetwork;
use hologram_lattice::{Address, NodeId};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

type Disk = FaultyStore<MemoryStore>;

struct Net {
    _network: MemoryNetwork,
    disks: HashMap<NodeId, Arc<Disk>>,
    holders: HashMap<NodeId, Arc<DedupHandler<Disk>>>,
    client: DeduplicationNetwork,
}

/// Five holders, N = 3; `rotting` of them on disks where every write rots
/// with probability `rot`.
fn network(seed: u64, rotting: usize, rot: f64) -> Net {
    let network = MemoryNetwork::new(seed);
    let mut ring = HashRing::new();
    let (mut disks, mut holders) = (HashMap::new(), HashMap::new());
    for i in 0..5u8 {
        let id = NodeId::from_bytes(*blake3::hash(&[i]).as_bytes());
        let faults = match usize::from(i) < rotting {
            true => DiskFaults {
                rot_at_rest: rot,
                ..DiskFaults::NONE
            },
            false => DiskFaults::NONE,
        };
        let disk = Arc::new(FaultyStore::new(
            MemoryStore::new(),
            seed ^ u64::from(i),
            faults,
        ));
        let holder = Arc::new(DedupHandler::new(Arc::clone(&disk)));
        network.join(id, Arc::clone(&holder) as _);
        ring.add(id);
        disks.insert(id, disk);
        holders.insert(id, holder);
    }
    let client = Arc::new(network.join(
        NodeId::from_bytes([0xc1; 32]),
        Arc::new(DedupHandler::new(Arc::new(MemoryStore::new()))),
    ));
    let client = DeduplicationNetwork::new(client, Arc::new(RwLock::new(ring)), 3);
    Net {
        _network: network,
        disks,
        holders,
        client,
    }
}

fn objects(seed: u64, n: usize) -> Vec<Object> {
    (0..n)
        .map(|i| Object::new(format!("seed {seed} object {i}").into_bytes()))
        .collect()
}

fn store_all(net: &Net, objects: &[Object]) {
    for o in objects {
        match block_on(net.client.store_unique(o.shared_data())) {
            StoreResult::Stored(a, _) | StoreResult::Duplicate(a) => {
                assert_eq!(a, o.address())
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Every owner of every object holds a good copy.
fn fully_replicated(net: &Net, objects: &[Object]) -> Result<(), String> {
    for o in objects {
        for owner in net.client.owners(&o.address()) {
            let held = block_on(net.disks[&owner].get(&o.address()));
            if held.as_ref().ok() != Some(&Some(o.clone())) {
                return Err(format!("{owner} holds {:?} for {}", held, o.address()));
            }
        }
    }
    Ok(())
}

/// Scrubs `holder` in steps of `step` until a pass ends.
fn scrub_pass(holder: &DedupHandler<Disk>, step: usize) -> Vec<ScrubStep> {
    let mut steps = Vec::new();
    loop {
        let s = block_on(holder.scrub(step)).unwrap();
        let done = s.finished_pass;
        steps.push(s);
        if done {
            return steps;
        }
        assert!(steps.len() < 10_000, "the scrub does not end");
    }
}

#[test]
fn reads_never_return_rot_and_repair_what_they_find() {
    for seed in seeds(3) {
        let net = network(seed, 1, 0.5);
        let objects = objects(seed, 120);
        store_all(&net, &objects);
        let rotted: u64 = net.disks.values().map(|d| d.counts().rotted).sum();
        assert!(rotted > 0, "seed {seed}: nothing rotted");
        // Read each object until the rotten copies the reads meet are
        // repaired; every read returns the object's own bytes.
        for _ in 0..3 {
            for o in &objects {
                let read = block_on(net.client.get(o.address()))
                    .unwrap_or_else(|e| panic!("seed {seed}: {}: {e}", o.address()));
                assert_eq!(read, *o, "seed {seed}");
            }
        }
        let found: u64 = net.disks.values().map(|d| d.counts().rotten_reads).sum();
        assert!(found > 0, "seed {seed}: no read met a rotten copy");
        println!("seed {seed}: {rotted} copies rotted, reads met {found}");
    }
}

#[test]
fn a_scrub_finds_every_rotten_copy_and_the_network_repairs_it() {
    for seed in seeds(3) {
        let net = network(seed, 2, 0.3);
        let objects = objects(seed, 200);
        store_all(&net, &objects);
        let rotted: u64 = net.disks.values().map(|d| d.counts().rotted).sum();
        assert!(rotted > 0, "seed {seed}: nothing rotted");
        assert!(fully_replicated(&net, &objects).is_err(), "seed {seed}");
        // Disks stop rotting; each holder scrubs a whole pass in small
        // steps (the cursor persisting between them), then the network
        // repairs what the scrubs dropped.
        for disk in net.disks.values() {
            disk.set_faults(DiskFaults::NONE);
        }
        let mut corrupt: Vec<Address> = Vec::new();
        let mut checked = 0;
        for holder in net.holders.values() {
            for step in scrub_pass(holder, 7) {
                checked += step.checked;
                corrupt.extend(step.corrupt);
            }
        }
        // Each holder checked each object it holds once.
        let held: usize = net
            .disks
            .values()
            .map(|d| block_on(d.scan(None, usize::MAX)).unwrap().len())
            .sum();
        assert_eq!(checked, held + corrupt.len(), "seed {seed}");
        assert_eq!(
            corrupt.len() as u64,
            rotted,
            "seed {seed}: every rotten copy found"
        );
        let mut repaired = 0;
        for address in &corrupt {
            repaired += block_on(net.client.repair(*address)).unwrap().1;
        }
        assert_eq!(
            repaired,
            corrupt.len(),
            "seed {seed}: one write-back per dropped copy"
        );
        fully_replicated(&net, &objects).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        // A second pass finds nothing.
        for holder in net.holders.values() {
            assert!(scrub_pass(holder, 50).iter().all(|s| s.corrupt.is_empty()));
        }
        println!(
            "seed {seed}: {rotted} rotten copies found by the scrub and repaired ({checked} checked)"
        );
    }
}
