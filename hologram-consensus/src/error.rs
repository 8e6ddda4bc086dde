//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong in `hologram-consensus`.
///
/// Each variant says what was wrong and with which input.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConsensusError {}
