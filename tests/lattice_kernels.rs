//! Every kernel path equals the scalar reference on any input, length and
//! alignment.

use hologram::lattice::Backend;
use hologram::lattice::{Coord, PeerColumns};
use proptest::prelude::*;

fn reference_histogram(data: &[u8]) -> [u64; 96] {
    let mut counts = [0u64; 96];
    Backend::SCALAR.r96_histogram(data, &mut counts);
    counts
}

fn check_histogram(data: &[u8]) {
    let expect = reference_histogram(data);
    for backend in Backend::available() {
        let mut got = [0u64; 96];
        backend.r96_histogram(data, &mut got);
        assert_eq!(got, expect, "{} on {} bytes", backend.name(), data.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn histograms_agree(data in prop::collection::vec(any::<u8>(), 0..20_000), offset in 0usize..64) {
        let offset = offset.min(data.len());
        check_histogram(&data[offset..]);
    }

    #[test]
    fn histograms_agree_on_runs(byte in any::<u8>(), other in any::<u8>(), len in 4096usize..40_000, period in 1usize..5) {
        // Runs and short periods take the AVX2/NEON run shortcut.
        let data: Vec<u8> = (0..len).map(|i| if i % period == 0 { other } else { byte }).collect();
        check_histogram(&data);
    }

    #[test]
    fn distances_agree(sites in prop::collection::vec((0u32..48, 0u32..256), 0..300), target in (0u32..48, 0u32..256)) {
        let cols: PeerColumns = sites.iter().map(|&(p, b)| Coord::new(p, b)).collect();
        let target = Coord::new(target.0, target.1);
        let expect: Vec<u16> = cols.iter().map(|c| target.distance(c)).collect();
        for backend in Backend::available() {
            let mut out = vec![7; 3];
            backend.distances_into(target, &cols, &mut out);
            prop_assert_eq!(&out, &expect, "{}", backend.name());
        }
    }

    #[test]
    fn nearest_agree(sites in prop::collection::vec((0u32..48, 0u32..256), 0..300),
                     narrow in any::<bool>(), target in (0u32..48, 0u32..256), k in 0usize..40) {
        // Narrow sites crowd few positions, so ties are common.
        let cols: PeerColumns = sites
            .iter()
            .map(|&(p, b)| if narrow { Coord::new(p % 3, b % 4) } else { Coord::new(p, b) })
            .collect();
        let target = Coord::new(target.0, target.1);
        let expect = Backend::SCALAR.nearest(target, &cols, k);
        prop_assert_eq!(expect.len(), k.min(cols.len()));
        prop_assert!(expect.windows(2).all(|w| (w[0].distance, w[0].index) < (w[1].distance, w[1].index)));
        for backend in Backend::available() {
            prop_assert_eq!(&backend.nearest(target, &cols, k), &expect, "{}", backend.name());
        }
    }
}

#[test]
fn histograms_agree_across_fold_boundaries() {
    // Longer than the 120 KiB fold interval, odd length, one value dominating:
    // a bin near overflow must still fold correctly.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let random: Vec<u8> = (0..300_001)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    check_histogram(&random);
    check_histogram(&vec![0u8; 1 << 20]);
    check_histogram(&vec![0xEEu8; 123_457]);
    let mut mixed = vec![0x41u8; 250_000];
    mixed.extend_from_slice(&random[..77_777]);
    check_histogram(&mixed[3..]);
}

#[test]
fn large_batches_agree() {
    let cols: PeerColumns = (0..65_536u64)
        .map(|i| Coord::from_index(i.wrapping_mul(2_654_435_761)))
        .collect();
    for target in [Coord::new(0, 0), Coord::new(47, 255), Coord::new(24, 128)] {
        let expect = Backend::SCALAR.nearest(target, &cols, 3);
        let mut expect_d = Vec::new();
        Backend::SCALAR.distances_into(target, &cols, &mut expect_d);
        for backend in Backend::available() {
            assert_eq!(
                backend.nearest(target, &cols, 3),
                expect,
                "{}",
                backend.name()
            );
            let mut d = Vec::new();
            backend.distances_into(target, &cols, &mut d);
            assert_eq!(d, expect_d, "{}", backend.name());
        }
    }
}

#[test]
fn the_best_backend_is_available() {
    let best = Backend::best();
    assert!(Backend::available().contains(&best));
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        assert_eq!(best.name(), "avx2");
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    assert_eq!(best.name(), "neon");
}
