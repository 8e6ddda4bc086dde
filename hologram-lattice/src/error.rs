//! The one error type of this crate.

use thiserror::Error;

/// Everything that can go wrong in `hologram-lattice`.
///
/// Each variant names what was wrong and with which input, so an error from
/// parsing user input or verifying a peer's claim can be reported as is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LatticeError {
    /// A hex string did not have the length its type needs.
    #[error("expected {expected} hex digits, got {got}")]
    HexLength {
        /// The number of hex digits the type needs.
        expected: usize,
        /// The number of characters given.
        got: usize,
    },
    /// A hex string held a character that is not a hex digit.
    #[error("invalid hex digit {found:?} at position {position}")]
    HexDigit {
        /// Zero-based character position of the bad digit.
        position: usize,
        /// The character found there.
        found: char,
    },
    /// A C768 phase was not below 768.
    #[error("C768 phase {0} is out of range (must be below 768)")]
    PhaseOutOfRange(u64),
    /// A schedule slot length of zero milliseconds was given.
    #[error("a schedule slot must last at least one millisecond")]
    ZeroSlot,
    /// A proof of work does not reach the required difficulty.
    #[error("proof of work has {achieved} leading zero bits, {required} required")]
    InsufficientWork {
        /// Leading zero bits the verifier requires.
        required: u32,
        /// Leading zero bits the proof actually has.
        achieved: u32,
    },
    /// A proof-of-work difficulty above 256 bits can never be met.
    #[error("proof-of-work difficulty {0} exceeds 256 bits")]
    DifficultyTooHigh(u32),
    /// A message did not decode (see [`crate::wire`]).
    #[error(transparent)]
    Wire(#[from] crate::wire::WireError),
    /// A simulation's invariant failed.
    #[error("invariant violated at step {step} ({at_ms} ms): {message}; replay with HOLOGRAM_SEED={seed}")]
    InvariantViolated {
        /// The seed that replays the run.
        seed: u64,
        /// The step after which the check failed.
        step: u64,
        /// The virtual time of that step.
        at_ms: u64,
        /// What the invariant said.
        message: String,
    },
}
