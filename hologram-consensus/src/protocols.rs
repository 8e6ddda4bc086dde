//! The protocol tags this crate owns (the registry of every hologram tag is
//! on [`Protocol`]).

use hologram_lattice::transport::Protocol;

/// The replicas' one-way consensus messages, received by a
/// [`ConsensusHandler`](crate::ConsensusHandler).
pub const CONSENSUS_PROTOCOL: Protocol = Protocol(3);

/// Epidemic broadcast ([`LatticeProtocol`](crate::LatticeProtocol)).
pub const BROADCAST_PROTOCOL: Protocol = Protocol(4);

/// Consensus as request/response: a [`RemoteValidator`](crate::RemoteValidator)'s
/// calls answered by a [`ValidatorHandler`](crate::ValidatorHandler), so one
/// node can serve both faces.
pub const VALIDATOR_PROTOCOL: Protocol = Protocol(10);
