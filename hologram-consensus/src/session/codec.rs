//! The canonical bytes of a [`SessionTable`], part of every snapshot
//! (layout in [`Snapshot`](crate::Snapshot)'s docs).

use super::{Session, SessionLimits, SessionTable};
use crate::codec::Reader;
use hologram_lattice::NodeId;
use std::collections::BTreeMap;

/// The fixed bytes of one session: client (32), first unanswered (8),
/// last active (8), answer count (4).
const SESSION_HEADER: usize = 32 + 8 + 8 + 4;
/// The fixed bytes of one answer: sequence (8), length (4).
const ANSWER_HEADER: usize = 8 + 4;

impl<O: Clone> SessionTable<O> {
    /// Appends the table's canonical bytes: its limits, then its sessions
    /// in client order, each answer in sequence order, each output as
    /// `output` writes it (length-prefixed here).
    pub(crate) fn encode_into(
        &self,
        out: &mut Vec<u8>,
        output: impl Fn(&O) -> Result<Vec<u8>, String>,
    ) -> Result<(), String> {
        let l = self.limits;
        out.extend_from_slice(&(l.max_sessions as u64).to_le_bytes());
        out.extend_from_slice(&l.window.to_le_bytes());
        out.extend_from_slice(&l.expiry_heights.to_le_bytes());
        let mut clients: Vec<&NodeId> = self.sessions.keys().collect();
        clients.sort_unstable();
        // At most max_sessions sessions and window answers each: counts
        // are written as u32 (limits beyond that are not snapshotted).
        out.extend_from_slice(&(clients.len() as u32).to_le_bytes());
        for client in clients {
            let s = &self.sessions[client];
            out.extend_from_slice(client.as_bytes());
            out.extend_from_slice(&s.first_unanswered.to_le_bytes());
            out.extend_from_slice(&s.last_active.to_le_bytes());
            out.extend_from_slice(&(s.answers.len() as u32).to_le_bytes());
            for (sequence, o) in &s.answers {
                let bytes = output(o)?;
                out.extend_from_slice(&sequence.to_le_bytes());
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(&bytes);
            }
        }
        Ok(())
    }

