//! A seeded fault schedule: rounds, each one process, partition or disk
//! fault (or none) with, often, degraded links (loss, duplication, delay with
//! jitter, reordering) on a random set of directed pairs; held for a while,
//! then healed.

use super::proxy::Faults;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// The round's main fault.
#[derive(Clone, Debug, PartialEq)]
pub enum Major {
    /// Nothing but the degraded links.
    None,
    /// These nodes cut off from the others, both ways.
    Partition(Vec<usize>),
    /// This node killed with SIGKILL, restarted at the heal.
    Kill(usize),
    /// This node stopped with SIGSTOP, continued at the heal.
    Pause(usize),
    /// This node's disk filled (a real `ENOSPC`), freed at the heal.
    DiskFull(usize),
}

/// One round of the schedule.
#[derive(Clone, Debug)]
pub struct Round {
    /// The main fault.
    pub major: Major,
    /// Degraded links: (dialing node, dialed node, faults both ways).
    pub links: Vec<(usize, usize, Faults)>,
    /// How long the faults hold before the heal.
    pub hold: Duration,
}

impl Round {
    /// The kinds of fault this round injects, for the figures.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds = match self.major {
            Major::None => vec![],
            Major::Partition(_) => vec!["partition"],
            Major::Kill(_) => vec!["sigkill+restart"],
            Major::Pause(_) => vec!["sigstop+sigcont"],
            Major::DiskFull(_) => vec!["disk full"],
        };
        let any = |f: fn(&Faults) -> bool| self.links.iter().any(|(_, _, x)| f(x));
        for (kind, present) in [
            ("loss", any(|f| f.loss > 0.0)),
            ("duplication", any(|f| f.duplicate > 0.0)),
            ("delay", any(|f| !f.delay.is_zero() || !f.jitter.is_zero())),
            ("reordering", any(|f| f.reorder > 0.0)),
        ] {
            if present {
                kinds.push(kind);
            }
        }
        kinds
    }
}

/// `rounds` rounds for `nodes` nodes, from `seed`.
pub fn schedule(seed: u64, nodes: usize, rounds: usize) -> Vec<Round> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..rounds)
        .map(|_| {
            let major = match rng.random_range(0..5) {
                0 => Major::None,
                1 => {
                    // A minority, or (at an even count) half: no quorum anywhere.
                    let size = rng.random_range(1..=nodes / 2);
                    let mut side: Vec<usize> = (0..nodes).collect();
                    for i in 0..nodes {
                        side.swap(i, rng.random_range(i..nodes));
                    }
                    side.truncate(size);
                    side.sort_unstable();
                    Major::Partition(side)
                }
                2 => Major::Kill(rng.random_range(0..nodes)),
                3 => Major::Pause(rng.random_range(0..nodes)),
                _ => Major::DiskFull(rng.random_range(0..nodes)),
            };
            let mut links = Vec::new();
            if rng.random_bool(0.7) {
                let faults = Faults {
                    cut: false,
                    loss: if rng.random_bool(0.6) {
                        rng.random_range(0.01..0.2)
                    } else {
                        0.0
                    },
                    duplicate: if rng.random_bool(0.5) {
                        rng.random_range(0.01..0.2)
                    } else {
                        0.0
                    },
                    delay: if rng.random_bool(0.5) {
                        Duration::from_millis(rng.random_range(1..25))
                    } else {
                        Duration::ZERO
                    },
                    jitter: Duration::from_millis(rng.random_range(0..10)),
                    reorder: if rng.random_bool(0.5) {
                        rng.random_range(0.01..0.3)
                    } else {
                        0.0
                    },
                };
                for a in 0..nodes {
                    for b in 0..nodes {
                        if a != b && rng.random_bool(0.5) {
                            links.push((a, b, faults));
                        }
                    }
                }
            }
            Round {
                major,
                links,
                hold: Duration::from_millis(rng.random_range(1_000..3_000)),
            }
        })
        .collect()
}
