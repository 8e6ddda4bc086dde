//! Authenticated broadcast in the whole-stack campaign: every node of the
//! stack runs a `LatticeProtocol`, one of them is a broadcaster of forged
//! chains. An oracle knows the genuine broadcasts; every honest delivery and
//! every delivery certificate is checked against it the moment it happens.

use hologram_consensus::broadcast::{
    encode_envelope, BroadcastConfig, BroadcastMessage, BroadcastNode, BroadcastTimer,
    DeliveryReceipt, Directory, MessageId,
};
use hologram_consensus::LatticeProtocol;
use hologram_lattice::sim::{Context, Faults, Node, Recover, Simulation};
use hologram_lattice::NodeId;
use hologram_receipt::{
    AuthenticatedMessage, HopLink, KeyPair, OriginLink, Purpose, Receipt, Witness,
};
use rand::RngExt;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

type Ctx<'a> = Context<'a, BroadcastMessage, BroadcastTimer>;

/// What the test knows to be true, and what went wrong.
pub struct Oracle {
    genuine: BTreeMap<MessageId, Vec<u8>>,
    directory: Directory,
    threshold: usize,
    violations: Vec<String>,
    forged_sent: u64,
    /// Every (node, broadcast) delivery ever made, across restarts.
    delivered_ever: BTreeSet<(NodeId, MessageId)>,
}

/// Answers every gossip it receives with forged chains and acknowledgements.
pub struct Forger {
    keys: KeyPair,
    members: Vec<NodeId>,
    oracle: Rc<RefCell<Oracle>>,
}

/// A node of the broadcast layer.
pub enum Peer {
    Honest(Box<BroadcastNode>, Rc<RefCell<Oracle>>),
    Forger(Box<Forger>),
}

impl Forger {
    fn member(&self, ctx: &mut Ctx<'_>) -> NodeId {
        self.members[ctx.rng().random_range(0..self.members.len())]
    }

    fn attack(&mut self, ctx: &mut Ctx<'_>, m: AuthenticatedMessage) {
        let me = self.keys.node_id();
        let origin = m.sender();
        let target = self.member(ctx);
        if target == me {
            return;
        }
        // The genuine receipt and chain around another payload.
        let (mut payload, receipt, witness) = m.clone().into_parts();
        if let Some(b) = payload.last_mut() {
            *b ^= 0x55;
        }
        let spliced = AuthenticatedMessage::from_parts(payload, receipt, witness)
            .and_then(|t| t.forward(target, &self.keys))
            .ok();
        // A message claiming an honest origin, every signature ours.
        let victim = self.member(ctx);
        let payload = encode_envelope(ctx.now(), b"FORGED");
        let receipt = Receipt::from_bytes(&payload);
        let sig = self
            .keys
            .sign(Purpose::WitnessOrigin, &receipt.to_canonical_bytes());
        let hops = vec![HopLink {
            forwarder: victim,
            next_hop: target,
            signature: sig,
        }];
        let impersonated = Witness::from_parts(
            OriginLink {
                sender: victim,
                signature: sig,
            },
            hops,
        )
        .and_then(|w| AuthenticatedMessage::from_parts(payload, receipt, w))
        .ok();
        let mut sent = 0;
        for forged in [spliced, impersonated].into_iter().flatten() {
            ctx.send(target, BroadcastMessage::Gossip(forged));
            sent += 1;
        }
        // An acknowledgement in an honest node's name, and our own twice.
        let id = MessageId::of(m.receipt(), &origin);
        let mut in_their_name = DeliveryReceipt::sign(&self.keys, id, origin);
        in_their_name.receiver = self.member(ctx);
        let genuine = DeliveryReceipt::sign(&self.keys, id, origin);
        for ack in [in_their_name, genuine, genuine] {
            ctx.send(origin, BroadcastMessage::Ack(ack));
            sent += 1;
        }
        self.oracle.borrow_mut().forged_sent += sent;
    }
}

impl Node for Peer {
    type Message = BroadcastMessage;
    type Timer = BroadcastTimer;

