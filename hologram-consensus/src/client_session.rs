//! A client's side of a session: numbering its commands.

use crate::command::Command;
use crate::ConsensusError;
use hologram_lattice::NodeId;
use hologram_receipt::KeyPair;
use std::collections::BTreeSet;
use std::sync::Arc;

/// A client's session: makes its [`Command`]s with consecutive sequence
/// numbers and, told of the answers it got, the first unanswered sequence
/// that lets replicas forget answers (see [`SessionTable`](crate::SessionTable)).
///
/// A retry resends the very [`Command`] made here (the same id), never a
/// new one: a new command is a new operation.
///
/// A session starts at sequence 0 ([`new`](Self::new)); a client that
/// does not remember its last sequence (a new process with an old key)
/// starts at a number above any it used, claiming the answers below it
/// ([`starting_at`](Self::starting_at), e.g. the time in microseconds).
#[derive(Debug, Clone)]
pub struct ClientSession {
    keys: KeyPair,
    next: u64,
    first_unanswered: u64,
    /// Answered sequences at or above `first_unanswered` (at most the
    /// commands in flight).
    answered: BTreeSet<u64>,
}

impl ClientSession {
    /// A session of `keys` from sequence 0.
    pub fn new(keys: KeyPair) -> Self {
        Self::starting_at(keys, 0)
    }

    /// A session of `keys` whose first command is number `sequence`, the
    /// client holding the answers of every command below it.
    pub fn starting_at(keys: KeyPair, sequence: u64) -> Self {
        Self {
            keys,
            next: sequence,
            first_unanswered: sequence,
            answered: BTreeSet::new(),
        }
    }

    /// The client's keys.
    pub fn keys(&self) -> &KeyPair {
        &self.keys
    }

    /// The client's id (its public key).
    pub fn client(&self) -> NodeId {
        self.keys.node_id()
    }

    /// The sequence of the next command.
    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// Every sequence below this one is answered.
    pub fn first_unanswered(&self) -> u64 {
        self.first_unanswered
    }

    /// The next command, of `payload`, signed.
    pub fn command(&mut self, payload: impl Into<Arc<[u8]>>) -> Result<Command, ConsensusError> {
        let command = Command::sign(&self.keys, self.next, self.first_unanswered, payload)?;
        self.next += 1;
        Ok(command)
    }

    /// The next commands, of `payloads` (1 to
    /// [`MAX_SIGNED_BATCH`](crate::MAX_SIGNED_BATCH)), numbered in order and
    /// signed at once: one signature for all of them
    /// ([`Command::sign_batch`]). Each is submitted, retried and answered on
    /// its own.
    pub fn commands(
        &mut self,
        payloads: impl IntoIterator<Item = impl Into<Arc<[u8]>>>,
    ) -> Result<Vec<Command>, ConsensusError> {
        let (first, claimed) = (self.next, self.first_unanswered);
        let numbered = payloads
            .into_iter()
            .zip(first..)
            .map(|(p, sequence)| (sequence, claimed, p.into()));
        let commands = Command::sign_batch(&self.keys, numbered)?;
        self.next += commands.len() as u64;
        Ok(commands)
    }

    /// Records that the command of `sequence` was answered (for good: a
    /// stale or refused one too, since it will not be retried).
    pub fn answered(&mut self, sequence: u64) {
        if sequence < self.first_unanswered || sequence >= self.next {
            return;
        }
        self.answered.insert(sequence);
        while self.answered.remove(&self.first_unanswered) {
            self.first_unanswered += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_commands_and_claims_answers_in_order() {
        let mut s = ClientSession::new(KeyPair::from_seed([4; 32]));
        let a = s.command(b"x".to_vec()).unwrap();
        let b = s.command(b"x".to_vec()).unwrap();
        let c = s.command(b"x".to_vec()).unwrap();
        assert_eq!((a.sequence(), b.sequence(), c.sequence()), (0, 1, 2));
        assert_ne!(a.id(), b.id());
        s.answered(1);
        assert_eq!(s.first_unanswered(), 0);
        s.answered(0);
        assert_eq!(s.first_unanswered(), 2);
        s.answered(7); // never sent: ignored
        s.answered(2);
        assert_eq!(s.first_unanswered(), 3);
        let d = s.command(b"y".to_vec()).unwrap();
        assert_eq!((d.sequence(), d.first_unanswered()), (3, 3));
        let batch = s.commands([b"p".to_vec(), b"q".to_vec()]).unwrap();
        assert_eq!((batch[0].sequence(), batch[1].sequence()), (4, 5));
        assert!(batch
            .iter()
            .all(|c| c.first_unanswered() == 3 && c.verify().is_ok()));
        assert_eq!(s.next_sequence(), 6);
        assert!(s.commands(Vec::<Vec<u8>>::new()).is_err());
        assert_eq!(s.next_sequence(), 6);
        let later = ClientSession::starting_at(KeyPair::from_seed([4; 32]), 1_000);
        assert_eq!(
            (later.next_sequence(), later.first_unanswered()),
            (1_000, 1_000)
        );
    }
}
