//! `LatticeProtocol` in the deterministic simulator (issue 7): 1,000 nodes
//! without loss deliver within ⌈log2 n⌉ + 3 rounds; with 20% loss, crashes
//! and 10% Byzantine nodes (forging chains and acknowledgements, dropping,
//! replaying) at least 99.9% of correct nodes deliver, none delivers a forged
//! message, and certificates never count a node twice or a forged
//! acknowledgement. Messages per node per broadcast are printed beside plain
//! flooding's.
//!
//! Every honest delivery and every certificate is checked against an oracle
//! the moment it happens; the simulation's invariant fails the run at the
//! first violation. Seeds: `HOLOGRAM_SEEDS=<n>` soaks, `HOLOGRAM_SEED=<s>` replays.

use hologram_consensus::broadcast::{
    encode_envelope, BroadcastConfig, BroadcastMessage, BroadcastNode, BroadcastTimer,
    DeliveryReceipt, Directory, DropReason, ForwardPolicy, MessageId, SentCounts,
};
use hologram_consensus::LatticeProtocol;
use hologram_lattice::sim::{check_seeds, Context, Faults, Node, Recover, Simulation};
use hologram_lattice::NodeId;
use hologram_receipt::{
    AuthenticatedMessage, HopLink, KeyPair, OriginLink, Purpose, Receipt, Witness,
};
use rand::seq::SliceRandom;
use rand::RngExt;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// What the test knows to be true: the genuine broadcasts, and what went wrong.
#[derive(Default)]
struct Oracle {
    genuine: BTreeMap<MessageId, Vec<u8>>,
    directory: Option<Directory>,
    threshold: usize,
    violations: Vec<String>,
}

/// A Byzantine member: it never forwards genuinely, and answers every
/// message it gets with forgeries, splices, replays and bad acknowledgements.
#[derive(Clone)]
struct Byzantine {
    keys: KeyPair,
    members: Vec<NodeId>,
    held: Vec<AuthenticatedMessage>,
}

enum Peer {
    Honest(Box<BroadcastNode>, Rc<RefCell<Oracle>>),
    Byzantine(Box<Byzantine>),
}

type Ctx<'a> = Context<'a, BroadcastMessage, BroadcastTimer>;

impl Byzantine {
    fn random_member(&self, ctx: &mut Ctx<'_>) -> NodeId {
        self.members[ctx.rng().random_range(0..self.members.len())]
    }

