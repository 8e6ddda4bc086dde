//! The transaction wire formats: coordinator and participant messages
//! (prepare requests, signed receipts with single or group proofs,
//! decisions, refusals), and a replicated group's proposer–member requests
//! and replies (decided heights, endorsements). The first byte picks the
//! decoder; the rest is its input.
#![no_main]

use hologram::txn::replicated::{MemberReply, MemberRequest};
use hologram::txn::TxnMessage;
use hologram_fuzz::round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => round_trip(rest, TxnMessage::from_wire, |m: &TxnMessage| {
            m.to_wire().expect("an accepted message encodes")
        }),
        1 => round_trip(rest, MemberRequest::decode, |m: &MemberRequest| {
            m.encode().expect("an accepted request encodes")
        }),
        _ => round_trip(rest, MemberReply::decode, |m: &MemberReply| {
            m.encode().expect("an accepted reply encodes")
        }),
    }
});
