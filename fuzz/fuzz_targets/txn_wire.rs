//! The transaction wire format: coordinator and participant messages
//! (prepare requests, signed receipts with single or group proofs,
//! decisions, refusals).
#![no_main]

use hologram::txn::TxnMessage;
use hologram_fuzz::round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    round_trip(data, TxnMessage::from_wire, |m: &TxnMessage| {
        m.to_wire().expect("an accepted message encodes")
    });
});
