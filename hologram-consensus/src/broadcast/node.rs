//! [`BroadcastNode`]: a [`LatticeProtocol`] in the deterministic simulator.

use super::{BroadcastMessage, Delivery, DeliveryCertificate, LatticeProtocol, MessageId, Output};
use crate::ConsensusError;
use hologram_lattice::sim::{Context, Node, Recover};
use hologram_lattice::NodeId;

/// Timers of a [`BroadcastNode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastTimer {
    /// Time for a round of repair announcements.
    Repair,
}

/// A [`LatticeProtocol`] core as a [`sim::Node`](hologram_lattice::sim::Node),
/// with what it delivered and the certificates it earned kept for inspection.
///
/// ```
/// use hologram_consensus::broadcast::{BroadcastConfig, BroadcastNode, Directory};
/// use hologram_consensus::LatticeProtocol;
/// use hologram_lattice::sim::{Faults, Simulation};
/// use hologram_receipt::KeyPair;
///
/// let keys: Vec<KeyPair> = (1..=30u8).map(|i| KeyPair::from_seed([i; 32])).collect();
/// let dir = Directory::new(keys.iter().map(|k| k.node_id()));
/// let nodes = keys.iter().map(|k| {
///     let core = LatticeProtocol::new(k.clone(), dir.clone(), BroadcastConfig::default(), 1);
///     (k.node_id(), BroadcastNode::new(core))
/// });
/// let mut sim = Simulation::new(7, Faults::NONE, nodes);
/// let origin = keys[0].node_id();
/// sim.with_node(origin, |node, ctx| node.broadcast(ctx, b"hello")).unwrap().unwrap();
/// sim.run_until_quiet(60_000).unwrap();
/// for (id, node, _) in sim.nodes() {
///     assert!(id == origin || node.delivered().iter().any(|d| d.body == b"hello"));
/// }
/// ```
#[derive(Debug, Clone)]
pub struct BroadcastNode {
    core: LatticeProtocol,
    pub(super) delivered: Vec<Delivery>,
    pub(super) certificates: Vec<DeliveryCertificate>,
    outputs: Vec<Output>,
}

impl BroadcastNode {
    /// A node running `core`.
    pub fn new(core: LatticeProtocol) -> Self {
        Self {
            core,
            delivered: Vec::new(),
            certificates: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// The protocol core.
    pub fn core(&self) -> &LatticeProtocol {
        &self.core
    }

    /// The protocol core, to shun peers or change the directory.
    pub fn core_mut(&mut self) -> &mut LatticeProtocol {
        &mut self.core
    }

    /// Every broadcast delivered, in delivery order.
    pub fn delivered(&self) -> &[Delivery] {
        &self.delivered
    }

    /// Every delivery certificate this node's broadcasts earned.
    pub fn certificates(&self) -> &[DeliveryCertificate] {
        &self.certificates
    }

    /// Broadcasts `body` from this node (call it through
    /// [`Simulation::with_node`](hologram_lattice::sim::Simulation::with_node)).
    pub fn broadcast(
        &mut self,
        ctx: &mut Context<'_, BroadcastMessage, BroadcastTimer>,
        body: &[u8],
    ) -> Result<MessageId, ConsensusError> {
        let mut out = std::mem::take(&mut self.outputs);
        let id = self.core.broadcast(ctx.now(), body, &mut out);
        self.apply(ctx, out);
        id
    }

    /// Carries out the core's outputs.
    fn apply(
        &mut self,
        ctx: &mut Context<'_, BroadcastMessage, BroadcastTimer>,
        mut out: Vec<Output>,
    ) {
        for o in out.drain(..) {
            match o {
                Output::Send { to, message } => ctx.send(to, message),
                Output::SetRepairTimer { after_ms } => {
                    ctx.set_timer(after_ms, BroadcastTimer::Repair)
                }
                Output::Deliver(d) => self.delivered.push(d),
                Output::Certified(c) => self.certificates.push(c),
            }
        }
        self.outputs = out;
    }
}

impl Node for BroadcastNode {
    type Message = BroadcastMessage;
    type Timer = BroadcastTimer;

    fn on_message(
        &mut self,
        ctx: &mut Context<'_, BroadcastMessage, BroadcastTimer>,
        from: NodeId,
        message: BroadcastMessage,
    ) {
        let mut out = std::mem::take(&mut self.outputs);
        self.core.handle(ctx.now(), from, message, &mut out);
        self.apply(ctx, out);
    }

    fn on_timer(
        &mut self,
        ctx: &mut Context<'_, BroadcastMessage, BroadcastTimer>,
        timer: BroadcastTimer,
    ) {
        let mut out = std::mem::take(&mut self.outputs);
        match timer {
            BroadcastTimer::Repair => self.core.on_repair_timer(&mut out),
        }
        self.apply(ctx, out);
    }
}

impl Recover for BroadcastNode {
    /// Nothing of a broadcast node is durable: it comes back with its keys,
    /// directory and configuration only.
    fn recover(&self) -> Self {
        Self::new(self.core.restarted())
    }
}
