//! Lattice routing and Sybil-resistant discovery.
//!
//! Run it with `cargo run --release --example lattice_routing`.
//!
//! Every node sits at the lattice site of its id. A `LatticeRouter` with a
//! full view answers "which k peers are nearest this address?" locally
//! (SPEC §8); a node that knows only a few peers finds the same answer with
//! an iterative `find_nodes` lookup over the network, asking peers for ever
//! closer peers. Peers are admitted only with a proof of work on their id
//! (the chapter's exercise 2), so a forged record is refused on sight.

use futures::executor::block_on;
use hologram::lattice::routing::{
    find_nodes, DiscoveryHandler, Lookup, PeerBook, PeerRecord, RoutingTable,
};
use hologram::lattice::transport::{MemoryNetwork, Transport};
use hologram::lattice::{Address, Coord, LatticeRouter, NodeId, ProofOfWork, PAGES};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const NODES: u32 = 256;
/// Leading zero bits every node id must prove (SPEC §7).
const DIFFICULTY: u32 = 8;
/// Nearest peers each node knows to begin with.
const KNOWN: usize = 6;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Identities with proof of work.
    let start = Instant::now();
    let records: Vec<PeerRecord> = (0..NODES)
        .map(|i| {
            let id = NodeId::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes());
            PeerRecord::mint(id, DIFFICULTY, 1 << 24)?
                .ok_or_else(|| "no proof of work found".into())
        })
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    println!(
        "{NODES} identities minted at difficulty {DIFFICULTY} in {:.0?}",
        start.elapsed()
    );

    // A Sybil's record: an id with no work behind it is refused.
    let mut book = PeerBook::new(records[0].id, DIFFICULTY, 8);
    let sybil = PeerRecord {
        id: NodeId::from_bytes([0x5b; 32]),
        pow: ProofOfWork { nonce: 0 },
    };
    match book.admit(sybil) {
        Err(e) => println!("a record without proof of work is refused: {e}"),
        Ok(_) => return Err("a forged record was admitted".into()),
    }

    // 2. The network: each node serves discovery and knows few peers: its
    //    nearest on the lattice, and one on each of the pages 1, 2, 4, 8, 16
    //    and 24 pages away in either direction (a small-world table, as a
    //    node that has run a few lookups of its own would have).
    let network = MemoryNetwork::new(7);
    let mut transports = Vec::new();
    for record in &records {
        let mut book = PeerBook::new(record.id, DIFFICULTY, 8);
        let site = record.id.coord();
        let nearest_to = |target: Coord, k: usize| {
            let mut others: Vec<PeerRecord> = records
                .iter()
                .filter(|r| r.id != record.id)
                .copied()
                .collect();
            others.sort_by_key(|r| (target.distance(r.id.coord()), r.id));
            others.truncate(k);
            others
        };
        let mut known = nearest_to(site, KNOWN);
        for offset in [1, 2, 4, 8, 16, 24, 32, 40, 44, 46, 47] {
            let page = (usize::from(site.page()) + offset) % PAGES;
            let target = Coord::new(page as u32, u32::from(site.byte()));
            known.extend(nearest_to(target, 1));
        }
        for r in known {
            book.admit(r).ok(); // a full page refuses more, which is fine
        }
        let handler = Arc::new(DiscoveryHandler::new(Arc::new(RwLock::new(book))));
        transports.push(network.join(record.id, handler));
    }

    // 3. The ground truth: a router with a full table.
    let full = LatticeRouter::with_table(
        records[0].id,
        RoutingTable::from_sites(records.iter().skip(1).map(|r| (r.id, r.id.coord()))),
    );

    // 4. Node 0 looks up where objects live, starting from one far peer.
    let me: &dyn Transport = &transports[0];
    for name in ["HELLO WORLD", "the lattice has 12,288 sites", "receipts"] {
        let address = Address::of(name.as_bytes());
        let target = address.coord();
        let far = records
            .iter()
            .skip(1)
            .max_by_key(|r| (target.distance(r.id.coord()), r.id))
            .ok_or("no peers")?;
        let lookup = Lookup::new(records[0].id, target, 3, DIFFICULTY, [*far]);
        let done = block_on(find_nodes(me, lookup, Duration::from_millis(200)));
        let found: Vec<NodeId> = done.result().iter().map(|r| r.id).collect();
        let expected = full.route_to_address(&address);
        println!(
            "{name:?} lives at {}.{}: lookup found {} of the 3 nearest ({})",
            target.page(),
            target.byte(),
            found.iter().filter(|id| expected.contains(id)).count(),
            found
                .iter()
                .map(|id| format!(
                    "{}.{} at distance {}",
                    id.coord().page(),
                    id.coord().byte(),
                    target.distance(id.coord())
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if found != expected {
            return Err(format!("lookup found {found:?}, the router says {expected:?}").into());
        }
    }

    // 5. Routing is a local computation: hash the object, name its peers.
    let start = Instant::now();
    let mut hits = 0usize;
    for i in 0..100_000u32 {
        hits += full.route_to_address(&Address::of(&i.to_le_bytes())).len();
    }
    println!(
        "route_to_address over {} peers, hashing included: {:.2} µs a call ({hits} peers named)",
        full.table().len(),
        start.elapsed().as_secs_f64() * 1e6 / 100_000.0
    );
    Ok(())
}
