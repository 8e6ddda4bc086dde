//! The consensus wire formats: replica messages (proposals, votes,
//! certificates, decisions, catch-up requests and commands) and the requests
//! and answers of a remote validator. The first byte picks the decoder; the
//! rest is its input.
#![no_main]

use hologram::consensus::{ConsensusMessage, ValidatorRequest, ValidatorResponse};
use hologram::lattice::wire::Wire;
use hologram_fuzz::round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => round_trip(rest, ConsensusMessage::from_wire, |m: &ConsensusMessage| {
            m.to_wire().expect("an accepted message encodes")
        }),
        1 => round_trip(rest, ValidatorRequest::from_wire, |m: &ValidatorRequest| {
            m.to_wire().expect("an accepted request encodes")
        }),
        _ => round_trip(
            rest,
            ValidatorResponse::from_wire,
            |m: &ValidatorResponse| m.to_wire().expect("an accepted response encodes"),
        ),
    }
});
