//! The basic path: honest validators, a perfect network.

mod support;

use hologram_lattice::sim::{check_seeds, Faults};
use support::Cluster;

#[test]
fn four_honest_validators_commit_every_command() {
    check_seeds("four honest", 4, |seed| {
        let mut c = Cluster::new(seed, 4, &[], 1, Faults::NONE);
        let mut wanted = Vec::new();
        for i in 0..20 {
            wanted.extend(c.submit_random());
            c.sim.run_until(i * 5).map_err(|e| e.to_string())?;
        }
        c.run_until_committed(&wanted, 5_000)?;
        Ok(())
    });
}