    fn attack(&mut self, ctx: &mut Ctx<'_>, m: AuthenticatedMessage) {
        let me = self.keys.node_id();
        let origin = m.sender();
        let id = MessageId::of(m.receipt(), &origin);
        if self.held.len() < 8 {
            self.held.push(m.clone());
        }
        for _ in 0..3 {
            let target = self.random_member(ctx);
            if target == me {
                continue;
            }
            let forged = match ctx.rng().random_range(0..5) {
                // The genuine receipt and chain around another payload.
                0 => {
                    let (mut payload, receipt, witness) = m.clone().into_parts();
                    if let Some(b) = payload.last_mut() {
                        *b ^= 0x55;
                    }
                    AuthenticatedMessage::from_parts(payload, receipt, witness)
                        .and_then(|t| t.forward(target, &self.keys))
                        .ok()
                }
                // A message claiming an honest origin, all signatures by us.
                1 => {
                    let victim = self.random_member(ctx);
                    let payload = encode_envelope(ctx.now(), b"FORGED");
                    let receipt = Receipt::from_bytes(&payload);
                    let sig = self
                        .keys
                        .sign(Purpose::WitnessOrigin, &receipt.to_canonical_bytes());
                    let hops = vec![
                        HopLink {
                            forwarder: victim,
                            next_hop: me,
                            signature: sig,
                        },
                        HopLink {
                            forwarder: me,
                            next_hop: target,
                            signature: sig,
                        },
                    ];
                    Witness::from_parts(
                        OriginLink {
                            sender: victim,
                            signature: sig,
                        },
                        hops,
                    )
                    .and_then(|w| AuthenticatedMessage::from_parts(payload, receipt, w))
                    .ok()
                }
                // Splice: the copy addressed to us, passed on unextended.
                2 => Some(m.clone()),
                // Replay an older genuine message (validly extended).
                3 => {
                    let old = &self.held[ctx.rng().random_range(0..self.held.len())];
                    old.forward(target, &self.keys).ok()
                }
                // A hop appended in someone else's name.
                _ => {
                    let (payload, receipt, witness) = m.clone().into_parts();
                    let (o, mut hops) = witness.into_parts();
                    let sig = self.keys.sign(Purpose::WitnessHop, b"not the link digest");
                    hops.push(HopLink {
                        forwarder: me,
                        next_hop: target,
                        signature: sig,
                    });
                    Witness::from_parts(o, hops)
                        .and_then(|w| AuthenticatedMessage::from_parts(payload, receipt, w))
                        .ok()
                }
            };
            if let Some(f) = forged {
                ctx.send(target, BroadcastMessage::Gossip(f));
            }
        }
        // Acknowledgements: one in an honest node's name, one with a
        // signature for another message, and our own genuine one twice.
        let victim = self.random_member(ctx);
        let mut in_their_name = DeliveryReceipt::sign(&self.keys, id, origin);
        in_their_name.receiver = victim;
        let other = MessageId::from_bytes([0xAB; 32]);
        let mut wrong_sig = DeliveryReceipt::sign(&self.keys, id, origin);
        wrong_sig.signature = DeliveryReceipt::sign(&self.keys, other, origin).signature;
        let genuine = DeliveryReceipt::sign(&self.keys, id, origin);
        for ack in [in_their_name, wrong_sig, genuine, genuine] {
            ctx.send(origin, BroadcastMessage::Ack(ack));
        }
        // Announce ids that do not exist, to waste pulls.
        let target = self.random_member(ctx);
        ctx.send(
            target,
            BroadcastMessage::IHave(vec![MessageId::from_bytes([0xCD; 32])]),
        );
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
                check(node, oracle, d, c);
            }
            Peer::Byzantine(b) => {
                if let BroadcastMessage::Gossip(m) = message {
                    b.attack(ctx, m);
                }
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: BroadcastTimer) {
        if let Peer::Honest(node, _) = self {
            node.on_timer(ctx, timer);
        }
    }
}

impl Recover for Peer {
    fn recover(&self) -> Self {
        match self {
            Peer::Honest(node, oracle) => Peer::Honest(Box::new(node.recover()), Rc::clone(oracle)),
            Peer::Byzantine(b) => Peer::Byzantine(b.clone()),
        }
    }
}

/// Checks the deliveries and certificates `node` made since it had `d` and `c`.
fn check(node: &BroadcastNode, oracle: &Rc<RefCell<Oracle>>, d: usize, c: usize) {
    let mut o = oracle.borrow_mut();
    let me = node.core().id();
    for del in &node.delivered()[d..] {
        if o.genuine.get(&del.id) != Some(&del.body) {
            o.violations.push(format!(
                "{me} delivered a forged message {:?} from {}",
                del.id, del.origin
            ));
        }
        if node.delivered()[..d].iter().any(|x| x.id == del.id) {
            o.violations
                .push(format!("{me} delivered {:?} twice", del.id));
        }
    }
    for cert in &node.certificates()[c..] {
        let verdict = match &o.directory {
            Some(dir) => cert.verify(dir, o.threshold).map_err(|e| e.to_string()),
            None => Err("no directory".into()),
        };
        if let Err(e) = verdict {
            o.violations
                .push(format!("{me}'s certificate does not verify: {e}"));
        }
    }
}

