//! Client sessions through faults: a client numbers its commands
//! ([`ClientSession`]) and retries each — the same signed command, the same
//! (client, sequence) — at other validators while the network loses,
//! duplicates, reorders and corrupts messages and the validator it first
//! sent it to (the leader of the next height) crashes or is partitioned
//! away, so the proposer changes. Late retries of answered commands come
//! too. Whatever consensus orders (a retry may be ordered twice), every
//! honest replica's state machine applies each (client, sequence) exactly
//! once and answers every copy with that one output, the same on every
//! replica; the same bytes under two sequences are applied twice. The
//! client signs its commands two at a time (one signature, each command
//! with its batch proof), so each is retried and verified on its own.
//!
//! Seeds: `HOLOGRAM_SEEDS=<n>` (default 4), `HOLOGRAM_SEED=<s>` replays one;
//! a failing seed is printed.

mod support;

use hologram_consensus::{ClientSession, Command, Outcome, ReplicatedStateMachine, StateMachine};
use hologram_lattice::sim::check_seeds;
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Receipt};
use rand::seq::IndexedRandom;
use rand::RngExt;
use std::collections::{BTreeMap, HashMap};
use support::{faulty_network, Cluster, TestNode};

/// Counts how often each payload was applied; the output is the count
/// after this application (so a double application shows).
#[derive(Debug, Clone, Default)]
struct Tally(BTreeMap<Vec<u8>, u64>);

