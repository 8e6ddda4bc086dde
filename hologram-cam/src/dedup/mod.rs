//! The chapter's `DeduplicationNetwork`: each object held by N distinct
//! nodes of a consistent-hash ring, written to a majority, read from enough
//! copies that reads and writes meet, with reference counts (SPEC §8).

mod anti_entropy;
mod batch;
mod hand_off;
pub(crate) mod holder;
mod locks;
pub(crate) mod network;
mod ranges;
pub(crate) mod references;
mod scrub;
mod upkeep;
mod wire;

pub use anti_entropy::{AntiEntropy, PASS_RANGES};
pub use hand_off::HandOff;
pub use network::DIRECT_PUT_BYTES;
pub use ranges::{
    AddressPrefix, HeldAddress, RangeDigest, MAX_FETCH, MAX_RANGES, RANGE_ADDRESSES,
    RANGE_DIGEST_CONTEXT, UNKNOWN_REFERENCES,
};
pub use references::{ReferenceList, ReferenceSet, REFERENCES_TAG_CONTEXT};
pub use scrub::{ScrubStep, SCRUB_CURSOR};
pub use upkeep::{Upkeep, UpkeepPlan, UpkeepReport};
pub use wire::{
    fetched_check, BatchedPut, DedupMessage, FetchedItem, Kept, Reference, Request, MAX_BATCH,
    MAX_MESSAGE_BYTES, REQUEST_CHECK_CONTEXT,
};
