//! Key locks held from prepare to commit or abort, no-wait.

use crate::{Key, TxnError, TxnId};
use std::collections::HashMap;

/// Which transaction holds each locked key.
///
/// Conflicts are resolved **no-wait**: a prepare that meets a key locked by
/// another transaction fails at once with a retryable
/// [`TxnError::Conflict`] and takes no lock at all. Nothing ever waits for a
/// lock, so no cycle of waiters (a deadlock) can form; a client retries with
/// a fresh transaction after a randomised back-off.
#[derive(Debug, Clone, Default)]
pub struct LockTable {
    holders: HashMap<Key, TxnId>,
}

impl LockTable {
    /// Locks every key for `txn`, or none: the first key held by another
    /// transaction is the error. Keys `txn` already holds are fine.
    pub fn lock_all<'a>(
        &mut self,
        txn: TxnId,
        keys: impl IntoIterator<Item = &'a Key> + Clone,
    ) -> Result<(), TxnError> {
        for key in keys.clone() {
            if let Some(&holder) = self.holders.get(key) {
                if holder != txn {
                    return Err(TxnError::Conflict {
                        key: key.clone(),
                        holder,
                    });
                }
            }
        }
        for key in keys {
            self.holders.insert(key.clone(), txn);
        }
        Ok(())
    }

    /// Releases the keys `txn` holds among `keys`.
    pub fn release<'a>(&mut self, txn: TxnId, keys: impl IntoIterator<Item = &'a Key>) {
        for key in keys {
            if self.holders.get(key) == Some(&txn) {
                self.holders.remove(key);
            }
        }
    }

    /// The holder of a key.
    pub fn holder(&self, key: &Key) -> Option<TxnId> {
        self.holders.get(key).copied()
    }

    /// How many keys are locked.
    pub fn len(&self) -> usize {
        self.holders.len()
    }

    /// Whether no key is locked.
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }

    /// Every locked key with its holder.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &TxnId)> {
        self.holders.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_wait_takes_all_or_nothing() {
        let k = |s: &str| Key::new(s.as_bytes().to_vec()).unwrap();
        let (a, b) = (TxnId([1; 16]), TxnId([2; 16]));
        let mut locks = LockTable::default();
        locks.lock_all(a, &[k("x"), k("y")]).unwrap();
        assert_eq!(
            locks.lock_all(b, &[k("z"), k("y")]),
            Err(TxnError::Conflict {
                key: k("y"),
                holder: a
            })
        );
        assert_eq!(locks.holder(&k("z")), None, "a failed lock takes nothing");
        locks.lock_all(a, &[k("x")]).unwrap();
        locks.release(b, &[k("x")]);
        assert_eq!(locks.holder(&k("x")), Some(a), "only the holder releases");
        locks.release(a, &[k("x"), k("y")]);
        assert!(locks.is_empty());
    }
}
