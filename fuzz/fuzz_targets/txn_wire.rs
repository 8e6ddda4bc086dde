//! The transaction wire format: coordinator and participant messages
//! (prepare requests, signed receipts with single or group proofs,
//! decisions, refusals), and a participant's stored records. The first
//! byte picks the decoder; the rest is its input.
#![no_main]

use hologram::cam::Object;
use hologram::lattice::wire::Wire;
use hologram::txn::{ParticipantRecord, TxnError, TxnMessage};
use hologram_fuzz::round_trip;
use libfuzzer_sys::fuzz_target;

/// A record object's bytes as a record (`None`: not a record at all).
fn record(bytes: &[u8]) -> Result<ParticipantRecord, Option<TxnError>> {
    ParticipantRecord::from_object(&Object::new(bytes.to_vec()))
        .ok_or(None)?
        .map_err(Some)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 2 {
        0 => round_trip(rest, TxnMessage::from_wire, |m: &TxnMessage| {
            m.to_wire().expect("an accepted message encodes")
        }),
        _ => round_trip(rest, record, |r: &ParticipantRecord| {
            r.to_object()
                .expect("an accepted record encodes")
                .data()
                .to_vec()
        }),
    }
});
