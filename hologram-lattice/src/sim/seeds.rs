//! Running a test over many seeds, printing the failing one, replaying it.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Environment variable that replays exactly one seed.
pub const SEED_VAR: &str = "HOLOGRAM_SEED";
/// Environment variable that sets how many seeds to run (soak runs set it high).
pub const SEEDS_VAR: &str = "HOLOGRAM_SEEDS";

/// The seeds a simulation test should run: only `HOLOGRAM_SEED` when it is
/// set, else `0..HOLOGRAM_SEEDS` (default `default_count`).
pub fn seeds(default_count: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var(SEED_VAR)
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return vec![seed];
    }
    let count = std::env::var(SEEDS_VAR)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default_count);
    (0..count).collect()
}

/// Runs `test` for every seed of [`seeds`]. The first failure (an `Err` or a
/// panic) stops the run and panics with the seed and the command line that
/// replays it.
///
/// ```
/// hologram_lattice::sim::check_seeds("doc example", 3, |seed| {
///     if seed < 1_000_000 { Ok(()) } else { Err("unreachable".into()) }
/// });
/// ```
pub fn check_seeds(name: &str, default_count: u64, test: impl Fn(u64) -> Result<(), String>) {
    let all = seeds(default_count);
    for &seed in &all {
        let outcome = catch_unwind(AssertUnwindSafe(|| test(seed)));
        let failure = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(message)) => message,
            Err(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".to_string()),
        };
        panic!(
            "{name}: seed {seed} failed: {failure}\n  replay with {SEED_VAR}={seed} (ran {} seed(s))",
            all.len()
        );
    }
}