    /// Reads a table written by [`encode_into`](Self::encode_into). Its
    /// limits must be `limits` (they are part of the machine's definition);
    /// every count is checked against them and against the bytes left
    /// before anything is allocated; clients must be in strictly increasing
    /// order and answers within each session's window, so equal tables
    /// have exactly one encoding.
    pub(crate) fn decode(
        r: &mut Reader<'_>,
        limits: SessionLimits,
        output: impl Fn(&[u8]) -> Result<O, String>,
    ) -> Result<Self, String> {
        let stored = SessionLimits {
            max_sessions: usize::try_from(r.u64("max sessions")?).unwrap_or(usize::MAX),
            window: r.u64("session window")?,
            expiry_heights: r.u64("session expiry")?,
        };
        if stored != limits {
            return Err(format!(
                "session limits {stored:?} differ from this machine's {limits:?}"
            ));
        }
        let count = r.u32("session count")? as usize;
        if count > limits.max_sessions.max(1) {
            return Err(format!(
                "{count} sessions, at most {} allowed",
                limits.max_sessions
            ));
        }
        if count > r.rest.len() / SESSION_HEADER {
            return Err(format!(
                "{count} sessions cannot fit in {} bytes",
                r.rest.len()
            ));
        }
        let mut table = SessionTable::new(limits);
        let mut previous: Option<NodeId> = None;
        for _ in 0..count {
            let client = NodeId::from_bytes(r.array("session client")?);
            if previous.is_some_and(|p| p >= client) {
                return Err(format!("session of {client} out of order"));
            }
            previous = Some(client);
            let first_unanswered = r.u64("first unanswered")?;
            let last_active = r.u64("last active")?;
            let answers = r.u32("answer count")? as usize;
            if answers as u64 > limits.window || answers > r.rest.len() / ANSWER_HEADER {
                return Err(format!("{answers} answers in the session of {client}"));
            }
            let mut kept = BTreeMap::new();
            let mut last: Option<u64> = None;
            for _ in 0..answers {
                let sequence = r.u64("answer sequence")?;
                let in_window = sequence >= first_unanswered
                    && sequence < first_unanswered.saturating_add(limits.window);
                if !in_window || last.is_some_and(|l| l >= sequence) {
                    return Err(format!(
                        "answer {sequence} of {client} out of order or outside its window"
                    ));
                }
                last = Some(sequence);
                let len = r.u32("answer length")? as usize;
                let o = output(r.take(len, "answer")?)
                    .map_err(|e| format!("answer {sequence} of {client}: {e}"))?;
                kept.insert(sequence, o);
            }
            table.by_activity.insert((last_active, client));
            table.sessions.insert(
                client,
                Session {
                    first_unanswered,
                    answers: kept,
                    last_active,
                },
            );
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::session::Verdict;
    use hologram_receipt::KeyPair;
    use proptest::prelude::*;

    fn bytes(t: &SessionTable<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        t.encode_into(&mut out, |o| Ok(o.to_le_bytes().to_vec()))
            .unwrap();
        out
    }

    fn decode(b: &[u8], limits: SessionLimits) -> Result<SessionTable<u64>, String> {
        let mut r = Reader::new(b);
        let t = SessionTable::decode(&mut r, limits, |b| {
            Ok(u64::from_le_bytes(b.try_into().map_err(|_| "not 8 bytes")?))
        })?;
        r.finish()?;
        Ok(t)
    }

    fn table(log: &[(u8, u64, u64)], limits: SessionLimits) -> SessionTable<u64> {
        let mut t = SessionTable::new(limits);
        for (height, &(client, sequence, first)) in log.iter().enumerate() {
            let keys = KeyPair::from_seed([client; 32]);
            let c = Command::sign(&keys, sequence, first.min(sequence), vec![]).unwrap();
            t.expire(height as u64);
            if t.admit(height as u64, &c) == Verdict::Apply {
                t.answer(&c, sequence * 3);
            }
        }
        t
    }

    proptest! {
        /// A table read back is the same table: same bytes, same verdicts
        /// on what comes next.
        #[test]
        fn round_trips(log in proptest::collection::vec((0u8..5, 0u64..12, 0u64..12), 0..60)) {
            let limits = SessionLimits { max_sessions: 3, window: 4, expiry_heights: 20 };
            let t = table(&log, limits);
            let b = bytes(&t);
            let back = decode(&b, limits).unwrap();
            prop_assert_eq!(bytes(&back), b);
            prop_assert_eq!(&back.by_activity, &t.by_activity);
            // The restored table answers what comes next as the original.
            let (mut a, mut c) = (t, back);
            for (i, (client, sequence, first)) in [(1u8, 5u64, 0u64), (4, 0, 0), (2, 11, 9), (1, 5, 0)].into_iter().enumerate() {
                let height = (log.len() + i) as u64;
                let keys = KeyPair::from_seed([client; 32]);
                let command = Command::sign(&keys, sequence, first, vec![]).unwrap();
                a.expire(height);
                c.expire(height);
                let (va, vc) = (a.admit(height, &command), c.admit(height, &command));
                prop_assert_eq!(&va, &vc);
                if va == Verdict::Apply {
                    a.answer(&command, 1);
                    c.answer(&command, 1);
                }
            }
            prop_assert_eq!(bytes(&a), bytes(&c));
        }

        #[test]
        fn garbage_is_an_error_never_a_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&b, SessionLimits::default());
        }

        #[test]
        fn cut_or_flipped_bytes_are_errors_or_another_valid_table(
            log in proptest::collection::vec((0u8..5, 0u64..12, 0u64..12), 1..40),
            cut in 1usize..40,
            flip in any::<usize>(),
        ) {
            let limits = SessionLimits { max_sessions: 3, window: 4, expiry_heights: 20 };
            let b = bytes(&table(&log, limits));
            let cut = cut.min(b.len());
            prop_assert!(decode(&b[..b.len() - cut], limits).is_err());
            let mut flipped = b.clone();
            let i = flip % flipped.len();
            flipped[i] ^= 0x80;
            if let Ok(t) = decode(&flipped, limits) {
                prop_assert_eq!(bytes(&t), flipped, "one encoding per table");
            }
        }
    }

    #[test]
    fn other_limits_are_refused() {
        let limits = SessionLimits {
            max_sessions: 3,
            window: 4,
            expiry_heights: 20,
        };
        let b = bytes(&table(&[(1, 0, 0)], limits));
        assert!(decode(&b, SessionLimits::default())
            .unwrap_err()
            .contains("limits"));
    }
}
