//! The protocol tags this crate owns (the registry of every hologram tag is
//! on [`Protocol`]).

use hologram_lattice::transport::Protocol;

/// The content-addressed storage protocol: [`DistributedCAM`](crate::DistributedCAM)
/// asks, [`CamHandler`](crate::CamHandler) answers.
pub const CAM_PROTOCOL: Protocol = Protocol(2);

/// The deduplication network's replicated store:
/// [`DeduplicationNetwork`](crate::DeduplicationNetwork) asks,
/// [`DedupHandler`](crate::DedupHandler) answers.
pub const DEDUP_PROTOCOL: Protocol = Protocol(7);