    fn on_message(&mut self, ctx: &mut Ctx<'_>, from: NodeId, message: BroadcastMessage) {
        match self {
            Peer::Honest(node, oracle) => {
                let (d, c) = (node.delivered().len(), node.certificates().len());
                node.on_message(ctx, from, message);
                check_new(node, &mut oracle.borrow_mut(), d, c);
            }
            Peer::Forger(f) => {
                if let BroadcastMessage::Gossip(m) = message {
                    f.attack(ctx, m);
                }
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: BroadcastTimer) {
        if let Peer::Honest(node, oracle) = self {
            let (d, c) = (node.delivered().len(), node.certificates().len());
            node.on_timer(ctx, timer);
            check_new(node, &mut oracle.borrow_mut(), d, c);
        }
    }
}

impl Recover for Peer {
    fn recover(&self) -> Self {
        match self {
            Peer::Honest(node, oracle) => Peer::Honest(Box::new(node.recover()), Rc::clone(oracle)),
            Peer::Forger(f) => Peer::Forger(Box::new(Forger {
                keys: f.keys.clone(),
                members: f.members.clone(),
                oracle: Rc::clone(&f.oracle),
            })),
        }
    }
}

/// Checks what `node` delivered and certified since it had `d` and `c`: no
/// forged or repeated delivery, every certificate verifies.
fn check_new(node: &BroadcastNode, o: &mut Oracle, d: usize, c: usize) {
    let me = node.core().id();
    for del in &node.delivered()[d..] {
        if o.genuine.get(&del.id) != Some(&del.body) {
            o.violations
                .push(format!("{me} delivered a forged broadcast {:?}", del.id));
        }
        if node.delivered()[..d].iter().any(|x| x.id == del.id) {
            o.violations
                .push(format!("{me} delivered {:?} twice", del.id));
        }
        o.delivered_ever.insert((me, del.id));
    }
    for cert in &node.certificates()[c..] {
        if let Err(e) = cert.verify(&o.directory, o.threshold) {
            o.violations
                .push(format!("{me}'s delivery certificate does not verify: {e}"));
        }
    }
}

/// The broadcast layer of the stack.
pub struct BroadcastNet {
    pub sim: Simulation<Peer>,
    pub honest: Vec<NodeId>,
    oracle: Rc<RefCell<Oracle>>,
}

impl BroadcastNet {
    /// All of `keys` as members; the one at `forger` forges.
    pub fn new(seed: u64, keys: &[KeyPair], forger: usize, faults: Faults) -> BroadcastNet {
        let directory = Directory::new(keys.iter().map(KeyPair::node_id));
        let members: Vec<NodeId> = directory.members().collect();
        let config = BroadcastConfig {
            ack_threshold: 2 * keys.len() / 3,
            ..BroadcastConfig::default()
        };
        let oracle = Rc::new(RefCell::new(Oracle {
            genuine: BTreeMap::new(),
            directory: directory.clone(),
            threshold: config.ack_threshold,
            violations: Vec::new(),
            forged_sent: 0,
            delivered_ever: BTreeSet::new(),
        }));
        let mut honest = Vec::new();
        let peers: Vec<(NodeId, Peer)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let peer = if i == forger {
                    Peer::Forger(Box::new(Forger {
                        keys: k.clone(),
                        members: members.clone(),
                        oracle: Rc::clone(&oracle),
                    }))
                } else {
                    honest.push(k.node_id());
                    let core = LatticeProtocol::new(
                        k.clone(),
                        directory.clone(),
                        config.clone(),
                        seed ^ i as u64,
                    );
                    Peer::Honest(Box::new(BroadcastNode::new(core)), Rc::clone(&oracle))
                };
                (k.node_id(), peer)
            })
            .collect();
        let mut sim = Simulation::new(seed, faults, peers);
        let watched = Rc::clone(&oracle);
        sim.set_invariant(move |_| match watched.borrow().violations.first() {
            Some(v) => Err(format!("broadcast: {v}")),
            None => Ok(()),
        });
        BroadcastNet {
            sim,
            honest,
            oracle,
        }
    }

    /// Broadcasts `body` from honest `origin` if it is up; registers it as genuine.
    pub fn broadcast(&mut self, origin: NodeId, body: &[u8]) -> Option<MessageId> {
        let id = self
            .sim
            .with_node(origin, |peer, ctx| match peer {
                Peer::Honest(node, _) => node.broadcast(ctx, body).ok(),
                Peer::Forger(_) => None,
            })
            .flatten()?;
        self.oracle.borrow_mut().genuine.insert(id, body.to_vec());
        Some(id)
    }

    fn node(&self, id: NodeId) -> Option<&BroadcastNode> {
        match self.sim.node(id) {
            Some(Peer::Honest(node, _)) => Some(node),
            _ => None,
        }
    }

    /// Forged messages and acknowledgements the forger sent.
    pub fn forged_sent(&self) -> u64 {
        self.oracle.borrow().forged_sent
    }

    /// Certificates never count a node twice, nor an honest node that did
    /// not deliver the message.
    pub fn check_certificates(&self) -> Result<usize, String> {
        let mut count = 0;
        for &origin in &self.honest {
            let Some(node) = self.node(origin) else {
                continue;
            };
            for cert in node.certificates() {
                count += 1;
                let receivers: Vec<NodeId> = cert.receivers().collect();
                let distinct: BTreeSet<NodeId> = receivers.iter().copied().collect();
                if distinct.len() != receivers.len() {
                    return Err(format!(
                        "broadcast: a certificate of {origin} counts a node twice"
                    ));
                }
                let oracle = self.oracle.borrow();
                for r in receivers {
                    if self.honest.contains(&r)
                        && !oracle.delivered_ever.contains(&(r, cert.message()))
                    {
                        return Err(format!(
                            "broadcast: {r} is counted in a certificate of {origin} but never delivered"
                        ));
                    }
                }
            }
        }
        Ok(count)
    }

    /// Honest nodes other than `origin` that have not delivered `id`.
    pub fn missing(&self, origin: NodeId, id: MessageId) -> usize {
        self.honest
            .iter()
            .filter(|&&h| h != origin)
            .filter(|&&h| {
                self.node(h)
                    .is_none_or(|n| !n.delivered().iter().any(|d| d.id == id))
            })
            .count()
    }

    /// Whether `origin` holds a verified certificate for `id`.
    pub fn certified(&self, origin: NodeId, id: MessageId) -> bool {
        self.node(origin)
            .is_some_and(|n| n.certificates().iter().any(|c| c.message() == id))
    }
}