struct Net {
    sim: Simulation<Peer>,
    honest: Vec<NodeId>,
    oracle: Rc<RefCell<Oracle>>,
}

fn keys_for(seed: u64, n: usize) -> Vec<KeyPair> {
    (0..n)
        .map(|i| {
            let mut s = [0u8; 16];
            s[..8].copy_from_slice(&seed.to_le_bytes());
            s[8..].copy_from_slice(&(i as u64).to_le_bytes());
            KeyPair::from_seed(*blake3::hash(&s).as_bytes())
        })
        .collect()
}

fn build(seed: u64, n: usize, byzantine: usize, faults: Faults, config: BroadcastConfig) -> Net {
    let keys = keys_for(seed, n);
    let dir = Directory::new(keys.iter().map(|k| k.node_id()));
    let members: Vec<NodeId> = dir.members().collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let bad: BTreeSet<usize> = order[..byzantine].iter().copied().collect();
    let oracle = Rc::new(RefCell::new(Oracle {
        directory: Some(dir.clone()),
        threshold: config.ack_threshold,
        ..Oracle::default()
    }));
    let mut honest = Vec::new();
    let peers: Vec<(NodeId, Peer)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let id = k.node_id();
            let peer = if bad.contains(&i) {
                Peer::Byzantine(Box::new(Byzantine {
                    keys: k.clone(),
                    members: members.clone(),
                    held: Vec::new(),
                }))
            } else {
                honest.push(id);
                let core =
                    LatticeProtocol::new(k.clone(), dir.clone(), config.clone(), seed ^ i as u64);
                Peer::Honest(Box::new(BroadcastNode::new(core)), Rc::clone(&oracle))
            };
            (id, peer)
        })
        .collect();
    let mut sim = Simulation::new(seed, faults, peers);
    let watched = Rc::clone(&oracle);
    sim.set_invariant(move |_| match watched.borrow().violations.first() {
        Some(v) => Err(v.clone()),
        None => Ok(()),
    });
    Net {
        sim,
        honest,
        oracle,
    }
}

use rand::SeedableRng;

impl Net {
    /// Broadcasts `body` from honest `origin` and registers it as genuine.
    fn broadcast(&mut self, origin: NodeId, body: &[u8]) -> MessageId {
        let id = self
            .sim
            .with_node(origin, |peer, ctx| match peer {
                Peer::Honest(node, _) => node.broadcast(ctx, body).ok(),
                Peer::Byzantine(_) => None,
            })
            .flatten()
            .expect("an honest origin that is up broadcasts");
        self.oracle.borrow_mut().genuine.insert(id, body.to_vec());
        id
    }

    fn node(&self, id: NodeId) -> &BroadcastNode {
        match self.sim.node(id) {
            Some(Peer::Honest(node, _)) => node,
            _ => panic!("{id} is not an honest node"),
        }
    }

    /// Honest nodes other than `origin` that delivered `id`, and the largest round.
    fn coverage(&self, origin: NodeId, id: MessageId) -> (usize, usize) {
        let mut count = 0;
        let mut rounds = 0;
        for &h in &self.honest {
            if h == origin {
                continue;
            }
            if let Some(d) = self.node(h).delivered().iter().find(|d| d.id == id) {
                count += 1;
                rounds = rounds.max(d.hops);
            }
        }
        (count, rounds)
    }

    /// Checks `origin`'s certificates: distinct members, and every honest
    /// receiver in them really delivered.
    fn check_certificates(&self, origin: NodeId) -> Result<usize, String> {
        let node = self.node(origin);
        for cert in node.certificates() {
            let receivers: Vec<NodeId> = cert.receivers().collect();
            let distinct: BTreeSet<NodeId> = receivers.iter().copied().collect();
            if distinct.len() != receivers.len() {
                return Err("a certificate counts a node twice".into());
            }
            for r in receivers {
                let honest_without = self.honest.contains(&r)
                    && !self
                        .node(r)
                        .delivered()
                        .iter()
                        .any(|d| d.id == cert.message());
                if honest_without {
                    return Err(format!("{r} is counted but never delivered"));
                }
            }
        }
        Ok(node.certificates().len())
    }
}

