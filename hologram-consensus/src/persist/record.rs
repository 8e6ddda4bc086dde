//! The voting record as a stored object (layout in the docs of
//! [`DurableLog`](super::DurableLog)): local state, never hashed for
//! consensus or signed as a whole (its votes carry their own signatures), so
//! its postcard body only has to round-trip.

use crate::message::MAX_MESSAGE_BYTES;
use crate::replica::VotingRecord;
use hologram_lattice::wire::{self, WireError};

const WHAT: &str = "voting record";

/// The prefix of a voting-record object of the first format (no abstain
/// height), still read.
pub(crate) const RECORD_MAGIC_V1: &[u8; 25] = b"hologram voting-record v1";

/// The prefix of a voting-record object of the second format (no log
/// length), still read.
pub(crate) const RECORD_MAGIC_V2: &[u8; 25] = b"hologram voting-record v2";

/// The prefix of a voting-record object as written now.
pub(crate) const RECORD_MAGIC: &[u8; 25] = b"hologram voting-record v3";

/// The newest record format this build reads.
const RECORD_VERSION: u32 = 3;

/// An error if `bytes` are a record of a newer format than this build reads.
pub(crate) fn check_version(bytes: &[u8]) -> Result<(), crate::ConsensusError> {
    super::newer_format(
        "voting record",
        bytes,
        b"hologram voting-record v",
        RECORD_VERSION,
    )
}

/// The largest record read back: a full batch per lock of a deep pipeline
/// plus a full mempool of submitted commands fits well within it.
pub const MAX_RECORD_BYTES: usize = 64 * MAX_MESSAGE_BYTES;

/// The bytes of record number `sequence`, written with the log holding the
/// heights below `log_len`: `"hologram voting-record v3" ‖ sequence u64 LE ‖
/// abstain_below u64 LE ‖ log_len u64 LE ‖ postcard body`.
pub(crate) fn encode(
    sequence: u64,
    record: &VotingRecord,
    log_len: u64,
) -> Result<Vec<u8>, WireError> {
    let mut out = RECORD_MAGIC.to_vec();
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&record.abstain_below.to_le_bytes());
    out.extend_from_slice(&log_len.to_le_bytes());
    wire::encode_into(WHAT, record, out)
}

/// A record object read back.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Read {
    /// Its sequence number.
    pub(crate) seq: u64,
    /// The log's length when it was written (0 before format v3): the
    /// heights below it were stored.
    pub(crate) log_len: u64,
    /// The record.
    pub(crate) record: VotingRecord,
}

/// Decodes a record object (of any format).
pub(crate) fn decode(bytes: &[u8]) -> Result<Read, String> {
    let (rest, version) = if let Some(rest) = bytes.strip_prefix(RECORD_MAGIC.as_slice()) {
        (rest, 3)
    } else if let Some(rest) = bytes.strip_prefix(RECORD_MAGIC_V2.as_slice()) {
        (rest, 2)
    } else {
        let rest = (bytes.strip_prefix(RECORD_MAGIC_V1.as_slice())).ok_or("not a voting record")?;
        (rest, 1)
    };
    let (seq, rest) = rest
        .split_first_chunk::<8>()
        .ok_or("sequence number missing")?;
    let (abstain_below, rest) = if version >= 2 {
        let (a, rest) = rest
            .split_first_chunk::<8>()
            .ok_or("abstain height missing")?;
        (u64::from_le_bytes(*a), rest)
    } else {
        (0, rest)
    };
    let (log_len, body) = if version >= 3 {
        let (n, body) = rest.split_first_chunk::<8>().ok_or("log length missing")?;
        (u64::from_le_bytes(*n), body)
    } else {
        (0, rest)
    };
    // The whole object is bounded by MAX_RECORD_BYTES, checked unread.
    let max_body = MAX_RECORD_BYTES.saturating_sub(bytes.len() - body.len());
    let mut record: VotingRecord = wire::decode(WHAT, body, max_body).map_err(|e| e.to_string())?;
    record.abstain_below = abstain_below;
    for (height, h) in &record.heights {
        if let Some(lock) = &h.locked {
            lock.batch
                .check_bounds()
                .map_err(|e| format!("lock at height {height}: {e}"))?;
        }
    }
    Ok(Read {
        seq: u64::from_le_bytes(*seq),
        log_len,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::replica::HeightRecord;
    use crate::vote::{Slot, Vote, VoteKind};
    use hologram_receipt::{KeyPair, Receipt};
    use proptest::prelude::*;

    fn record(n: u8) -> VotingRecord {
        let keys = KeyPair::from_seed([n; 32]);
        let mut r = VotingRecord::default();
        let slot = Slot {
            height: n as u64,
            round: 1,
            kind: VoteKind::Prevote,
        };
        let mut h = HeightRecord::default();
        h.votes.insert(
            (1, VoteKind::Prevote),
            Vote::sign(&keys, slot, Some(Receipt::from_bytes(&[n]))),
        );
        r.heights.insert(n as u64, h);
        let c = Command::sign(&keys, u64::from(n), 0, vec![n; n as usize]).unwrap();
        r.submitted.insert(c.id(), c);
        r.abstain_below = u64::from(n) * 7;
        r
    }

    proptest! {
        #[test]
        fn round_trips(seq in any::<u64>(), n in any::<u8>()) {
            let r = record(n);
            let read = decode(&encode(seq, &r, seq ^ 5).unwrap()).unwrap();
            prop_assert_eq!(read, Read { seq, log_len: seq ^ 5, record: r });
        }

        #[test]
        fn garbage_is_an_error_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
            for magic in [RECORD_MAGIC, RECORD_MAGIC_V2, RECORD_MAGIC_V1] {
                let mut framed = magic.to_vec();
                framed.extend_from_slice(&bytes);
                let _ = decode(&framed);
            }
        }
    }

    #[test]
    fn a_first_format_record_is_read_without_an_abstain_height() {
        let mut r = record(3);
        r.abstain_below = 0;
        let mut v1 = RECORD_MAGIC_V1.to_vec();
        v1.extend_from_slice(&9u64.to_le_bytes());
        let v1 = wire::encode_into(WHAT, &r, v1).unwrap();
        let read = Read {
            seq: 9,
            log_len: 0,
            record: r,
        };
        assert_eq!(decode(&v1).unwrap(), read);
    }

    #[test]
    fn a_second_format_record_is_read_without_a_log_length() {
        let r = record(4);
        let mut v2 = RECORD_MAGIC_V2.to_vec();
        v2.extend_from_slice(&6u64.to_le_bytes());
        v2.extend_from_slice(&r.abstain_below.to_le_bytes());
        let v2 = wire::encode_into(WHAT, &r, v2).unwrap();
        let read = Read {
            seq: 6,
            log_len: 0,
            record: r,
        };
        assert_eq!(decode(&v2).unwrap(), read);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(3, &record(2), 1).unwrap();
        bytes.push(0);
        assert!(decode(&bytes).unwrap_err().contains("trailing"));
    }
}
