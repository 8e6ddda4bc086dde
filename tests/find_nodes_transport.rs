//! `find_nodes` over a real `Transport` (the in-memory network): nodes serve
//! `FindNodes` with `DiscoveryHandler`, some are crashed, one lies; the
//! lookup, driven by `futures::executor::block_on` (no runtime), returns the
//! true nearest live nodes.

use hologram::lattice::routing::{
    find_nodes, DiscoveryHandler, DiscoveryMessage, Lookup, PeerBook, PeerRecord,
};
use hologram::lattice::sim::Faults;
use hologram::lattice::transport::{
    async_trait, Handler, HandlerError, MemoryNetwork, Protocol, Transport,
};
use hologram::lattice::{Coord, NodeId, PeerId, ProofOfWork};
use std::sync::{Arc, RwLock};
use std::time::Duration;

const DIFFICULTY: u32 = 4;

/// Answers every request with records whose work is forged.
struct Liar;

#[async_trait]
impl Handler for Liar {
    async fn request(&self, _: PeerId, _: Protocol, _: Vec<u8>) -> Result<Vec<u8>, HandlerError> {
        let forged = (0..8u8)
            .map(|i| PeerRecord {
                id: NodeId::from_bytes([i; 32]),
                pow: ProofOfWork { nonce: 0 },
            })
            .filter(|r| r.verify(DIFFICULTY).is_err())
            .collect();
        Ok(DiscoveryMessage::Nodes(forged).encode())
    }
    async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {}
}

#[test]
fn find_nodes_over_the_memory_network() {
    let network = MemoryNetwork::new(11);
    network.set_faults(Faults {
        latency_ms: (1, 5),
        ..Faults::NONE
    });
    let ids: Vec<NodeId> = (0..120u32)
        .map(|i| NodeId::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    let records: Vec<PeerRecord> = ids
        .iter()
        .map(|&id| PeerRecord::mint(id, DIFFICULTY, 1 << 20).unwrap().unwrap())
        .collect();
    let sites: Vec<Coord> = ids.iter().map(|id| id.coord()).collect();
    let mut transports = Vec::new();
    for (i, &me) in ids.iter().enumerate() {
        let mut book = PeerBook::new(me, DIFFICULTY, 8);
        let mut near: Vec<usize> = (0..ids.len()).filter(|&j| j != i).collect();
        near.sort_by_key(|&j| (sites[i].distance(sites[j]), ids[j]));
        for &j in near.iter().take(6) {
            book.admit(records[j]).unwrap();
        }
        for j in (0..ids.len()).step_by(5) {
            let _ = book.admit(records[(j + i) % ids.len()]);
        }
        let handler: Arc<dyn Handler> = if i == 7 {
            Arc::new(Liar)
        } else {
            Arc::new(DiscoveryHandler::new(Arc::new(RwLock::new(book))))
        };
        transports.push(network.join(me, handler));
    }
    // A tenth of the nodes crash.
    let down: Vec<usize> = (0..ids.len()).filter(|i| i % 10 == 3).collect();
    for &i in &down {
        network.crash(ids[i]);
    }
    let me = 0;
    for t in 0..10u64 {
        let target = Coord::from_index(t * 1_231 + 77);
        let mut seeds: Vec<usize> = (1..ids.len()).collect();
        seeds.sort_by_key(|&j| (target.distance(sites[j]), ids[j]));
        // Start from far-away peers, so the lookup has to walk.
        let seeds = seeds.iter().rev().take(5).map(|&j| records[j]);
        let lookup = Lookup::new(ids[me], target, 3, DIFFICULTY, seeds);
        let transport: &dyn Transport = &transports[me];
        let done =
            futures::executor::block_on(find_nodes(transport, lookup, Duration::from_millis(500)));
        assert!(done.is_done());
        let mut truth: Vec<usize> = (1..ids.len()).filter(|j| !down.contains(j)).collect();
        truth.sort_by_key(|&j| (target.distance(sites[j]), ids[j]));
        let truth: Vec<NodeId> = truth.iter().take(3).map(|&j| ids[j]).collect();
        let found: Vec<NodeId> = done.result().iter().map(|r| r.id).collect();
        assert_eq!(found, truth, "target {target:?}");
    }
}
