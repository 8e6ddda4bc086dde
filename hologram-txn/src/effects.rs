//! What a protocol core asks its driver to do after handling an input.

use crate::TxnError;
use crate::TxnMessage;
use hologram_cam::{Object, Store};
use hologram_lattice::sim::Millis;
use hologram_lattice::{Address, NodeId};

/// Objects to make durable, and superseded ones to remove afterwards.
///
/// The driver must complete the puts (one atomic [`Store::put_batch`])
/// **before** it sends any message of the same step: that is what makes a
/// vote or a decision durable before anyone learns of it. Removals only
/// reclaim space; recovery recognises anything a crash leaves unremoved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Persist {
    /// Objects to put, atomically.
    pub put: Vec<Object>,
    /// Addresses to remove once the puts are durable.
    pub remove: Vec<Address>,
}

impl Persist {
    /// Puts (one batch), then removes.
    pub async fn apply<S: Store + ?Sized>(self, store: &S) -> Result<(), TxnError> {
        if !self.put.is_empty() {
            store.put_batch(self.put).await?;
        }
        for address in &self.remove {
            store.remove(address).await?;
        }
        Ok(())
    }
}

/// The outputs of a core: durable writes first, then messages and timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effects<T> {
    /// What to make durable before sending.
    pub persist: Persist,
    /// Messages to send.
    pub send: Vec<(NodeId, TxnMessage)>,
    /// Timers to set: after how many milliseconds, and what they carry.
    pub timers: Vec<(Millis, T)>,
}

impl<T> Default for Effects<T> {
    fn default() -> Self {
        Effects {
            persist: Persist::default(),
            send: Vec::new(),
            timers: Vec::new(),
        }
    }
}
