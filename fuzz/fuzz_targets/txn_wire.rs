//! The transaction wire format: coordinator and participant messages
//! (prepare requests, signed receipts with single or group proofs,
//! decisions, refusals).
#![no_main]

use hologram::txn::TxnMessage;
use hologram_fuzz::round_trip;
use libfuzzer_sys::fuzz_target;

/// A record object's bytes as a record (`None`: not a record at all).
fn record(bytes: &[u8]) -> Result<ParticipantRecord, Option<TxnError>> {
    ParticipantRecord::from_object(&Object::new(bytes.to_vec()))
        .ok_or(None)?
        .map_err(Some)
}

fuzz_target!(|data: &[u8]| {
    round_trip(data, TxnMessage::from_wire, |m: &TxnMessage| {
        m.to_wire().expect("an accepted message encodes")
    });
});
