use super::*;
use crate::{Coord, LatticeRouter, NodeId, PeerColumns};
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

mod discovery {
    use super::super::*;
    use super::id;
    use crate::wire::WireError;
    use crate::{Coord, LatticeError, NodeId, ProofOfWork};
    use proptest::prelude::*;

    const D: u32 = 6;

    fn record(n: u32) -> PeerRecord {
        PeerRecord::mint(id(n), D, 1 << 20).unwrap().unwrap()
    }

    #[test]
    fn only_verified_records_enter_the_book() {
        let mut book = PeerBook::new(id(0), D, 2);
        assert_eq!(book.admit(record(1)), Ok(true));
        assert_eq!(book.admit(record(1)), Ok(false));
        // A nonce that does not verify: the first nonce below the minted one.
        let good = record(2);
        let forged = PeerRecord {
            id: good.id,
            pow: ProofOfWork {
                nonce: good.pow.nonce.wrapping_sub(1),
            },
        };
        if good.pow.nonce > 0 {
            assert!(matches!(
                book.admit(forged),
                Err(Rejection::Work(LatticeError::InsufficientWork { .. }))
            ));
        }
        // Under-worked: minted for 1 bit, 6 required.
        let weak = (100..)
            .filter_map(|n| PeerRecord::mint(id(n), 1, 64).unwrap())
            .find(|r| r.verify(D).is_err())
            .unwrap();
        assert!(matches!(book.admit(weak), Err(Rejection::Work(_))));
        assert!(!book.table().contains(&weak.id));
        assert_eq!(book.admit(record(0)), Err(Rejection::IsLocal));
        assert!(book
            .table()
            .iter()
            .all(|(p, _)| book.record(&p).unwrap().verify(D).is_ok()));
    }

