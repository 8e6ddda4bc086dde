//! Composition and arithmetic as properties.

use hologram_lattice::SchedulePoint;
use hologram_receipt::{Budget, Receipt, ReceiptBuilder};
use proptest::prelude::*;

fn receipt() -> impl Strategy<Value = Receipt> {
    (
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<u64>(),
        0u8..96,
        any::<bool>(),
    )
        .prop_map(|(data, steps, budget, phi)| {
            let p = SchedulePoint::from_steps(steps);
            Receipt {
                c768_cycle: p.cycle,
                c768_phase: p.phase,
                budget: Budget::new(budget).unwrap(),
                phi_roundtrip: phi,
                ..Receipt::from_bytes(&data)
            }
        })
}

/// The fields sequential composition treats algebraically.
fn algebra(r: &Receipt) -> (SchedulePoint, bool, Budget) {
    (r.schedule(), r.phi_roundtrip, r.budget)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn sequential_is_associative_on_schedule_phi_and_budget(a in receipt(), b in receipt(), c in receipt()) {
        let left = a.then(&b).then(&c);
        let right = a.then(&b.then(&c));
        prop_assert_eq!(algebra(&left), algebra(&right));
        // The digests record the grouping (SPEC fixes r96 = derive(rA ‖ rB)).
        prop_assert_ne!(left.r96, right.r96);
        prop_assert_eq!(Receipt::sequence([&a, &b, &c]), Some(left));
    }

    #[test]
    fn many_way_is_order_independent(parts in proptest::collection::vec(receipt(), 0..8), seed in any::<u64>()) {
        let mut shuffled = parts.clone();
        // A deterministic shuffle from the seed.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let c = Receipt::compose_all(&parts);
        prop_assert_eq!(c, Receipt::compose_all(&shuffled));
        prop_assert_eq!(c.budget, parts.iter().map(|r| r.budget).sum::<Budget>());
        prop_assert_eq!(c.phi_roundtrip, parts.iter().all(|r| r.phi_roundtrip));
        prop_assert_eq!(
            c.schedule(),
            parts.iter().map(Receipt::schedule).max().unwrap_or_default()
        );
    }

    #[test]
    fn budgets_form_the_ring_z96(a in 0u8..96, b in 0u8..96, c in 0u8..96) {
        let (x, y, z) = (Budget::new(a).unwrap(), Budget::new(b).unwrap(), Budget::new(c).unwrap());
        prop_assert_eq!((x + y).get() as u32, (a as u32 + b as u32) % 96);
        prop_assert_eq!((x * y).get() as u32, (a as u32 * b as u32) % 96);
        prop_assert_eq!((x + y) + z, x + (y + z));
        prop_assert_eq!((x * y) * z, x * (y * z));
        prop_assert_eq!(x * (y + z), x * y + x * z);
        prop_assert_eq!(x + -x, Budget::ZERO);
        prop_assert_eq!(x * Budget::ONE, x);
        prop_assert!((-48..=47).contains(&(x.signed() as i32)));
        prop_assert_eq!((x.signed() as i32).rem_euclid(96), a as i32);
        prop_assert_eq!(x.is_impossible_claim(), a > 47);
    }

    #[test]
    fn builder_pieces_equal_the_whole(data in proptest::collection::vec(any::<u8>(), 0..70_000), cuts in proptest::collection::vec(any::<usize>(), 0..4)) {
        let mut builder = ReceiptBuilder::new();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut start = 0;
        for c in cuts.into_iter().chain([data.len()]) {
            builder.update(&data[start..c]);
            start = c;
        }
        prop_assert_eq!(builder.len(), data.len() as u64);
        let r = builder.finish();
        prop_assert_eq!(r.content, hologram_lattice::Address::of(&data));
        prop_assert_eq!(r.r96, hologram_lattice::R96Digest::of(&data));
    }
}
