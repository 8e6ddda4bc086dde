use super::*;
use crate::{Coord, NodeId, PeerColumns};
use proptest::prelude::*;

fn id(n: u32) -> NodeId {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&n.to_be_bytes());
    NodeId::from_bytes(b)
}

/// Every peer of the table sorted by (distance, id): the brute-force answer.
fn brute_force(table: &RoutingTable, target: Coord, k: usize) -> Vec<(NodeId, u16)> {
    let mut all: Vec<(u16, NodeId)> = table.iter().map(|(p, c)| (target.distance(c), p)).collect();
    all.sort_unstable();
    all.truncate(k);
    all.into_iter().map(|(d, p)| (p, d)).collect()
}

prop_compose! {
    /// Tables of any density: a few pages, crowded bytes (many ties), or spread out.
    fn table()(n in 0usize..400, pages in 1u32..49, bytes in 1u32..257, seed in any::<u64>()) -> RoutingTable {
        let mut t = RoutingTable::new();
        let mut x = seed | 1;
        for i in 0..n {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            let site = Coord::new((x % u64::from(pages)) as u32 * 7, (x >> 20) as u32 % bytes);
            t.insert_at(id((x >> 32) as u32 ^ i as u32), site);
        }
        t
    }
}

proptest! {
    #[test]
    fn nearest_equals_brute_force(t in table(), tp in 0u32..48, tb in 0u32..256, k in 0usize..12) {
        let target = Coord::new(tp, tb);
        prop_assert_eq!(t.nearest(target, k), brute_force(&t, target, k));
    }

    #[test]
    fn removal_keeps_queries_exact(mut t in table(), tp in 0u32..48, tb in 0u32..256) {
        let victims: Vec<NodeId> = t.iter().map(|(p, _)| p).step_by(3).collect();
        for v in &victims {
            prop_assert!(t.remove(v).is_some());
            prop_assert!(t.remove(v).is_none());
        }
        let target = Coord::new(tp, tb);
        prop_assert_eq!(t.nearest(target, 5), brute_force(&t, target, 5));
        prop_assert!(victims.iter().all(|v| !t.contains(v)));
    }
}

#[test]
fn route_to_address_matches_the_simd_scan() {
    let mut router = LatticeRouter::new(id(0));
    let mut peers: Vec<NodeId> = (1..=5_000).map(id).collect();
    for &p in &peers {
        assert_eq!(router.table_mut().insert(p), Insertion::Added);
    }
    peers.sort();
    let cols: PeerColumns = peers.iter().map(|p| p.coord()).collect();
    for i in 0..200u32 {
        let addr = crate::Address::of(&i.to_le_bytes());
        let expect: Vec<NodeId> = cols
            .nearest(addr.coord(), 3)
            .iter()
            .map(|n| peers[n.index])
            .collect();
        assert_eq!(router.route_to_address(&addr), expect);
    }
}

#[test]
fn bulk_build_equals_inserts() {
    let sites: Vec<(NodeId, Coord)> = (0..3_000u32)
        .map(|i| (id(i % 2_500), Coord::from_index(u64::from(i) * 7_919)))
        .collect();
    let bulk = RoutingTable::from_sites(sites.iter().copied());
    let mut one_by_one = RoutingTable::new();
    for &(p, c) in &sites {
        one_by_one.insert_at(p, c);
    }
    assert_eq!(bulk.len(), 2_500);
    assert_eq!(
        bulk.iter().collect::<Vec<_>>(),
        one_by_one.iter().collect::<Vec<_>>()
    );
}

#[test]
fn sparse_and_tiny_tables() {
    let mut t = RoutingTable::new();
    assert!(t.nearest(Coord::new(3, 3), 3).is_empty());
    t.insert_at(id(1), Coord::new(30, 0));
    assert_eq!(t.nearest(Coord::new(3, 3), 3), vec![(id(1), 21 * 256 + 3)]);
    t.insert_at(id(2), Coord::new(3, 200));
    let near = t.nearest(Coord::new(3, 3), 3);
    assert_eq!(near, vec![(id(2), 59), (id(1), 21 * 256 + 3)]);
    assert_eq!(t.insert_at(id(2), Coord::new(0, 0)), Insertion::Present);
}

#[test]
fn page_cap_refuses_a_farm() {
    let mut t = RoutingTable::with_page_cap(2);
    assert_eq!(t.insert_at(id(1), Coord::new(5, 1)), Insertion::Added);
    assert_eq!(t.insert_at(id(2), Coord::new(5, 2)), Insertion::Added);
    assert_eq!(t.insert_at(id(3), Coord::new(5, 3)), Insertion::PageFull);
    assert_eq!(t.insert_at(id(3), Coord::new(6, 3)), Insertion::Added);
    assert_eq!(t.len(), 3);
    assert_eq!(t.page_peers(5).len(), 2);
}