    #[test]
    fn page_cap_limits_a_farm() {
        let mut book = PeerBook::new(id(0), 0, 1);
        let mut pages = std::collections::HashSet::new();
        let mut refused = 0;
        for n in 1..200 {
            let r = PeerRecord {
                id: id(n),
                pow: ProofOfWork { nonce: 0 },
            };
            match book.admit(r) {
                Ok(true) => assert!(pages.insert(r.id.coord().page())),
                Err(Rejection::PageFull) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(refused > 0);
        assert!(book.table().len() <= 48);
    }

    #[test]
    fn messages_round_trip_and_bounds_hold() {
        let ask = DiscoveryMessage::FindNodes {
            target: Coord::new(3, 4),
            k: 5,
        };
        assert_eq!(DiscoveryMessage::decode(&ask.encode()), Ok(ask));
        let full = DiscoveryMessage::Nodes(vec![record(1); MAX_RECORDS]);
        assert!(full.encode().len() <= MAX_MESSAGE_BYTES);
        assert_eq!(DiscoveryMessage::decode(&full.encode()), Ok(full));
        let mut too_many = DiscoveryMessage::Nodes(vec![
            PeerRecord {
                id: id(1),
                pow: ProofOfWork { nonce: 0 }
            };
            MAX_RECORDS + 1
        ])
        .encode();
        assert!(matches!(
            DiscoveryMessage::decode(&too_many),
            Err(LatticeError::Wire(WireError::TooMany { count, max: MAX_RECORDS, .. })) if count == MAX_RECORDS + 1
        ));
        too_many.resize(MAX_MESSAGE_BYTES + 1, 0);
        assert!(matches!(
            DiscoveryMessage::decode(&too_many),
            Err(LatticeError::Wire(WireError::TooLarge {
                max: MAX_MESSAGE_BYTES,
                ..
            }))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4000)) {
            if let Ok(DiscoveryMessage::Nodes(r)) = DiscoveryMessage::decode(&bytes) {
                prop_assert!(r.len() <= MAX_RECORDS);
            }
        }
    }

    /// A static network: each node knows its 6 nearest and 2 per page.
    fn network(n: u32) -> (Vec<NodeId>, std::collections::HashMap<NodeId, PeerBook>) {
        let ids: Vec<NodeId> = (1..=n).map(id).collect();
        let records: std::collections::HashMap<NodeId, PeerRecord> = ids
            .iter()
            .map(|&i| (i, PeerRecord::mint(i, D, 1 << 20).unwrap().unwrap()))
            .collect();
        let sites: std::collections::HashMap<NodeId, Coord> =
            ids.iter().map(|&i| (i, i.coord())).collect();
        let mut books = std::collections::HashMap::new();
        for (n, &me) in ids.iter().enumerate() {
            let mut book = PeerBook::new(me, D, usize::MAX);
            let mut by_distance: Vec<NodeId> = ids.clone();
            let mine = sites[&me];
            by_distance.sort_by_cached_key(|p| (mine.distance(sites[p]), *p));
            for p in by_distance.iter().filter(|p| **p != me).take(6) {
                book.admit(records[p]).unwrap();
            }
            // Two peers per page, a different two for every node.
            let mut per_page = [0; 48];
            for p in ids.iter().cycle().skip(n * 7).take(ids.len()) {
                let page = usize::from(sites[p].page());
                if *p != me && per_page[page] < 2 && book.admit(records[p]).is_ok() {
                    per_page[page] += 1;
                }
            }
            books.insert(me, book);
        }
        (ids, books)
    }

    #[test]
    fn lookups_converge_on_the_true_nearest() {
        let (ids, books) = network(400);
        let me = ids[0];
        for t in 0..40u64 {
            let target = Coord::from_index(t * 7_919 + 13);
            let seeds = books[&me].nearest_records(target, 16);
            let mut lookup = Lookup::new(me, target, 4, D, seeds);
            let mut rounds = 0;
            while !lookup.is_done() {
                rounds += 1;
                assert!(rounds < 200, "lookup does not terminate");
                for q in lookup.next_queries() {
                    // Every fourth node is silent.
                    if q.as_bytes()[3] % 4 == 0 {
                        lookup.on_failure(q);
                    } else {
                        let answer = books[&q].nearest_records(target, lookup.answer_size());
                        lookup.on_answer(q, answer);
                    }
                }
            }
            let mut truth: Vec<NodeId> = ids
                .iter()
                .copied()
                .filter(|p| *p != me && p.as_bytes()[3] % 4 != 0)
                .collect();
            truth.sort_by_cached_key(|p| (target.distance(p.coord()), *p));
            truth.truncate(4);
            let got: Vec<NodeId> = lookup.result().iter().map(|r| r.id).collect();
            assert_eq!(got, truth, "target {target:?}");
        }
    }

    #[test]
    fn the_ring_is_walked_from_both_sides_of_the_target() {
        // k = 2. The looker knows two nodes just ahead of the target byte and
        // one farther behind it; only that one knows the node just behind the
        // target. Asking only the k nearest of the page would ask the two
        // ahead, learn nothing new and stop without the nearest node.
        let target = Coord::new(7, 128);
        let on_page_7 = |bytes: std::ops::RangeInclusive<u8>| {
            (1u32..)
                .map(id)
                .find(|n| n.coord().page() == 7 && bytes.contains(&n.coord().byte()))
                .expect("some id lands there")
        };
        let ahead_1 = on_page_7(129..=138); // distance 1..=10
        let ahead_2 = on_page_7(139..=148); // 11..=20
        let behind_far = on_page_7(90..=107); // 21..=38
        let behind_near = on_page_7(118..=127); // 1..=10
        let mint = |n: NodeId| PeerRecord::mint(n, D, 1 << 20).unwrap().unwrap();
        let knows = |n: NodeId| match n {
            n if n == ahead_1 => vec![mint(ahead_2)],
            n if n == ahead_2 => vec![mint(ahead_1)],
            n if n == behind_far => vec![mint(behind_near)],
            _ => vec![mint(behind_far)],
        };
        let seeds = [ahead_1, ahead_2, behind_far].map(mint);
        let mut lookup = Lookup::new(id(0), target, 2, D, seeds);
        let mut asked = Vec::new();
        while !lookup.is_done() {
            let queries = lookup.next_queries();
            assert!(!queries.is_empty() && asked.len() < 10, "stuck: {asked:?}");
            for q in queries {
                asked.push(q);
                lookup.on_answer(q, knows(q));
            }
        }
        let mut truth = vec![ahead_1, ahead_2, behind_far, behind_near];
        truth.sort_by_key(|n| (target.distance(n.coord()), *n));
        truth.truncate(2);
        assert!(truth.contains(&behind_near));
        let got: Vec<NodeId> = lookup.result().iter().map(|r| r.id).collect();
        assert_eq!(got, truth, "asked {asked:?}");
    }

    #[test]
    fn unsolicited_answers_and_forged_records_are_ignored() {
        let me = id(0);
        let mut lookup = Lookup::new(me, Coord::new(1, 1), 2, D, [record(1)]);
        assert_eq!(lookup.next_queries(), vec![id(1)]);
        // id(2) was never asked: its answer is ignored.
        lookup.on_answer(id(2), [record(3)]);
        assert!(lookup.next_queries().is_empty());
        let good = record(4);
        let forged = PeerRecord {
            id: id(5),
            pow: ProofOfWork {
                nonce: good.pow.nonce,
            },
        };
        let forged_ok = forged.verify(D).is_ok();
        lookup.on_answer(id(1), [good, forged]);
        assert_eq!(lookup.rejected(), u64::from(!forged_ok));
        let next = lookup.next_queries();
        assert!(next.contains(&id(4)));
        assert!(!next.contains(&id(3)));
    }
}
