//! The consensus layer's replicated state machines: every honest validator
//! applies its committed log to a `ReplicatedStateMachine` of key-value
//! registers (certificates verified on the way in). The campaign writes the
//! index of the objects the storage layer acknowledged into it, so the
//! replicated index and the deduplicated store must agree.

use crate::consensus_cluster::decided::Registers;
use crate::consensus_cluster::{unbounded_window, Cluster, TestNode};
use hologram_consensus::{ReplicatedStateMachine, ValidatorSet};
use hologram_lattice::{Address, NodeId};
use hologram_receipt::ChainHead;
use std::collections::BTreeMap;

/// One honest validator's machine and its chain head after each height.
struct Replica {
    machine: ReplicatedStateMachine<Registers>,
    heads: Vec<ChainHead>,
}

/// Every honest validator's replicated state machine.
pub struct Replicas {
    set: ValidatorSet,
    replicas: BTreeMap<NodeId, Replica>,
    /// Register keys written for stored objects, and their addresses.
    index: BTreeMap<Vec<u8>, Address>,
}

impl Replicas {
    pub fn new(set: ValidatorSet) -> Replicas {
        Replicas {
            set,
            replicas: BTreeMap::new(),
            index: BTreeMap::new(),
        }
    }

    /// Submits `object {address} = stored` to validator `to` (if it is an
    /// honest validator that is up); returns whether it took it.
    pub fn index_object(&mut self, cluster: &mut Cluster, to: NodeId, address: Address) -> bool {
        let key = format!("object {address}").into_bytes();
        let mut bytes = key.clone();
        bytes.extend_from_slice(b"=stored");
        let command = cluster.command_of(bytes);
        let taken = cluster.sim.with_node(to, |node, ctx| match node {
            TestNode::Honest(h) => matches!(h.node.submit(ctx, vec![command], true), Ok(1)),
            TestNode::Byzantine(_) => false,
        });
        if taken == Some(true) {
            self.index.insert(key, address);
        }
        taken == Some(true)
    }

    /// Applies what every honest validator committed since the last call
    /// (each decision's certificate verified), then checks that the
    /// replicas' receipt chains are prefixes of one another.
    pub fn update(&mut self, cluster: &Cluster) -> Result<(), String> {
        for (id, node, _) in cluster.sim.nodes() {
            let Some(h) = node.honest() else { continue };
            let log = h.node.log();
            let r = self.replicas.entry(id).or_insert_with(|| Replica {
                machine: ReplicatedStateMachine::with_limits(
                    Registers::default(),
                    self.set.clone(),
                    unbounded_window(),
                ),
                heads: Vec::new(),
            });
            let done = r.heads.len();
            let Some(new) = log.get(done..) else {
                return Err(format!("rsm: {id}'s log shrank below {done} heights"));
            };
            for d in new {
                r.machine
                    .apply_decision(d)
                    .map_err(|e| format!("rsm: {id} refused height {}: {e}", d.height()))?;
                r.heads.push(r.machine.receipt_chain().head());
            }
        }
        let all: Vec<(&NodeId, &Replica)> = self.replicas.iter().collect();
        for (i, (a, ra)) in all.iter().enumerate() {
            for (b, rb) in &all[i + 1..] {
                let common = ra.heads.len().min(rb.heads.len());
                if common > 0 && ra.heads[common - 1] != rb.heads[common - 1] {
                    return Err(format!(
                        "rsm: the receipt chains of {a} and {b} differ at height {}",
                        common - 1
                    ));
                }
            }
        }
        Ok(())
    }

    /// Heights the longest replica applied.
    pub fn heights(&self) -> usize {
        self.replicas
            .values()
            .map(|r| r.heads.len())
            .max()
            .unwrap_or(0)
    }

    /// The stored objects the longest replica's index records.
    pub fn indexed(&self) -> Vec<Address> {
        let Some(longest) = self.replicas.values().max_by_key(|r| r.heads.len()) else {
            return Vec::new();
        };
        longest
            .machine
            .state()
            .0
            .keys()
            .filter_map(|k| self.index.get(k).copied())
            .collect()
    }
}
