//! The consensus wire format: proposals, votes, certificates, decisions,
//! catch-up requests and commands.
#![no_main]

use hologram::consensus::ConsensusMessage;
use hologram_fuzz::round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    round_trip(data, ConsensusMessage::decode, |m: &ConsensusMessage| {
        m.encode().expect("an accepted message encodes")
    });
});
