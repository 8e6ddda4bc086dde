//! The CAM and deduplication wire formats and the blob manifest.
//! The first byte picks the decoder; the rest is its input. The decoders
//! that take their buffer (and keep object bytes in it) must agree with
//! those that copy.
#![no_main]

use hologram::cam::dedup::{DedupMessage, Request};
use hologram::cam::CamMessage;
use hologram::cam::Manifest;
use hologram_fuzz::round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            assert_eq!(
                CamMessage::decode(rest),
                CamMessage::decode_owned(rest.to_vec())
            );
            round_trip(rest, CamMessage::decode, CamMessage::encode)
        }
        1 => {
            assert_eq!(
                DedupMessage::decode(rest),
                DedupMessage::decode_owned(rest.to_vec())
            );
            round_trip(rest, DedupMessage::decode, DedupMessage::encode)
        }
        2 => {
            assert_eq!(Request::decode(rest), Request::decode_owned(rest.to_vec()));
            round_trip(rest, Request::decode, Request::encode)
        }
        _ => round_trip(rest, Manifest::decode, Manifest::encode),
    }
});
