//! Where each peer listens.

use hologram_lattice::PeerId;
use metrics::SharedString;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

/// Where peers listen: `PeerId → SocketAddr`, shared by clones and
/// changeable while the transport runs. A peer that is not in the book is
/// unreachable; a changed address is dialed on the next call.
#[derive(Debug, Clone, Default)]
pub struct AddressBook {
    entries: Arc<RwLock<HashMap<PeerId, Entry>>>,
}

/// Where a peer listens, and the `peer` label its transport metrics carry.
#[derive(Debug, Clone)]
struct Entry {
    addr: SocketAddr,
    label: SharedString,
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
            .insert(
                peer,
                Entry {
                    addr,
                    label: SharedString::from(Arc::<str>::from(peer_label(&peer))),
                },
            );
    }

    /// Forgets `peer`; returns where it listened.
    pub fn remove(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(peer)
            .map(|e| e.addr)
    }

    /// Where `peer` listens, if known.
    pub fn get(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(peer)
            .map(|e| e.addr)
    }

    /// The `peer` label of `peer`'s transport metrics: its [`peer_label`]
    /// if the book holds it, else `other`. The book's size bounds the
    /// number of labels, whoever connects; a label is shared, not copied.
    pub(crate) fn label(&self, peer: &PeerId) -> SharedString {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(peer)
            .map(|e| e.label.clone())
            .unwrap_or(SharedString::const_str(OTHER_PEER))
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

/// The `peer` label of a key the address book does not hold (a client).
pub(crate) const OTHER_PEER: &str = "other";

/// A peer's label in metrics: the first 16 hex digits of its id.
pub(crate) fn peer_label(id: &PeerId) -> String {
    id.to_string().chars().take(16).collect()
}
