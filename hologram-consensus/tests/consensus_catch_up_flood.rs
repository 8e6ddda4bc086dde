//! Catch-up amplification (issue 19, point 5), in the simulator: a validator
//! floods one replica with catch-up requests — thousands at one instant,
//! identical, overlapping and disjoint — while the other replicas keep
//! committing. What the flooder is sent per resend interval stays within
//! what it may be sent (each height once; the byte budget), and the honest
//! replicas commit at the pace they have without the flood.
//!
//! Seeds: `HOLOGRAM_SEEDS=<n>` soaks, `HOLOGRAM_SEED=<s>` replays one.

mod hostile;

use hologram_consensus::ConsensusMessage;
use hologram_lattice::sim::check_seeds;
use hologram_lattice::wire::Wire;
use hostile::{Cluster, LATENCY_MS, RESEND_MS};
use rand::RngExt;
use std::collections::BTreeMap;

/// Heights decided before the flood starts.
const BEFORE: usize = 80;

fn warm_up(c: &mut Cluster) -> Result<(), String> {
    let mut guard = 0;
    while c.committed() < BEFORE {
        c.run_for(100, 4);
        guard += 1;
        if guard > 100 {
            return Err(format!("only {} heights after 10 s", c.committed()));
        }
    }
    // Let every replica finish what is in flight.
    c.sim
        .run_until(c.sim.now() + 200)
        .map_err(|e| e.to_string())?;
    c.take_received();
    Ok(())
}

/// A decision the flooder received: when, its height, its encoded bytes.
type Answer = (u64, u64, usize);

