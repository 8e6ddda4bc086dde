//! Discovery in the simulated network: 1,000 nodes, 10% of them Byzantine
//! (half silent, half lying with forged, under-worked and far-away records).
//! Lookups must reach the true nearest responsive nodes, and no forged or
//! under-worked identity may ever enter a routing table.

use hologram::lattice::routing::{DiscoveryMessage, Lookup, PeerBook, PeerRecord};
use hologram::lattice::sim::{check_seeds, Context, Faults, Node, Simulation};
use hologram::lattice::{Coord, NodeId, ProofOfWork};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

const DIFFICULTY: u32 = 6;
const K: usize = 4;
const TIMEOUT_MS: u64 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Honest,
    Silent,
    Liar,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Wire {
    Ask(u64, DiscoveryMessage),
    Answer(u64, DiscoveryMessage),
}

#[derive(Clone)]
struct Peer {
    behaviour: Behaviour,
    book: PeerBook,
    lookup: Option<Lookup>,
    pending: BTreeMap<u64, NodeId>,
    next_request: u64,
    results: Vec<(Coord, Vec<NodeId>)>,
    lies: Vec<PeerRecord>,
    /// Identities minted by liars (none may ever enter a table).
    forged: Arc<HashSet<NodeId>>,
    /// Forged identities this node's table admitted.
    admitted_forged: Vec<NodeId>,
}

impl Peer {
    fn pump(&mut self, ctx: &mut Context<'_, Wire, u64>) {
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

    fn recover(&self) -> Self {
        self.clone()
    }
}

fn node_id(seed: u64, i: u32) -> NodeId {
    NodeId::from_bytes(
        *blake3::hash(&[seed.to_le_bytes().as_slice(), &i.to_le_bytes()].concat()).as_bytes(),
    )
}

fn run(seed: u64) -> Result<(), String> {
    let n = 1_000u32;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let ids: Vec<NodeId> = (0..n).map(|i| node_id(seed, i)).collect();
    let records: Vec<PeerRecord> = ids
        .iter()
        .map(|&id| PeerRecord::mint(id, DIFFICULTY, 1 << 24).unwrap().unwrap())
        .collect();
    let sites: Vec<Coord> = ids.iter().map(|id| id.coord()).collect();
    let behaviour: Vec<Behaviour> = (0..n)
        .map(|_| match rng.gen_range(0..20) {
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
            let _ = book.admit(records[rng.gen_range(0..ids.len())]);
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

    let honest: Vec<usize> = (0..ids.len())
        .filter(|&i| behaviour[i] == Behaviour::Honest)
        .collect();
    let mut started = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let who = ids[honest[rng.gen_range(0..honest.len())]];
        let target = Coord::from_index(rng.gen_range(0..12_288));
        sim.with_node(who, |peer, ctx| {
            let seeds = peer.book.nearest_records(target, 16);
            peer.lookup = Some(Lookup::new(who, target, K, DIFFICULTY, seeds));
            peer.pump(ctx);
        });
        started.insert(who);
        sim.run_until_quiet(sim.now() + 60_000)
            .map_err(|e| e.to_string())?;
    }

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
