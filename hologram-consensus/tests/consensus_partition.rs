//! Partition healing (the chapter's exercise 4), in the simulator.
//!
//! Four honest validators commit, then are cut 2|2 or 1|3 (with loss,
//! duplication and reordering). While cut off, only a side holding a
//! quorum commits; clients keep submitting on both sides. After the heal:
//! every command submitted on either side is committed (the minority's after
//! the heal, in an order the seed fixes: a replay gives the same chain),
//! every replica's `ReplicatedStateMachine` agrees (`verify_replica`), and
//! nothing committed before or during the partition was lost or changed.
//! The safety invariants of `support::invariant` hold after every step.
//!
//! Seeds: `HOLOGRAM_SEEDS=<n>` soaks, `HOLOGRAM_SEED=<s>` replays one.

mod support;

use hologram_consensus::{Command, Lookup, ReplicatedStateMachine};
use hologram_lattice::sim::{check_seeds, Faults};
use hologram_lattice::NodeId;
use hologram_receipt::{Receipt, ReceiptChain};
use std::collections::HashMap;
use support::decided::Registers;
use support::{unbounded_window, Cluster};

fn lossy() -> Faults {
    Faults {
        loss: 0.05,
        duplicate: 0.05,
        corrupt: 0.0,
        latency_ms: (1, 20),
    }
}

/// Each honest node's committed values, in height order.
fn chains(c: &Cluster) -> HashMap<NodeId, Vec<Receipt>> {
    c.honest_logs()
        .into_iter()
        .map(|(id, values, _)| (id, values))
        .collect()
}

/// Runs the scenario with `minority` validators (by index) cut off from the
/// rest; returns the final chain (length and head) every replica agrees on.
fn scenario(seed: u64, minority: usize) -> Result<ReceiptChain, String> {
    let mut c = Cluster::new(seed, 4, &[], 1, lossy());
    // Before: commit a few commands everywhere, then let the network settle.
    let mut before = Vec::new();
    for id in c.honest.clone() {
        before.extend(c.submit_to(id));
    }
    c.run_until_committed(&before, 20_000)?;
    let t = c.sim.now() + 1_000;
    c.sim.run_until(t).map_err(|e| e.to_string())?;
    let at_cut = chains(&c);

    // The cut.
    let ids = c.ids.clone();
    let (small, large) = ids.split_at(minority);
    c.sim.partition(&[small, large]);
    let quorum_side = large.len() >= c.set.quorum();
    let mut on_small: Vec<Command> = Vec::new();
    let mut on_large: Vec<Command> = Vec::new();
    for step in 0..10 {
        for &id in small {
            on_small.extend(c.submit_to(id));
        }
        if step % 2 == 0 {
            for &id in large {
                on_large.extend(c.submit_to(id));
            }
        }
        let t = c.sim.now() + 300;
        c.sim.run_until(t).map_err(|e| e.to_string())?;
    }
    if on_small.is_empty() || on_large.is_empty() {
        return Err("no command was accepted on one side".into());
    }
    let during = chains(&c);
    for (id, chain) in &during {
        let cut = &at_cut[id];
        if chain[..cut.len()] != cut[..] {
            return Err(format!(
                "{id} changed its committed prefix during the partition"
            ));
        }
        if small.contains(id) && chain.len() != cut.len() {
            return Err(format!(
                "{id} on the minority side committed {} heights while cut off",
                chain.len() - cut.len()
            ));
        }
    }
    if quorum_side {
        // The quorum side commits what its clients submitted.
        let grown = large.iter().all(|id| during[id].len() > at_cut[id].len());
        if !grown {
            return Err("the quorum side did not commit while cut".into());
        }
    } else if during
        .iter()
        .any(|(id, chain)| chain.len() != at_cut[id].len())
    {
        return Err("a side without a quorum committed".into());
    }

    // The heal: everything submitted on either side gets committed everywhere.
    c.sim.heal();
    let deadline = c.sim.now() + 30_000;
    c.run_until_committed(&on_large, deadline)?;
    c.run_until_committed(&on_small, deadline)?;
    let t = c.sim.now() + 1_000;
    c.sim.run_until(t).map_err(|e| e.to_string())?;

    // Every replica applies its log and they agree; nothing was lost.
    let mut machines = Vec::new();
    for (id, node, _) in c.sim.nodes() {
        let h = node.honest().ok_or("all honest")?;
        let mut rsm = ReplicatedStateMachine::with_limits(
            Registers::default(),
            c.set.clone(),
            unbounded_window(),
        );
        rsm.apply_all(h.node.log())
            .map_err(|e| format!("{id}: {e}"))?;
        for cmd in before.iter().chain(&on_small).chain(&on_large) {
            if !matches!(
                rsm.sessions().lookup(&cmd.client(), cmd.sequence()),
                Lookup::Answered(_)
            ) {
                return Err(format!("{id} never applied {cmd:?}"));
            }
        }
        let chain: Vec<Receipt> = h.node.log().iter().map(|d| d.certificate.value).collect();
        let then = &during[&id];
        if chain[..then.len()] != then[..] {
            return Err(format!(
                "{id} lost or changed an entry committed before the heal"
            ));
        }
        machines.push(rsm);
    }
    let first = &machines[0];
    if !machines.iter().all(|m| m.verify_replica(first)) {
        return Err("replicas disagree after the heal".into());
    }
    Ok(*first.receipt_chain())
}

#[test]
fn two_two_partition_commits_nothing_then_converges() {
    check_seeds("partition 2|2", 3, |seed| scenario(seed, 2).map(|_| ()));
}

#[test]
fn one_three_partition_commits_on_the_quorum_side_then_converges() {
    check_seeds("partition 1|3", 3, |seed| {
        let chain = scenario(seed, 1)?;
        // The order of the minority's commands is fixed by the seed.
        let again = scenario(seed, 1)?;
        if chain != again {
            return Err("a replay of the seed committed another chain".into());
        }
        Ok(())
    });
}
