//! Properties of the lattice definitions (SPEC §1–§4, §7's proof of work).

use hologram::lattice::{class, residue};
use hologram::lattice::{orbit, sigma, sigma_pow, Phase, ScheduleRotation, ORBITS, PERIOD};
use hologram::lattice::{
    Address, Coord, NodeId, ProofOfWork, R96Digest, R96Histogram, MAX_DISTANCE, SITES,
};
use proptest::prelude::*;
use std::collections::HashSet;

fn coord() -> impl Strategy<Value = Coord> {
    (0u32..48, 0u32..256).prop_map(|(p, b)| Coord::new(p, b))
}

proptest! {
    #[test]
    fn metric_is_a_bounded_metric(a in coord(), b in coord(), c in coord()) {
        prop_assert_eq!(a.distance(b), b.distance(a));
        prop_assert_eq!(a.distance(b) == 0, a == b);
        prop_assert!(a.distance(c) <= a.distance(b) + b.distance(c));
        prop_assert!(a.distance(b) <= MAX_DISTANCE);
    }

    #[test]
    fn page_distance_dominates(a in coord(), b in coord(), c in coord()) {
        let page = |x: Coord, y: Coord| {
            let d = x.page().abs_diff(y.page());
            d.min(48 - d)
        };
        if page(a, b) < page(a, c) {
            prop_assert!(a.distance(b) < a.distance(c));
        }
    }

    #[test]
    fn wrapping_constructors_agree(p in any::<u32>(), b in any::<u32>()) {
        let c = Coord::new(p, b);
        prop_assert_eq!(u32::from(c.page()), p % 48);
        prop_assert_eq!(u32::from(c.byte()), b % 256);
        prop_assert_eq!(Coord::from_index(u64::from(c.index())), c);
        prop_assert!(usize::from(c.index()) < SITES);
    }

    #[test]
    fn histogram_of_concatenation_is_the_merge(a in prop::collection::vec(any::<u8>(), 0..6000),
                                               b in prop::collection::vec(any::<u8>(), 0..6000)) {
        let mut whole = a.clone();
        whole.extend_from_slice(&b);
        let mut merged = R96Histogram::of(&a);
        merged.merge(&R96Histogram::of(&b));
        prop_assert_eq!(&R96Histogram::of(&whole), &merged);
        prop_assert_eq!(merged.total(), whole.len() as u64);
        // Streaming in two updates is the same as one.
        let mut streamed = R96Histogram::new();
        streamed.update(&a);
        streamed.update(&b);
        prop_assert_eq!(&streamed, &merged);
        // The residue is a homomorphism into Z/96.
        prop_assert_eq!(u32::from(residue(&whole)), (u32::from(residue(&a)) + u32::from(residue(&b))) % 96);
        let direct: u32 = whole.iter().map(|&x| u32::from(class(x))).sum::<u32>() % 96;
        prop_assert_eq!(u32::from(residue(&whole)), direct);
    }

    #[test]
    fn digest_ignores_order_but_not_content(mut data in prop::collection::vec(any::<u8>(), 1..300), seed in any::<u64>()) {
        let d = R96Digest::of(&data);
        let shift = (seed % data.len() as u64) as usize;
        data.rotate_left(shift);
        prop_assert_eq!(R96Digest::of(&data), d);
        // Changing one byte to another class changes the digest.
        let b = data[0];
        data[0] = if class(b) == class(b ^ 0x80) { b ^ 0x40 } else { b ^ 0x80 };
        prop_assert_ne!(R96Digest::of(&data), d);
    }

    #[test]
    fn address_hex_round_trips(data in prop::collection::vec(any::<u8>(), 0..64)) {
        let a = Address::of(&data);
        prop_assert_eq!(a.to_string().parse::<Address>(), Ok(a));
        prop_assert_eq!(a.to_string().to_uppercase().parse::<Address>(), Ok(a));
    }

    #[test]
    fn parsing_arbitrary_strings_never_panics(s in ".{0,80}") {
        let _ = s.parse::<Address>();
        let _ = s.parse::<NodeId>();
        let _ = s.parse::<R96Digest>();
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..900)) {
        let _ = postcard::from_bytes::<Address>(&bytes);
        let _ = postcard::from_bytes::<NodeId>(&bytes);
        let _ = postcard::from_bytes::<R96Histogram>(&bytes);
        let _ = postcard::from_bytes::<ProofOfWork>(&bytes);
        if let Ok(c) = postcard::from_bytes::<Coord>(&bytes) {
            prop_assert!(c.page() < 48);
        }
        if let Ok(p) = postcard::from_bytes::<Phase>(&bytes) {
            prop_assert!(p.get() < PERIOD);
        }
    }

    #[test]
    fn map_page_never_local_and_covers_47(local in 0u8..48, phase in 0u16..768) {
        let r = ScheduleRotation::at_phase(Phase::new(phase).unwrap());
        let pages: HashSet<u8> = (0..47).map(|i| r.map_page(local, i)).collect();
        prop_assert_eq!(pages.len(), 47);
        prop_assert!(!pages.contains(&local));
        prop_assert!(pages.iter().all(|&p| p < 48));
        prop_assert_eq!(r.pages(local, 100).count(), 47);
    }
}

#[test]
fn sigma_has_order_768_and_16_orbits_of_768() {
    let mut seen = vec![false; SITES];
    let mut orbits = HashSet::new();
    for start in (0..SITES as u64).map(Coord::from_index) {
        let mut c = sigma(start);
        let mut order = 1u32;
        while c != start {
            assert_eq!(orbit(c), orbit(start), "σ preserves the orbit id");
            c = sigma(c);
            order += 1;
        }
        assert_eq!(order, u32::from(PERIOD), "σ-orbit of {start:?}");
        if !seen[usize::from(start.index())] {
            orbits.insert(orbit(start));
            let mut c = start;
            for _ in 0..PERIOD {
                assert!(!seen[usize::from(c.index())]);
                seen[usize::from(c.index())] = true;
                c = sigma(c);
            }
        }
        assert_eq!(sigma_pow(start, u64::from(PERIOD)), start);
    }
    assert_eq!(orbits.len(), usize::from(ORBITS));
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn every_page_is_chosen_equally_often_over_a_period() {
    for local in [0u8, 17, 47] {
        let mut counts = [0u32; 48];
        for phase in 0..PERIOD {
            let r = ScheduleRotation::at_phase(Phase::new(phase).unwrap());
            counts[usize::from(r.map_page(local, 0))] += 1;
        }
        assert_eq!(counts[usize::from(local)], 0);
        // 768 = 16·47 + 16: every remote page is chosen 16 or 17 times.
        assert!(counts
            .iter()
            .enumerate()
            .filter(|&(p, _)| p != usize::from(local))
            .all(|(_, &n)| n == 16 || n == 17));
    }
}

#[test]
fn node_coordinates_and_work_are_deterministic() {
    let id = NodeId::from_bytes([9; 32]);
    assert_eq!(id.coord(), NodeId::from_bytes([9; 32]).coord());
    let proof = id.mint_pow(10, 1 << 22).unwrap().unwrap();
    assert!(id.verify_pow(proof, 10).is_ok());
    // Minting returns the first nonce that works, so every earlier one fails.
    for nonce in 0..proof.nonce.min(64) {
        assert!(id.verify_pow(ProofOfWork { nonce }, 10).is_err());
    }
}