/// Heights and encoded bytes of the decisions in `received`.
fn decisions(received: &[(u64, ConsensusMessage)]) -> Vec<Answer> {
    received
        .iter()
        .filter_map(|(at, m)| match m {
            ConsensusMessage::Decision(d) => {
                Some((*at, d.height(), m.to_wire().expect("encodes").len()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn identical_and_overlapping_requests_are_answered_once_per_interval() {
    check_seeds("catch-up dedup", 2, |seed| {
        let mut c = Cluster::new(seed, |_| {});
        warm_up(&mut c)?;
        let target = c.honest[0];
        // 1,000 identical requests and 1,000 overlapping ones, at one instant.
        for i in 0..2_000u64 {
            let from = if i % 2 == 0 { 0 } else { i % 48 };
            c.sim
                .inject(c.hostile, target, ConsensusMessage::SyncRequest { from });
        }
        c.sim
            .run_until(c.sim.now() + RESEND_MS / 2)
            .map_err(|e| e.to_string())?;
        let got = decisions(&c.take_received());
        let mut per_height: BTreeMap<u64, usize> = BTreeMap::new();
        for (_, h, _) in &got {
            *per_height.entry(*h).or_default() += 1;
        }
        // The union of the ranges asked is 0 .. 47 + 32: each height once.
        // (Before the fix: 2,000 requests answered 64,000 decisions.)
        if got.len() > 79 || per_height.values().any(|n| *n > 1) {
            return Err(format!(
                "{} decisions answered for 2,000 requests (heights {:?}..)",
                got.len(),
                per_height.iter().find(|(_, n)| **n > 1)
            ));
        }
        if per_height.len() != 79 {
            return Err(format!("{} of 79 heights answered", per_height.len()));
        }
        // A later interval answers again (a lost answer is repaired).
        c.sim
            .run_until(c.sim.now() + RESEND_MS)
            .map_err(|e| e.to_string())?;
        c.sim
            .inject(c.hostile, target, ConsensusMessage::SyncRequest { from: 0 });
        c.sim
            .run_until(c.sim.now() + 5 * LATENCY_MS)
            .map_err(|e| e.to_string())?;
        let again = decisions(&c.take_received()).len();
        if again != 32 {
            return Err(format!(
                "a request in a new interval got {again} decisions, not 32"
            ));
        }
        Ok(())
    });
}

/// The byte budget of the flooding test: about 16 decisions of this cluster.
const BUDGET: usize = 16 << 10;
/// The flood: a burst of this many requests every `BURST_EVERY_MS`.
const BURST: usize = 2_000;
const BURST_EVERY_MS: u64 = 10;
const FLOOD_MS: u64 = 600;

/// Runs the flood phase; returns the heights committed during it, and what
/// the flooder received.
fn flood_phase(seed: u64, flood: bool) -> Result<(usize, Vec<Answer>, u64), String> {
    let mut c = Cluster::new(seed, |config| config.sync_bytes_per_interval = BUDGET);
    warm_up(&mut c)?;
    let target = c.honest[0];
    let start = c.sim.now();
    let before = c.committed();
    while c.sim.now() < start + FLOOD_MS {
        if flood {
            let top = c.replica(target).log().len() as u64;
            for i in 0..BURST {
                let from = match i % 3 {
                    0 => 0,                                // identical
                    1 => (i as u64) % 64,                  // overlapping
                    _ => c.sim.rng().random_range(0..top), // anywhere
                };
                c.sim
                    .inject(c.hostile, target, ConsensusMessage::SyncRequest { from });
            }
        }
        c.run_for(BURST_EVERY_MS, 4);
    }
    c.sim
        .run_until(c.sim.now() + 20)
        .map_err(|e| e.to_string())?;
    let committed = c.committed() - before;
    Ok((committed, decisions(&c.take_received()), start))
}

#[test]
fn a_flooder_gets_its_byte_budget_per_interval_and_the_others_commit() {
    check_seeds("catch-up flood", 2, |seed| {
        let (calm, _, _) = flood_phase(seed, false)?;
        let (flooded, got, start) = flood_phase(seed, true)?;
        // Requests arrive LATENCY_MS after each burst (bursts every 10 ms, so
        // every 30 ms interval of the flooder's budget starts on a burst),
        // and answers LATENCY_MS after that.
        let first = start + LATENCY_MS;
        let mut per_interval: BTreeMap<u64, usize> = BTreeMap::new();
        let mut per_instant: BTreeMap<u64, usize> = BTreeMap::new();
        for (at, _, bytes) in &got {
            let sent = at - LATENCY_MS;
            *per_interval.entry((sent - first) / RESEND_MS).or_default() += bytes;
            *per_instant.entry(sent).or_default() += bytes;
        }
        let requests = (FLOOD_MS / BURST_EVERY_MS) as usize * BURST;
        let total: usize = got.iter().map(|g| g.2).sum();
        let worst = per_interval.values().copied().max().unwrap_or(0);
        let held = per_instant.values().copied().max().unwrap_or(0);
        eprintln!(
            "seed {seed}: {requests} requests, {} decisions ({total} bytes) answered; \
             worst interval {worst} bytes (budget {BUDGET}); \
             at most {held} bytes answered at one instant; \
             heights committed {flooded} flooded vs {calm} calm",
            got.len()
        );
        if worst > BUDGET {
            return Err(format!(
                "{worst} bytes answered to the flooder in one interval (budget {BUDGET})"
            ));
        }
        // What one replica held at once for the flooder: within the budget.
        if held > BUDGET {
            return Err(format!("{held} bytes answered at one instant"));
        }
        let intervals = FLOOD_MS.div_ceil(RESEND_MS) as usize + 1;
        if total > intervals * BUDGET {
            return Err(format!("{total} bytes answered in {intervals} intervals"));
        }
        // The budget is used (catch-up still works under the flood).
        if per_interval.len() < intervals - 2 {
            return Err(format!("answers in only {} intervals", per_interval.len()));
        }
        // Liveness: the honest replicas commit at their calm pace.
        if flooded * 10 < calm * 9 || calm < 20 {
            return Err(format!(
                "{flooded} heights committed under the flood, {calm} without"
            ));
        }
        Ok(())
    });
}
