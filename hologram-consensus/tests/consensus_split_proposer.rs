//! A proposer that splits the validators: `f` Byzantine validators of
//! `3f + 1` (f = 1 and 2) send each proposal they sign to half of the
//! validators and a conflicting one to the other half, and vote honestly.
//!
//! An honest replica passes the proposal it holds for a round to a
//! validator whose vote of that round names another value (see the
//! replica's `relay` module), so the leader's equivocation is proven
//! (`Offence::ConflictingProposals`, verified here) in every round in which
//! two honest replicas were delivered different proposals of the leader
//! while their height was undecided and an honest validator voted for a
//! value. (When every honest vote of the round is nil — the proposals came
//! after the propose timeout — no vote says which proposal anyone holds.)
//! The network loses nothing. The test prints, over its seeds, the split
//! rounds, those with an honest value vote, those proven, and the bytes
//! delivered per decided height, of which how many were passed-on proposals.
//!
//! Seeds: `HOLOGRAM_SEEDS=<n>` (default 4 per f), `HOLOGRAM_SEED=<s>`.

mod support;

use hologram_consensus::Offence;
use hologram_lattice::sim::{seeds, Faults};
use hologram_receipt::Receipt;
use rand::RngExt;
use std::collections::{BTreeSet, HashMap, HashSet};
use support::byzantine::Behaviour;
use support::Cluster;

#[derive(Debug, Default)]
struct Counts {
    split: usize,
    voted: usize,
    proven: usize,
    heights: u64,
    bytes: u64,
    relayed: u64,
}

fn run(seed: u64, f: usize) -> Result<Counts, String> {
    let n = 3 * f + 1;
    let network = Faults {
        latency_ms: (1, 30),
        ..Faults::NONE
    };
    let mut c = Cluster::new(seed, n, &vec![Behaviour::SplitProposals; f], 1, network);
    let mut submitted = Vec::new();
    let mut t = 0;
    while t < 3_000 {
        if c.sim.rng().random_bool(0.5) {
            submitted.extend(c.submit_random());
        }
        t += 20;
        c.sim.run_until(t).map_err(|e| e.to_string())?;
    }
    c.run_until_committed(&submitted, c.sim.now() + 30_000)?;
    let byzantine: HashSet<_> = c.byzantine.iter().copied().collect();
    let mut delivered: HashMap<(u64, u32), HashSet<Receipt>> = HashMap::new();
    let mut proven = BTreeSet::new();
    let mut value_votes = BTreeSet::new();
    let mut counts = Counts::default();
    for (id, node, _) in c.sim.nodes() {
        let Some(h) = node.honest() else { continue };
        value_votes.extend(h.value_votes.iter().copied());
        for (slot, values) in &h.proposed {
            delivered.entry(*slot).or_default().extend(values);
        }
        for m in h.node.misbehaviour() {
            if let Offence::ConflictingProposals(proof) = &m.offence {
                let who = proof.verify().map_err(|e| format!("{id}: {e}"))?;
                if who != m.node || !byzantine.contains(&who) {
                    return Err(format!("{id} blames {} for {who}'s proposals", m.node));
                }
                proven.insert((proof.first.height, proof.first.round));
            }
        }
        counts.heights = counts.heights.max(h.node.log().len() as u64);
        counts.bytes += h.bytes;
        counts.relayed += h.relayed_bytes;
    }
    let split: BTreeSet<_> = delivered
        .into_iter()
        .filter(|(_, values)| values.len() > 1)
        .map(|(slot, _)| slot)
        .collect();
    // Rounds in which an honest validator voted for a value: one of the
    // two proposals was voted for, so the other replica passes its own on.
    let voted: BTreeSet<_> = split.intersection(&value_votes).copied().collect();
    let unproven: Vec<_> = voted.difference(&proven).collect();
    if !unproven.is_empty() {
        return Err(format!(
            "the leader's split proposals of (height, round) {unproven:?} were not proven"
        ));
    }
    counts.voted = voted.len();
    counts.proven = split.intersection(&proven).count();
    counts.split = split.len();
    Ok(counts)
}

fn campaign(f: usize) {
    let mut total = Counts::default();
    for seed in seeds(4) {
        let counts = run(seed, f).unwrap_or_else(|e| {
            panic!("f={f}: seed {seed} failed: {e}\n  replay with HOLOGRAM_SEED={seed}")
        });
        total.split += counts.split;
        total.proven += counts.proven;
        total.voted += counts.voted;
        total.heights += counts.heights;
        total.bytes += counts.bytes;
        total.relayed += counts.relayed;
    }
    let per = |b: u64| b / total.heights.max(1);
    println!(
        "f={f}: {} split rounds, {} with an honest value vote, {} proven; {} heights decided; {} bytes delivered per height, {} of them passed-on proposals",
        total.split,
        total.voted,
        total.proven,
        total.heights,
        per(total.bytes),
        per(total.relayed),
    );
    assert!(total.split > 0, "the proposer never split the validators");
}

#[test]
fn a_proposer_that_splits_the_validators_is_proven_f1() {
    campaign(1);
}

#[test]
fn a_proposer_that_splits_the_validators_is_proven_f2() {
    campaign(2);
}

#[test]
fn honest_leaders_cost_no_passed_on_proposals() {
    for seed in seeds(2) {
        let network = Faults {
            latency_ms: (1, 30),
            ..Faults::NONE
        };
        let mut c = Cluster::new(seed, 4, &[], 1, network);
        let mut submitted = Vec::new();
        for t in (20..=1_000).step_by(20) {
            submitted.extend(c.submit_random());
            c.sim.run_until(t).expect("invariants");
        }
        c.run_until_committed(&submitted, c.sim.now() + 30_000)
            .expect("committed");
        for (id, node, _) in c.sim.nodes() {
            let h = node.honest().expect("all honest");
            assert_eq!(h.relayed_bytes, 0, "seed {seed}: {id} was passed proposals");
            assert!(h.node.misbehaviour().is_empty(), "seed {seed}: {id}");
        }
    }
}
