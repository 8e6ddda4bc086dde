//! Lattice routing: the [`RoutingTable`] and the chapter's [`LatticeRouter`](crate::LatticeRouter),
//! Sybil-resistant discovery ([`PeerBook`], [`PeerRecord`]) and the iterative
//! [`Lookup`] that finds the nodes nearest a site.

mod discovery;
mod handler;
mod lookup;
pub(crate) mod router;
mod table;

pub use discovery::{
    DiscoveryMessage, PeerBook, PeerRecord, Rejection, MAX_MESSAGE_BYTES, MAX_RECORDS,
};
pub use handler::DiscoveryHandler;
pub use lookup::{find_nodes, Lookup, DEFAULT_ALPHA, MIN_ANSWER};
pub use router::DEFAULT_K;
pub use table::{Insertion, RoutingTable};

#[cfg(test)]
mod tests;
