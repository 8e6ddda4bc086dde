//! Lattice routing: the [`RoutingTable`] and the chapter's [`LatticeRouter`].

mod router;
mod table;

pub use router::{LatticeRouter, DEFAULT_K};
pub use table::{Insertion, RoutingTable};

#[cfg(test)]
mod tests;
