//! A simulated discovery network, shared by `tests/discovery_sim.rs` and
//! `benches/routing.rs`: nodes that answer `FindNodes` from a `PeerBook`, run
//! `Lookup`s with timeouts, and learn the records they are sent; 10% of them
//! Byzantine (half silent, half lying with forged, under-worked and far-away
//! records).
#![allow(dead_code)] // each includer uses part of it

use hologram::lattice::routing::{DiscoveryMessage, Lookup, PeerBook, PeerRecord};
use hologram::lattice::sim::{Context, Faults, Node, Recover, Simulation};
use hologram::lattice::{Coord, NodeId, ProofOfWork};
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

pub const DIFFICULTY: u32 = 6;
pub const K: usize = 4;
pub const TIMEOUT_MS: u64 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    Silent,
    Liar,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Wire {
    Ask(u64, DiscoveryMessage),
    Answer(u64, DiscoveryMessage),
}

#[derive(Clone)]
pub struct Peer {
    pub behaviour: Behaviour,
    pub book: PeerBook,
    pub lookup: Option<Lookup>,
    pending: BTreeMap<u64, NodeId>,
    next_request: u64,
    pub results: Vec<(Coord, Vec<NodeId>)>,
    lies: Vec<PeerRecord>,
    /// Identities minted by liars (none may ever enter a table).
    forged: Arc<HashSet<NodeId>>,
    /// Forged identities this node's table admitted.
    pub admitted_forged: Vec<NodeId>,
}

impl Peer {
    pub fn pump(&mut self, ctx: &mut Context<'_, Wire, u64>) {
        let Some(lookup) = self.lookup.as_mut() else {
            return;
        };
        for peer in lookup.next_queries() {
            let id = self.next_request;
            self.next_request += 1;
            self.pending.insert(id, peer);
            let ask = DiscoveryMessage::FindNodes {
                target: lookup.target(),
                k: lookup.answer_size() as u16,
            };
            ctx.send(peer, Wire::Ask(id, ask));
            ctx.set_timer(TIMEOUT_MS, id);
        }
        if lookup.is_done() {
            let found = lookup.result().iter().map(|r| r.id).collect();
            self.results.push((lookup.target(), found));
            self.lookup = None;
        }
    }
}

impl Node for Peer {
    type Message = Wire;
    type Timer = u64;