/// ⌈log2 n⌉ + 3.
fn round_bound(n: usize) -> usize {
    (usize::BITS - (n - 1).leading_zeros()) as usize + 3
}

fn config(n: usize) -> BroadcastConfig {
    BroadcastConfig {
        ack_threshold: 2 * n / 3,
        ..BroadcastConfig::default()
    }
}

#[test]
fn a_thousand_nodes_without_loss_deliver_within_log_n_plus_3_rounds() {
    const N: usize = 1000;
    check_seeds("broadcast, 1,000 nodes, no loss", 1, |seed| {
        let mut net = build(seed, N, 0, Faults::NONE, config(N));
        let bound = round_bound(N);
        for b in 0..2u8 {
            let origin = net.honest[usize::from(b) * 17 % net.honest.len()];
            let sent_before = net.sim.stats().sent;
            let id = net.broadcast(origin, &[b; 100]);
            net.sim
                .run_until_quiet(net.sim.now() + 60_000)
                .map_err(|e| e.to_string())?;
            let (delivered, rounds) = net.coverage(origin, id);
            let per_node = (net.sim.stats().sent - sent_before) as f64 / N as f64;
            println!("no loss: {delivered}/{} delivered, last in round {rounds} (bound {bound}), {per_node:.1} messages per node", N - 1);
            if delivered != N - 1 {
                return Err(format!("only {delivered} of {} nodes delivered", N - 1));
            }
            if rounds > bound {
                return Err(format!("a delivery took {rounds} rounds, bound {bound}"));
            }
            if net.check_certificates(origin)? != 1 {
                return Err("the origin has no delivery certificate".into());
            }
        }
        let per = |f: fn(&SentCounts) -> u64| {
            let total: u64 = net
                .honest
                .iter()
                .map(|&h| f(&net.node(h).core().sent()))
                .sum();
            total as f64 / (2 * N) as f64
        };
        println!(
            "per node per broadcast: {:.1} pushes (payload), {:.1} announcements, {:.1} pulls, {:.1} acknowledgements; plain flooding pushes {} (n - 1)",
            per(|s| s.gossip),
            per(|s| s.ihave),
            per(|s| s.iwant),
            per(|s| s.ack),
            N - 1
        );
        Ok(())
    });
}

#[test]
fn with_loss_crashes_and_byzantine_nodes_correct_nodes_deliver_and_nothing_forged_counts() {
    const N: usize = 1000;
    check_seeds(
        "broadcast, 1,000 nodes, 20% loss, 10% Byzantine",
        1,
        |seed| {
            let faults = Faults {
                loss: 0.20,
                duplicate: 0.02,
                corrupt: 0.01,
                latency_ms: (1, 30),
            };
            let mut net = build(seed, N, N / 10, faults, config(N));
            let honest = net.honest.clone();
            for b in 0..2u8 {
                let origin = honest[usize::from(b) * 31 % honest.len()];
                // A few honest nodes are down when the broadcast starts.
                let down: Vec<NodeId> = honest
                    .iter()
                    .copied()
                    .filter(|&h| h != origin)
                    .skip(usize::from(b) * 7)
                    .take(5)
                    .collect();
                for &d in &down {
                    net.sim.crash(d);
                }
                let id = net.broadcast(origin, &[b; 200]);
                net.sim
                    .run_until(net.sim.now() + 150)
                    .map_err(|e| e.to_string())?;
                for &d in &down {
                    net.sim.restart(d);
                }
                net.sim
                    .run_until_quiet(net.sim.now() + 60_000)
                    .map_err(|e| e.to_string())?;
                let (delivered, rounds) = net.coverage(origin, id);
                let correct = honest.len() - 1;
                println!("20% loss, 10% Byzantine: {delivered}/{correct} correct nodes delivered, last in round {rounds}");
                if (delivered as f64) < 0.999 * correct as f64 {
                    return Err(format!(
                        "only {delivered} of {correct} correct nodes delivered"
                    ));
                }
                net.check_certificates(origin)?;
            }
            let forged: u64 = honest
                .iter()
                .map(|&h| net.node(h).core().drops().forgeries())
                .sum();
            let dup_acks: u64 = honest
                .iter()
                .map(|&h| net.node(h).core().drops().get(DropReason::DuplicateAck))
                .sum();
            println!("forgeries dropped: {forged}, repeated acknowledgements dropped: {dup_acks}");
            if forged == 0 || dup_acks == 0 {
                return Err("the Byzantine nodes' forgeries were never seen".into());
            }
            Ok(())
        },
    );
}

