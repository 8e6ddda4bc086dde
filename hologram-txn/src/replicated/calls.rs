//! The client session of a [`ReplicatedParticipant`](super::ReplicatedParticipant):
//! numbers its commands, and resends the same command for a retried call.

use hologram_consensus::{ClientSession, Command, ConsensusError};
use hologram_receipt::KeyPair;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The most calls left unanswered that are kept for a retry; past it the
/// oldest is given up (a later decision of it is then stale, never applied).
/// Below the session window of the group's machines, so that a client
/// never numbers a command the machines would refuse.
pub(crate) const MAX_UNANSWERED: usize = 256;

/// A participant's session with its group (see [`ClientSession`]).
///
/// A call whose message was already sent and not answered yet (a protocol
/// retry: the same bytes) gets the *same* signed command, which the
/// group's session table applies at most once. An answered call is
/// forgotten, so the same bytes later are a new command.
pub(crate) struct CallSession {
    inner: Mutex<Inner>,
}

struct Inner {
    session: ClientSession,
    /// Unanswered commands by sequence, and their sequence by payload.
    unanswered: BTreeMap<u64, Command>,
    by_bytes: HashMap<Arc<[u8]>, u64>,
}

impl CallSession {
    /// A session of `keys` from sequence 0.
    pub(crate) fn new(keys: KeyPair) -> Self {
        Self {
            inner: Mutex::new(Inner {
                session: ClientSession::new(keys),
                unanswered: BTreeMap::new(),
                by_bytes: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update completes before the next fallible step.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The command for a call of `bytes`: the unanswered one of the same
    /// bytes if there is one, else the next of the session.
    pub(crate) fn command(&self, bytes: Vec<u8>) -> Result<Command, ConsensusError> {
        let bytes: Arc<[u8]> = bytes.into();
        let mut inner = self.lock();
        if let Some(c) = inner
            .by_bytes
            .get(&bytes)
            .and_then(|s| inner.unanswered.get(s))
        {
            return Ok(c.clone());
        }
        let command = inner.session.command(Arc::clone(&bytes))?;
        inner.unanswered.insert(command.sequence(), command.clone());
        inner.by_bytes.insert(bytes, command.sequence());
        while inner.unanswered.len() > MAX_UNANSWERED {
            let Some((_, old)) = inner.unanswered.pop_first() else {
                break;
            };
            inner.forget(&old);
        }
        Ok(command)
    }

    /// The call of `command` was answered.
    pub(crate) fn answered(&self, command: &Command) {
        let mut inner = self.lock();
        if inner.unanswered.remove(&command.sequence()).is_some() {
            inner.forget(command);
        }
    }
}

impl Inner {
    fn forget(&mut self, command: &Command) {
        self.by_bytes.remove(command.bytes());
        self.session.answered(command.sequence());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_before_the_answer_is_the_same_command() {
        let calls = CallSession::new(KeyPair::from_seed([8; 32]));
        let a = calls.command(b"prepare".to_vec()).unwrap();
        let again = calls.command(b"prepare".to_vec()).unwrap();
        assert_eq!(a.id(), again.id());
        let b = calls.command(b"commit".to_vec()).unwrap();
        assert_eq!(b.sequence(), 1);
        calls.answered(&a);
        let later = calls.command(b"prepare".to_vec()).unwrap();
        assert_eq!((later.sequence(), later.first_unanswered()), (2, 1));
        // Calls never answered are given up past the bound.
        for i in 0..MAX_UNANSWERED as u32 + 5 {
            calls.command(i.to_le_bytes().to_vec()).unwrap();
        }
        let inner = calls.lock();
        assert_eq!(inner.unanswered.len(), MAX_UNANSWERED);
        assert_eq!(inner.by_bytes.len(), MAX_UNANSWERED);
        assert!(inner.session.first_unanswered() > 2);
    }
}
