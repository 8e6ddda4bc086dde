//! The node's key-value operations (`hologram::node::KvOp`): a payload that
//! starts with the magic decodes to an operation within the bounds, or is
//! refused; an accepted one re-encodes to a payload that decodes the same.
#![no_main]

use hologram::node::{KvError, KvOp};
use hologram_fuzz::round_trip;
use libfuzzer_sys::fuzz_target;

/// A payload as an operation (a payload without the magic is refused too).
fn decode(payload: &[u8]) -> Result<KvOp, KvError> {
    KvOp::decode(payload).unwrap_or(Err(KvError::Malformed))
}

fuzz_target!(|data: &[u8]| {
    round_trip(data, decode, |op: &KvOp| {
        op.encode().expect("an accepted operation encodes")
    });
});
