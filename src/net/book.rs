//! Where each peer listens.

use hologram_lattice::PeerId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

/// Where peers listen: `PeerId → SocketAddr`, shared by clones and
/// changeable while the transport runs. A peer that is not in the book is
/// unreachable; a changed address is dialed on the next call.
#[derive(Debug, Clone, Default)]
pub struct AddressBook {
    entries: Arc<RwLock<HashMap<PeerId, SocketAddr>>>,
}

impl AddressBook {
    /// An empty book.
    pub fn new() -> AddressBook {
        AddressBook::default()
    }

    /// Records (or changes) where `peer` listens.
    pub fn insert(&self, peer: PeerId, addr: SocketAddr) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer, addr);
    }

    /// Forgets `peer`; returns where it listened.
    pub fn remove(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(peer)
    }

    /// Where `peer` listens, if known.
    pub fn get(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(peer)
            .copied()
    }

    /// How many peers the book holds.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
