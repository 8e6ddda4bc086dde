//! `LatticeProtocol`: authenticated epidemic broadcast over the lattice, with
//! delivery proofs.
