//! The voting record as a stored object (layout in the docs of
//! [`DurableLog`](super::DurableLog)): local state, never hashed for
//! consensus or signed as a whole (its votes carry their own signatures), so
//! its postcard body only has to round-trip.

use crate::message::MAX_MESSAGE_BYTES;
use crate::replica::VotingRecord;
use hologram_lattice::wire::{self, WireError};

const WHAT: &str = "voting record";

/// The prefix of a voting-record object.
pub(crate) const RECORD_MAGIC: &[u8; 25] = b"hologram voting-record v1";

/// The largest record read back: a full batch per lock of a deep pipeline
/// plus a full mempool of submitted commands fits well within it.
pub const MAX_RECORD_BYTES: usize = 64 * MAX_MESSAGE_BYTES;

/// The bytes of record number `sequence`.
pub(crate) fn encode(sequence: u64, record: &VotingRecord) -> Result<Vec<u8>, WireError> {
    let mut out = RECORD_MAGIC.to_vec();
    out.extend_from_slice(&sequence.to_le_bytes());
    wire::encode_into(WHAT, record, out)
}

/// Decodes a record object: its sequence number and record.
pub(crate) fn decode(bytes: &[u8]) -> Result<(u64, VotingRecord), String> {
    let rest = bytes
        .strip_prefix(RECORD_MAGIC.as_slice())
        .ok_or("not a voting record")?;
    let (seq, body) = rest
        .split_first_chunk::<8>()
        .ok_or("sequence number missing")?;
    // The whole object is bounded by MAX_RECORD_BYTES, checked unread.
    let max_body = MAX_RECORD_BYTES - RECORD_MAGIC.len() - 8;
    let record: VotingRecord = wire::decode(WHAT, body, max_body).map_err(|e| e.to_string())?;
    for (height, h) in &record.heights {
        if let Some(lock) = &h.locked {
            lock.batch
                .check_bounds()
                .map_err(|e| format!("lock at height {height}: {e}"))?;
        }
    }
    Ok((u64::from_le_bytes(*seq), record))
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
        r
    }

    proptest! {
        #[test]
        fn round_trips(seq in any::<u64>(), n in any::<u8>()) {
            let r = record(n);
            prop_assert_eq!(decode(&encode(seq, &r).unwrap()).unwrap(), (seq, r));
        }

        #[test]
        fn garbage_is_an_error_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
            let mut framed = RECORD_MAGIC.to_vec();
            framed.extend_from_slice(&bytes);
            let _ = decode(&framed);
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(3, &record(2)).unwrap();
        bytes.push(0);
        assert!(decode(&bytes).unwrap_err().contains("trailing"));
    }
}