impl StateMachine for Tally {
    type Output = u64;
    fn apply(&mut self, command: &Command) -> u64 {
        let n = self.0.entry(command.bytes().to_vec()).or_insert(0);
        *n += 1;
        *n
    }
    fn state_receipt(&self) -> Receipt {
        let mut canonical = Vec::new();
        for (k, v) in &self.0 {
            canonical.extend_from_slice(&(k.len() as u32).to_le_bytes());
            canonical.extend_from_slice(k);
            canonical.extend_from_slice(&v.to_le_bytes());
        }
        Receipt::from_bytes(&canonical)
    }
    fn snapshot(&self) -> Result<Vec<u8>, String> {
        postcard::to_allocvec(&self.0).map_err(|e| e.to_string())
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.0 = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Hands `command` to validator `to` if it is up; whether it was up.
fn send(c: &mut Cluster, to: NodeId, command: &Command) -> bool {
    let cc = command.clone();
    let taken = c.sim.with_node(to, |node, ctx| match node {
        TestNode::Honest(h) => h.node.submit(ctx, vec![cc], true).is_ok(),
        TestNode::Byzantine(_) => false,
    });
    taken == Some(true)
}

/// Whether every honest validator that is up, but `failed`, has `command`
/// in its log.
fn committed_on_others(c: &Cluster, failed: NodeId, command: &Command) -> bool {
    c.sim
        .nodes()
        .filter(|(id, _, up)| *up && *id != failed)
        .all(|(_, n, _)| match n.honest() {
            Some(h) => h
                .node
                .log()
                .iter()
                .any(|d| d.batch.commands().iter().any(|x| x.id() == command.id())),
            None => true,
        })
}

/// The next height the honest validators will decide (the longest log).
fn next_height(c: &Cluster) -> u64 {
    c.sim
        .nodes()
        .filter_map(|(_, n, _)| n.honest().map(|h| h.node.log().len() as u64))
        .max()
        .unwrap_or(0)
}

fn run(seed: u64) -> Result<String, String> {
    let mut c = Cluster::new(seed, 4, &[], 2, faulty_network());
    let mut session = ClientSession::new(KeyPair::from_seed([0x5e; 32]));
    let mut commands: Vec<Command> = Vec::new();
    // Commands 3 and 4 carry the same bytes under two sequences.
    let payload = |i: u32| format!("increment x ({})", if i == 4 { 3 } else { i }).into_bytes();
    // Commands are signed two at a time (one signature, a batch proof
    // each): the second waits for its turn, and is retried on its own.
    let mut spare: Option<Command> = None;
    for i in 0..8u32 {
        let command = match spare.take() {
            Some(second) => second,
            None => {
                let mut two = session
                    .commands([payload(i), payload(i + 1)])
                    .map_err(|e| e.to_string())?;
                spare = two.pop();
                two.pop().ok_or("two commands signed")?
            }
        };
        // To the leader of the next height, which then fails.
        let height = next_height(&c);
        let first = c.set.leader(height, 0);
        send(&mut c, first, &command);
        let t = c.sim.now() + c.sim.rng().random_range(0..80u64);
        c.sim.run_until(t).map_err(|e| e.to_string())?;
        let crashed = c.sim.rng().random_bool(0.5);
        if crashed {
            c.sim.crash(first);
        } else {
            let others: Vec<NodeId> = c.ids.iter().copied().filter(|n| *n != first).collect();
            c.sim.partition(&[&[first], &others]);
        }
        // Retries, the same command, at the others until all of them have
        // it (some retries duplicate a command already ordered).
        let deadline = c.sim.now() + 20_000;
        while !committed_on_others(&c, first, &command) {
            if c.sim.now() >= deadline {
                return Err(format!("command {i} not committed by the others"));
            }
            let others: Vec<NodeId> = c.ids.iter().copied().filter(|n| *n != first).collect();
            let to = *others.choose(c.sim.rng()).expect("three others");
            send(&mut c, to, &command);
            let t = c.sim.now() + 150;
            c.sim.run_until(t).map_err(|e| e.to_string())?;
        }
        if crashed {
            c.sim.restart(first);
        } else {
            c.sim.heal();
        }
        // Answered: the client's next commands say so (except for a few,
        // whose answers the replicas keep).
        if i % 3 != 2 {
            session.answered(command.sequence());
        }
        commands.push(command);
    }
    // Late retries of every command, to random validators, after the
    // answers.
    for command in commands.clone() {
        let to = *c.ids.choose(c.sim.rng()).expect("validators");
        send(&mut c, to, &command);
    }
    c.calm();
    let t = c.sim.now() + 2_000;
    c.sim.run_until(t).map_err(|e| e.to_string())?;
    c.run_until_committed(&commands, c.sim.now() + 30_000)?;

    // Every honest replica applies its log: each (client, sequence) once,
    // every copy answered with that output, the same on every replica.
    let logs: Vec<(NodeId, Vec<hologram_consensus::Decision>)> = c
        .sim
        .nodes()
        .filter_map(|(id, n, _)| n.honest().map(|h| (id, h.node.log().to_vec())))
        .collect();
    let shortest = logs.iter().map(|(_, l)| l.len()).min().unwrap_or(0);
    let mut outputs: Option<HashMap<u64, u64>> = None;
    let mut machines = Vec::new();
    let mut copies = 0;
    for (id, log) in &logs {
        let mut rsm = ReplicatedStateMachine::new(Tally::default(), c.set.clone());
        let mut applied: HashMap<u64, u64> = HashMap::new();
        let mut answered: HashMap<u64, Vec<u64>> = HashMap::new();
        for d in &log[..shortest] {
            for answer in rsm.apply_decision(d).map_err(|e| format!("{id}: {e}"))? {
                if answer.client != session.client() {
                    continue;
                }
                copies += 1;
                match answer.outcome {
                    Outcome::Applied(done) => {
                        if applied.insert(answer.sequence, done.output).is_some() {
                            return Err(format!("{id} applied #{} twice", answer.sequence));
                        }
                    }
                    Outcome::Duplicate(first) => {
                        answered.entry(answer.sequence).or_default().push(first)
                    }
                    Outcome::Stale => {}
                    Outcome::Refused => return Err(format!("{id} refused #{}", answer.sequence)),
                }
            }
        }
        for command in &commands {
            let s = command.sequence();
            let Some(&out) = applied.get(&s) else {
                return Err(format!("{id} never applied #{s}"));
            };
            if answered
                .get(&s)
                .is_some_and(|a| a.iter().any(|o| *o != out))
            {
                return Err(format!("{id} answered a copy of #{s} otherwise"));
            }
        }
        // Each payload applied once per sequence that carried it: the
        // repeated bytes twice.
        let state = &rsm.state().0;
        for i in (0..8).filter(|i| *i != 4) {
            let want = if i == 3 { 2 } else { 1 };
            if state.get(&payload(i)) != Some(&want) {
                return Err(format!(
                    "{id}: payload {i} applied {:?} times",
                    state.get(&payload(i))
                ));
            }
        }
        match &outputs {
            None => outputs = Some(applied),
            Some(first) if *first != applied => {
                return Err(format!("{id}'s outputs differ from another replica's"))
            }
            Some(_) => {}
        }
        machines.push(rsm);
    }
    if machines.iter().any(|m| !m.verify_replica(&machines[0])) {
        return Err("the replicas' receipt chains differ".into());
    }
    Ok(format!(
        "{} copies of {} commands ordered",
        copies / logs.len().max(1),
        commands.len()
    ))
}

#[test]
fn a_retried_command_is_applied_and_answered_once_through_faults_and_leader_changes() {
    check_seeds("client sessions", 4, |seed| {
        let summary = run(seed)?;
        println!("seed {seed}: {summary}");
        Ok(())
    });
}
