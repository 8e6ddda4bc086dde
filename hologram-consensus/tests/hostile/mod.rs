//! A simulated cluster of three honest replicas and one hostile validator
//! whose messages the test writes itself (the hostile tests of issue 19).
#![allow(dead_code)] // each test file uses part of it

use hologram_consensus::{
    Command, ConsensusMessage, ReplicaConfig, SimReplica, Timeouts, Timer, ValidatorSet,
};
use hologram_lattice::sim::{Context, Faults, Node, Recover, Simulation};
use hologram_lattice::NodeId;
use hologram_receipt::KeyPair;

/// Latency of every message (fixed, so answers can be told apart by interval).
pub const LATENCY_MS: u64 = 1;
/// The replicas' resend interval (the unit of the per-peer limits).
pub const RESEND_MS: u64 = 30;

/// An honest replica, or the hostile peer: it sends nothing by itself and
/// records what it receives, with the time.
pub enum TestNode {
    Replica(Box<SimReplica>),
    Hostile(Vec<(u64, ConsensusMessage)>),
}

impl Node for TestNode {
    type Message = ConsensusMessage;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Context<'_, ConsensusMessage, Timer>) {
        if let TestNode::Replica(r) = self {
            r.on_start(ctx);
        }
    }

    fn on_message(
        &mut self,
        ctx: &mut Context<'_, ConsensusMessage, Timer>,
        from: NodeId,
        message: ConsensusMessage,
    ) {
        match self {
            TestNode::Replica(r) => r.on_message(ctx, from, message),
            TestNode::Hostile(got) => got.push((ctx.now(), message)),
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, ConsensusMessage, Timer>, timer: Timer) {
        if let TestNode::Replica(r) = self {
            r.on_timer(ctx, timer);
        }
    }
}

impl Recover for TestNode {
    fn recover(&self) -> Self {
        match self {
            TestNode::Replica(r) => TestNode::Replica(Box::new(r.recover())),
            TestNode::Hostile(_) => TestNode::Hostile(Vec::new()),
        }
    }
}

/// Three honest replicas (`honest`) and the hostile validator (`hostile`).
pub struct Cluster {
    pub sim: Simulation<TestNode>,
    pub honest: Vec<NodeId>,
    pub hostile: NodeId,
    pub keys: Vec<KeyPair>,
    next_command: u64,
}

impl Cluster {
    /// `tune` adjusts the replicas' configuration.
    pub fn new(seed: u64, tune: impl Fn(&mut ReplicaConfig)) -> Self {
        let keys: Vec<KeyPair> = (0..4u8)
            .map(|i| {
                let mut s = [i + 1; 32];
                s[..8].copy_from_slice(&seed.to_le_bytes());
                KeyPair::from_seed(s)
            })
            .collect();
        let ids: Vec<NodeId> = keys.iter().map(KeyPair::node_id).collect();
        let set = ValidatorSet::new(ids.clone()).expect("distinct keys");
        let mut config = ReplicaConfig::new(set);
        config.max_batch = 16;
        config.timeouts = Timeouts {
            propose_ms: 40,
            prevote_ms: 20,
            precommit_ms: 20,
            round_increase_ms: 10,
            resend_ms: RESEND_MS,
        };
        tune(&mut config);
        let hostile = ids[3];
        let nodes: Vec<(NodeId, TestNode)> = keys
            .iter()
            .map(|k| {
                let node = if k.node_id() == hostile {
                    TestNode::Hostile(Vec::new())
                } else {
                    TestNode::Replica(Box::new(
                        SimReplica::new(k.clone(), config.clone()).expect("config"),
                    ))
                };
                (k.node_id(), node)
            })
            .collect();
        let faults = Faults {
            latency_ms: (LATENCY_MS, LATENCY_MS),
            ..Faults::NONE
        };
        Cluster {
            sim: Simulation::new(seed, faults, nodes),
            honest: ids[..3].to_vec(),
            hostile,
            keys,
            next_command: 0,
        }
    }

    /// Submits one fresh command to every honest replica.
    pub fn submit(&mut self) {
        self.next_command += 1;
        let mut bytes = b"cmd ".to_vec();
        bytes.extend_from_slice(&self.next_command.to_le_bytes());
        let c = Command::sign(
            &hologram_receipt::KeyPair::from_seed([0xc1; 32]),
            self.next_command,
            0,
            bytes,
        )
        .expect("small");
        for id in self.honest.clone() {
            let cc = c.clone();
            self.sim.with_node(id, |node, ctx| {
                if let TestNode::Replica(r) = node {
                    let _ = r.submit(ctx, vec![cc], false);
                }
            });
        }
    }

    /// Runs `ms` more milliseconds, submitting a command every `every` ms.
    pub fn run_for(&mut self, ms: u64, every: u64) {
        let end = self.sim.now() + ms;
        while self.sim.now() < end {
            self.submit();
            let t = (self.sim.now() + every).min(end);
            self.sim.run_until(t).expect("no invariant");
        }
    }

    /// The honest replica `id`.
    pub fn replica(&self, id: NodeId) -> &SimReplica {
        match self.sim.node(id) {
            Some(TestNode::Replica(r)) => r,
            _ => panic!("{id} is not an honest replica"),
        }
    }

    /// The shortest honest log.
    pub fn committed(&self) -> usize {
        self.honest
            .iter()
            .map(|id| self.replica(*id).log().len())
            .min()
            .unwrap_or(0)
    }

    /// Takes what the hostile validator received so far.
    pub fn take_received(&mut self) -> Vec<(u64, ConsensusMessage)> {
        let hostile = self.hostile;
        self.sim
            .with_node(hostile, |node, _| match node {
                TestNode::Hostile(got) => std::mem::take(got),
                TestNode::Replica(_) => Vec::new(),
            })
            .unwrap_or_default()
    }
}
