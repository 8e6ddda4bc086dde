//! `DiscoveryMessage::decode`: peer records, proofs of work, lookups.
#![no_main]

use hologram::lattice::routing::DiscoveryMessage;
use hologram_fuzz::round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    round_trip(data, DiscoveryMessage::decode, DiscoveryMessage::encode);
});
