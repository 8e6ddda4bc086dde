//! Helpers shared by the benchmarks' target checks (included with `#[path]`).
#![allow(dead_code)] // each bench uses part of it

use std::time::{Duration, Instant};

/// `n` pseudo-random bytes from a xorshift generator seeded with `x` (non-zero).
pub fn random_bytes(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Seconds per call of `f`: the best of 7 runs of `reps` calls.
pub fn best_seconds(reps: u32, mut f: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..7 {
        let start = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(start.elapsed());
    }
    best.as_secs_f64() / f64::from(reps)
}

/// "met" or "NOT MET".
pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT MET"
    }
}

/// CPU time of this process so far (user + system), from `/proc/self/stat`
/// on Linux (clock ticks of 10 ms); `None` elsewhere.
pub fn cpu_seconds() -> Option<f64> {
    cpu_seconds_of("self")
}

/// CPU time of process `pid` (a number, or `self`) so far (user + system),
/// from `/proc/<pid>/stat` on Linux (clock ticks of 10 ms); `None` elsewhere.
pub fn cpu_seconds_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which ends with the last ')'): state is
    // the first, utime the 12th and stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}
