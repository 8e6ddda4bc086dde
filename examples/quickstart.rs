//! The hologram quickstart, lattice edition: place objects on a network of
//! nodes by their content address, the way the later crates will.
//!
//! Run it with `cargo run --release --example quickstart`.
//!
//! It mints 1,024 node identities with proof of work, puts each on its lattice
//! site, stores a handful of objects (with duplicates) at the 3 nodes nearest
//! each object's address, and shows R96 fingerprints and the C768 gossip
//! schedule of one node. (Node keys here are random 32-byte stand-ins: the
//! Ed25519 key pairs come with `hologram-receipt`.)

use hologram::lattice::c768::{orbit, Phase, ScheduleRotation};
use hologram::lattice::kernels::Backend;
use hologram::lattice::{Address, NodeId, PeerColumns, ProofOfWork, R96Digest};
use std::collections::BTreeMap;
use std::time::Instant;

const NODES: u64 = 1_024;
const DIFFICULTY: u32 = 8;
const REPLICAS: usize = 3;

fn main() {
    println!(
        "hologram quickstart (kernels: {})\n",
        Backend::best().name()
    );

    // 1. Identities: each node proves work on its key before it is admitted.
    let start = Instant::now();
    let mut nodes: Vec<(NodeId, ProofOfWork)> = (0..NODES)
        .map(|i| {
            let key = *blake3::hash(&i.to_le_bytes()).as_bytes();
            let id = NodeId::from_bytes(key);
            let proof = id
                .mint_pow(DIFFICULTY, 1 << 20)
                .expect("difficulty is at most 256")
                .expect("2^8 attempts expected, 2^20 allowed");
            (id, proof)
        })
        .collect();
    let admitted = nodes
        .iter()
        .filter(|(id, proof)| id.verify_pow(*proof, DIFFICULTY).is_ok())
        .count();
    println!(
        "minted and verified {admitted}/{NODES} node identities at difficulty {DIFFICULTY} in {:.0?}",
        start.elapsed()
    );

    // 2. The routing view: nodes sorted by id (SPEC's tie-break), sites as columns.
    nodes.sort_by_key(|(id, _)| *id);
    let sites: PeerColumns = nodes.iter().map(|(id, _)| id.coord()).collect();
    let mut per_page = [0u32; 48];
    for c in sites.iter() {
        per_page[usize::from(c.page())] += 1;
    }
    println!(
        "nodes per page: min {}, max {}",
        per_page.iter().min().unwrap_or(&0),
        per_page.iter().max().unwrap_or(&0)
    );

    // 3. Content addressing with deduplication: equal bytes, one address.
    let objects: [&[u8]; 6] = [
        b"HELLO WORLD",
        b"the lattice has 12,288 sites",
        b"HELLO WORLD",
        b"WORLD HELLO",
        b"receipts bind the exact bytes",
        b"the lattice has 12,288 sites",
    ];
    let mut stored: BTreeMap<Address, Vec<usize>> = BTreeMap::new();
    println!(
        "\n{:<32} {:<10} {:>7}  replicas (node index: distance)",
        "object", "address", "site"
    );
    for obj in objects {
        let address = Address::of(obj);
        let site = address.coord();
        let nearest = sites.nearest(site, REPLICAS);
        let duplicate = stored.contains_key(&address);
        stored.insert(address, nearest.iter().map(|n| n.index).collect());
        let replicas: Vec<String> = nearest
            .iter()
            .map(|n| format!("{}: {}", n.index, n.distance))
            .collect();
        println!(
            "{:<32} {:<10} {:>7}  {}{}",
            String::from_utf8_lossy(obj),
            &address.to_string()[..8],
            format!("{}.{}", site.page(), site.byte()),
            replicas.join(", "),
            if duplicate {
                "  (duplicate: nothing new stored)"
            } else {
                ""
            }
        );
    }
    println!(
        "{} objects offered, {} distinct stored, {} copies in all",
        objects.len(),
        stored.len(),
        stored.values().map(Vec::len).sum::<usize>()
    );

    // 4. R96: an order-blind fingerprint, not an integrity check.
    let a = R96Digest::of(b"HELLO WORLD");
    let b = R96Digest::of(b"WORLD HELLO");
    println!(
        "\nR96 digest of HELLO WORLD {}…, of WORLD HELLO {}… (same classes, same digest: {}), residue {}",
        &a.to_string()[..12],
        &b.to_string()[..12],
        a == b,
        hologram::lattice::r96::residue(b"HELLO WORLD")
    );
    println!(
        "addresses differ: {}",
        Address::of(b"HELLO WORLD") != Address::of(b"WORLD HELLO")
    );

    // 5. C768: where node 0 gossips in the first phases of the schedule.
    let home = sites.get(0).expect("there are nodes");
    println!(
        "\nnode 0 sits at {}.{} (σ-orbit {}); its gossip pages (fanout 4):",
        home.page(),
        home.byte(),
        orbit(home)
    );
    for phase in 0..3u16 {
        let rotation = ScheduleRotation::at_phase(Phase::new(phase).expect("phase < 768"));
        let pages: Vec<u8> = rotation.pages(home.page(), 4).collect();
        println!("  phase {phase}: pages {pages:?}");
    }
}