    fn on_message(&mut self, ctx: &mut Context<'_, Wire, u64>, from: NodeId, message: Wire) {
        match message {
            Wire::Ask(id, ask) => match self.behaviour {
                Behaviour::Silent => {}
                Behaviour::Honest => {
                    if let Some(answer) = self.book.answer(&ask) {
                        ctx.send(from, Wire::Answer(id, answer));
                    }
                }
                Behaviour::Liar => {
                    // Forged and under-worked records claiming the target's
                    // neighbourhood, plus real records from far away.
                    let mut lies = self.lies.clone();
                    if let DiscoveryMessage::FindNodes { target, .. } = ask {
                        let far = Coord::new(u32::from(target.page()) + 24, 0);
                        lies.extend(self.book.nearest_records(far, 8));
                    }
                    ctx.send(from, Wire::Answer(id, DiscoveryMessage::Nodes(lies)));
                }
            },
            Wire::Answer(id, answer) => {
                if self.pending.get(&id) != Some(&from) {
                    return;
                }
                self.pending.remove(&id);
                let DiscoveryMessage::Nodes(records) = answer else {
                    return;
                };
                for r in &records {
                    // Learning: the book verifies before it admits.
                    if self.book.admit(*r) == Ok(true) && self.forged.contains(&r.id) {
                        self.admitted_forged.push(r.id);
                    }
                }
                if let Some(lookup) = self.lookup.as_mut() {
                    lookup.on_answer(from, records);
                }
                self.pump(ctx);
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, Wire, u64>, request: u64) {
        if let Some(peer) = self.pending.remove(&request) {
            if let Some(lookup) = self.lookup.as_mut() {
                lookup.on_failure(peer);
            }
            self.pump(ctx);
        }
    }
}

impl Recover for Peer {
    fn recover(&self) -> Self {
        self.clone()
    }
}

pub fn node_id(seed: u64, i: u32) -> NodeId {
    NodeId::from_bytes(
        *blake3::hash(&[seed.to_le_bytes().as_slice(), &i.to_le_bytes()].concat()).as_bytes(),
    )
}

/// A simulated network of `n` nodes and what the checks need to know of it.
pub struct Network {
    pub sim: Simulation<Peer>,
    pub ids: Vec<NodeId>,
    pub sites: Vec<Coord>,
    pub behaviour: Vec<Behaviour>,
    pub forged: Arc<HashSet<NodeId>>,
    pub rng: rand_chacha::ChaCha8Rng,
}

/// Builds the network: each node knows its 8 nearest and 48 random peers
/// (at most 16 a page); the invariant after every step is that no table
/// admitted a forged identity.
pub fn build(seed: u64, n: u32) -> Network {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let ids: Vec<NodeId> = (0..n).map(|i| node_id(seed, i)).collect();
    let records: Vec<PeerRecord> = ids
        .iter()
        .map(|&id| PeerRecord::mint(id, DIFFICULTY, 1 << 24).unwrap().unwrap())
        .collect();
    let sites: Vec<Coord> = ids.iter().map(|id| id.coord()).collect();
    let behaviour: Vec<Behaviour> = (0..n)
        .map(|_| match rng.random_range(0..20) {
            0 => Behaviour::Silent,
            1 => Behaviour::Liar,
            _ => Behaviour::Honest,
        })
        .collect();
    // Forged (wrong nonce) and under-worked (1 bit) records.
    let lie = |i: u32| {
        let id = node_id(seed ^ 0xdead, i);
        let weak = PeerRecord::mint(id, 1, 1 << 16).unwrap().unwrap();
        if weak.verify(DIFFICULTY).is_ok() {
            PeerRecord {
                id,
                pow: ProofOfWork {
                    nonce: weak.pow.nonce ^ 1,
                },
            }
        } else {
            weak
        }
    };
    let mut peers = Vec::new();
    for (i, &me) in ids.iter().enumerate() {
        let mut book = PeerBook::new(me, DIFFICULTY, 16);
        let mut near: Vec<usize> = (0..ids.len()).filter(|&j| j != i).collect();
        near.sort_by_key(|&j| (sites[i].distance(sites[j]), ids[j]));
        for &j in near.iter().take(8) {
            let _ = book.admit(records[j]);
        }
        for _ in 0..48 {
            let _ = book.admit(records[rng.random_range(0..ids.len())]);
        }
        let lies: Vec<PeerRecord> = (0..6).map(|k| lie(i as u32 * 6 + k)).collect();
        peers.push((me, book, lies));
    }
    let forged: Arc<HashSet<NodeId>> = Arc::new(
        peers
            .iter()
            .flat_map(|(_, _, lies)| lies.iter().map(|r| r.id))
            .collect(),
    );
    let peers = peers.into_iter().enumerate().map(|(i, (me, book, lies))| {
        let peer = Peer {
            behaviour: behaviour[i],
            book,
            lookup: None,
            pending: BTreeMap::new(),
            next_request: 0,
            results: Vec::new(),
            lies,
            forged: forged.clone(),
            admitted_forged: Vec::new(),
        };
        (me, peer)
    });

    let faults = Faults {
        latency_ms: (1, 30),
        ..Faults::NONE
    };
    let mut sim = Simulation::new(seed, faults, peers);
    // After every step: no table admitted a forged identity.
    sim.set_invariant(
        |s| match s.nodes().find(|(_, p, _)| !p.admitted_forged.is_empty()) {
            Some((id, p, _)) => Err(format!(
                "{id}'s table admitted forged {:?}",
                p.admitted_forged
            )),
            None => Ok(()),
        },
    );

    Network {
        sim,
        ids,
        sites,
        behaviour,
        forged,
        rng,
    }
}

impl Network {
    /// Starts a lookup of the `K` nodes nearest `target` at node `who`.
    pub fn start_lookup(&mut self, who: NodeId, target: Coord) {
        self.sim.with_node(who, |peer, ctx| {
            let seeds = peer.book.nearest_records(target, 16);
            peer.lookup = Some(Lookup::new(who, target, K, DIFFICULTY, seeds));
            peer.pump(ctx);
        });
    }

    /// The honest nodes' ids.
    pub fn honest(&self) -> Vec<NodeId> {
        (0..self.ids.len())
            .filter(|&i| self.behaviour[i] == Behaviour::Honest)
            .map(|i| self.ids[i])
            .collect()
    }
}