#[test]
fn gossip_sends_far_fewer_messages_than_flooding() {
    const N: usize = 200;
    check_seeds("broadcast against flooding, 200 nodes", 1, |seed| {
        let mut per_node = Vec::new();
        for policy in [ForwardPolicy::Lattice, ForwardPolicy::Flood] {
            let cfg = BroadcastConfig {
                policy,
                ..config(N)
            };
            let mut net = build(seed, N, 0, Faults::NONE, cfg);
            let origin = net.honest[0];
            let id = net.broadcast(origin, b"compare");
            net.sim.run_until_quiet(60_000).map_err(|e| e.to_string())?;
            let (delivered, _) = net.coverage(origin, id);
            if delivered != N - 1 {
                return Err(format!("{policy:?}: only {delivered} delivered"));
            }
            let sent: u64 = net
                .honest
                .iter()
                .map(|&h| net.node(h).core().sent().total())
                .sum();
            let gossip: u64 = net
                .honest
                .iter()
                .map(|&h| net.node(h).core().sent().gossip)
                .sum();
            let m = sent as f64 / N as f64;
            println!(
                "{policy:?}: {m:.1} messages per node per broadcast ({:.1} carrying the payload)",
                gossip as f64 / N as f64
            );
            per_node.push(m);
        }
        if per_node[0] * 4.0 > per_node[1] {
            return Err(format!(
                "gossip {:.1} is not far below flooding {:.1}",
                per_node[0], per_node[1]
            ));
        }
        Ok(())
    });
}

#[test]
fn repair_carries_a_broadcast_across_a_healed_partition() {
    const N: usize = 200;
    check_seeds(
        "broadcast across a healed partition, 200 nodes",
        2,
        |seed| {
            let mut net = build(seed, N, 0, Faults::HOSTILE, config(N));
            let origin = net.honest[0];
            let (near, far): (Vec<NodeId>, Vec<NodeId>) = net
                .honest
                .iter()
                .partition(|id| id.as_bytes()[0] % 2 == origin.as_bytes()[0] % 2);
            net.sim.partition(&[&near, &far]);
            let id = net.broadcast(origin, b"across");
            net.sim
                .run_until(net.sim.now() + 250)
                .map_err(|e| e.to_string())?;
            let reached_far = far
                .iter()
                .filter(|&&f| net.node(f).delivered().iter().any(|d| d.id == id))
                .count();
            if reached_far != 0 {
                return Err(format!(
                    "{reached_far} nodes across the partition delivered"
                ));
            }
            net.sim.heal();
            net.sim
                .run_until_quiet(net.sim.now() + 60_000)
                .map_err(|e| e.to_string())?;
            let (delivered, _) = net.coverage(origin, id);
            println!("healed partition: {delivered}/{} delivered", N - 1);
            if delivered != N - 1 {
                return Err(format!(
                    "only {delivered} of {} delivered after the heal",
                    N - 1
                ));
            }
            Ok(())
        },
    );
}
