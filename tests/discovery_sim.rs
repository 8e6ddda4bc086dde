//! Discovery in the simulated network: 1,000 nodes, 10% of them Byzantine
//! (half silent, half lying with forged, under-worked and far-away records).
//! Lookups must reach the true nearest responsive nodes, and no forged or
//! under-worked identity may ever enter a routing table.

#[path = "support/discovery_net.rs"]
mod discovery_net;

use discovery_net::{build, Behaviour, DIFFICULTY, K};
use hologram::lattice::sim::check_seeds;
use hologram::lattice::{Coord, NodeId};
use rand::RngExt;

fn run(seed: u64) -> Result<(), String> {
    let mut net = build(seed, 1_000);
    let honest = net.honest();
    let mut started = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let who = honest[net.rng.random_range(0..honest.len())];
        let target = Coord::from_index(net.rng.random_range(0..12_288));
        net.start_lookup(who, target);
        started.insert(who);
        let deadline = net.sim.now() + 60_000;
        net.sim
            .run_until_quiet(deadline)
            .map_err(|e| e.to_string())?;
    }
    let (sim, ids, sites, behaviour, forged) =
        (&net.sim, &net.ids, &net.sites, &net.behaviour, &net.forged);
    // And at the end, every table holds only well-worked, genuine identities.
    for (id, peer, _) in sim.nodes() {
        for (p, _) in peer.book.table().iter() {
            if forged.contains(&p)
                || peer
                    .book
                    .record(&p)
                    .is_none_or(|r| r.verify(DIFFICULTY).is_err())
            {
                return Err(format!(
                    "{id}'s table holds {p}, which is forged or under-worked"
                ));
            }
        }
    }

    let mut checked = 0;
    for &who in &started {
        let peer = sim.node(who).unwrap();
        for (target, found) in &peer.results {
            let mut truth: Vec<usize> = (0..ids.len())
                .filter(|&j| ids[j] != who && behaviour[j] != Behaviour::Silent)
                .collect();
            truth.sort_by_key(|&j| (target.distance(sites[j]), ids[j]));
            let truth: Vec<NodeId> = truth.iter().take(K).map(|&j| ids[j]).collect();
            if found != &truth {
                return Err(format!(
                    "lookup of {target:?} by {who} found {found:?}, truth {truth:?}"
                ));
            }
            checked += 1;
        }
    }
    if checked < 20 {
        return Err(format!("only {checked} of 20 lookups finished"));
    }
    Ok(())
}

#[test]
fn lookups_reach_the_true_nearest_despite_liars_and_silence() {
    check_seeds("discovery in a 1,000-node network", 2, run);
}
