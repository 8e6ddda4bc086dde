//! The `LatticeProtocol` broadcast wire format and delivery certificates.
//! The first byte picks the decoder; the rest is its input.
#![no_main]

use hologram::consensus::broadcast::BroadcastMessage;
use hologram::consensus::DeliveryCertificate;
use hologram::lattice::wire::Wire;
use hologram_fuzz::round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 2 {
        0 => round_trip(rest, BroadcastMessage::from_wire, |m: &BroadcastMessage| {
            m.to_wire().expect("an accepted message encodes")
        }),
        _ => round_trip(
            rest,
            DeliveryCertificate::from_wire,
            |c: &DeliveryCertificate| c.to_wire().expect("an accepted certificate encodes"),
        ),
    }
});
