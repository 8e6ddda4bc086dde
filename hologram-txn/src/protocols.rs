//! The protocol tags this crate owns (the registry of every hologram tag is
//! on [`Protocol`]).

use hologram_lattice::transport::Protocol;

/// Transactions as one-way messages between drivers, received by a
/// [`TxnHandler`](crate::TxnHandler).
pub const TXN_PROTOCOL: Protocol = Protocol(5);

/// Transactions as request/response: a [`RemoteParticipant`](crate::RemoteParticipant)'s
/// calls answered by a [`ParticipantService`](crate::ParticipantService).
pub const TXN_CALL_PROTOCOL: Protocol = Protocol(8);
