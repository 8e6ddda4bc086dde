//! The iterative find-nodes lookup (Kademlia-style, with the lattice metric)
//! as a deterministic core, and its driver over a [`Transport`].

use super::discovery::{DiscoveryMessage, PeerRecord};
use crate::transport::{Protocol, Transport};
use crate::{Coord, PeerId};
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::BTreeMap;
use std::time::Duration;

/// How many queries a lookup keeps in flight by default.
pub const DEFAULT_ALPHA: usize = 3;
/// How many records a lookup asks each peer for, at the least: more than the
/// `k` it wants, so that one peer's answer can reach past its own nearest few.
pub const MIN_ANSWER: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    InFlight,
    Answered,
    Failed,
}

/// A candidate of the shortlist.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    record: PeerRecord,
    state: State,
    page: u8,
}

/// An iterative lookup of the `k` nodes nearest a site.
///
/// It keeps a shortlist ordered by (distance to the target, id) and queries
/// its *live* candidates, `alpha` at a time, nearest first; it is done when
/// every live candidate has answered or failed. Live are the candidates that
/// did not fail, lie no more pages away than the `k`-th nearest such
/// candidate, and are among the `k` nearest such candidates of their own page
/// on their side of the target byte (ahead of it or behind it on the page's
/// ring).
///
/// The per-page rule is what makes the lattice metric work. Page distance
/// dominates it, so the nodes nearest a target on an adjacent page can be
/// ranked behind nodes of the other adjacent page that know nothing nearer;
/// a plain "query the k nearest" lookup (Kademlia's rule, made for the XOR
/// metric) then stops early. Walking each near page's ring towards the
/// target byte finds them. The ring is walked from both sides, because the
/// nodes that know the nearest ones on one side are their neighbours on that
/// side: with `k` per page only, the `k` nearest could all lie ahead of the
/// target, none of them knowing a node just behind it. The cost is about `2k`
/// queries per page in reach: in a dense network that is the target's page
/// alone. It tolerates
/// peers that lie or stay silent: records whose proof of work does not verify
/// are dropped (and counted), answers from peers it did not ask are ignored,
/// peers that fail or time out are passed over, and the shortlist is bounded
/// so a flood of records cannot grow it.
///
/// The lookup does no I/O: [`Lookup::next_queries`] says whom to ask,
/// [`Lookup::on_answer`] and [`Lookup::on_failure`] take the outcomes.
/// [`find_nodes`] drives it over a [`Transport`]; a simulation can drive it too.
#[derive(Debug, Clone)]
pub struct Lookup {
    local: PeerId,
    target: Coord,
    k: usize,
    alpha: usize,
    difficulty: u32,
    shortlist: BTreeMap<(u16, PeerId), Candidate>,
    in_flight: usize,
    rejected: u64,
}

impl Lookup {
    /// A lookup by `local` of the `k` nodes nearest `target`, starting from
    /// `seeds` (checked like any other record), admitting records of at least
    /// `difficulty` bits of work.
    pub fn new(
        local: PeerId,
        target: Coord,
        k: usize,
        difficulty: u32,
        seeds: impl IntoIterator<Item = PeerRecord>,
    ) -> Self {
        let mut lookup = Lookup {
            local,
            target,
            k: k.max(1),
            alpha: DEFAULT_ALPHA,
            difficulty,
            shortlist: BTreeMap::new(),
            in_flight: 0,
            rejected: 0,
        };
        for record in seeds {
            lookup.offer(record);
        }
        lookup
    }

    /// Sets how many queries may be in flight at once (at least 1).
    pub fn with_alpha(mut self, alpha: usize) -> Self {
        self.alpha = alpha.max(1);
        self
    }

    /// The site looked up.
    pub fn target(&self) -> Coord {
        self.target
    }

    /// How many nodes the lookup wants.
    pub fn k(&self) -> usize {
        self.k
    }

    /// How many records to ask each peer for: `max(k, MIN_ANSWER)`.
    pub fn answer_size(&self) -> usize {
        self.k.max(MIN_ANSWER)
    }

    /// The most candidates kept: enough to replace every one of the `k`
    /// nearest several times over.
    fn capacity(&self) -> usize {
        (8 * self.k).max(64)
    }

    fn offer(&mut self, record: PeerRecord) {
        if record.id == self.local {
            return;
        }
        if record.verify(self.difficulty).is_err() {
            self.rejected += 1;
            return;
        }
        let site = record.id.coord();
        let key = (self.target.distance(site), record.id);
        self.shortlist.entry(key).or_insert(Candidate {
            record,
            state: State::Waiting,
            page: site.page(),
        });
        while self.shortlist.len() > self.capacity() {
            // Drop the farthest candidate that is not in flight.
            let far = self
                .shortlist
                .iter()
                .rev()
                .find(|(_, c)| c.state != State::InFlight)
                .map(|(key, _)| *key);
            match far {
                Some(key) => {
                    self.shortlist.remove(&key);
                }
                None => break,
            }
        }
    }

    /// Which way round its page's ring `peer` lies from the target byte:
    /// `false` at or ahead of it (within half a ring), `true` behind it.
    fn side_of(&self, peer: &PeerId) -> bool {
        peer.coord().byte().wrapping_sub(self.target.byte()) >= 128
    }

    fn key_of(&self, peer: &PeerId) -> (u16, PeerId) {
        (self.target.distance(peer.coord()), *peer)
    }

    /// The live candidates (see the type's docs), nearest first.
    fn live(&self) -> Vec<(u16, PeerId)> {
        let mut usable = self
            .shortlist
            .iter()
            .filter(|(_, c)| c.state != State::Failed);
        let reach = usable
            .nth(self.k - 1)
            .map_or(u16::MAX, |((d, _), _)| d / 256);
        let mut per_ring_side = [[0usize; 2]; crate::PAGES];
        let mut live = Vec::new();
        for (key, c) in &self.shortlist {
            if c.state == State::Failed {
                continue;
            }
            if key.0 / 256 > reach {
                break;
            }
            let side = usize::from(self.side_of(&c.record.id));
            let seen = &mut per_ring_side[usize::from(c.page) % crate::PAGES][side];
            if *seen < self.k {
                *seen += 1;
                live.push(*key);
            }
        }
        live
    }

    /// The peers to ask now (marked in flight). Empty when enough queries are
    /// in flight or nothing live is left to ask.
    pub fn next_queries(&mut self) -> Vec<PeerId> {
        let mut queries = Vec::new();
        for key in self.live() {
            if self.in_flight >= self.alpha {
                break;
            }
            if let Some(c) = self.shortlist.get_mut(&key) {
                if c.state == State::Waiting {
                    c.state = State::InFlight;
                    self.in_flight += 1;
                    queries.push(key.1);
                }
            }
        }
        queries
    }

    /// `from` answered with `records`. Answers from peers not in flight are ignored.
    pub fn on_answer(&mut self, from: PeerId, records: impl IntoIterator<Item = PeerRecord>) {
        if self.settle(&from, State::Answered) {
            for record in records {
                self.offer(record);
            }
        }
    }

    /// Asking `from` failed (error, timeout, malformed answer).
    pub fn on_failure(&mut self, from: PeerId) {
        self.settle(&from, State::Failed);
    }

    /// Moves `from` from in flight to `state`; false if it was not in flight.
    fn settle(&mut self, from: &PeerId, state: State) -> bool {
        let key = self.key_of(from);
        match self.shortlist.get_mut(&key) {
            Some(c) if c.state == State::InFlight => {
                c.state = state;
                self.in_flight -= 1;
                true
            }
            _ => false,
        }
    }

    /// Whether every live candidate has answered (none is in flight or waiting).
    pub fn is_done(&self) -> bool {
        self.in_flight == 0
            && self.live().iter().all(|key| {
                self.shortlist
                    .get(key)
                    .is_some_and(|c| c.state == State::Answered)
            })
    }

    /// The nearest peers that answered, at most `k`, nearest first.
    pub fn result(&self) -> Vec<PeerRecord> {
        self.shortlist
            .values()
            .filter(|c| c.state == State::Answered)
            .take(self.k)
            .map(|c| c.record)
            .collect()
    }

    /// How many records were dropped because their proof of work failed.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }
}

/// Runs a lookup over a transport: `alpha` requests in flight, each with
/// `timeout`; a failed, timed-out or malformed answer counts as a failure.
pub async fn find_nodes(
    transport: &dyn Transport,
    mut lookup: Lookup,
    timeout: Duration,
) -> Lookup {
    let request = DiscoveryMessage::FindNodes {
        target: lookup.target(),
        k: u16::try_from(lookup.answer_size()).unwrap_or(u16::MAX),
    }
    .encode();
    let mut pending = FuturesUnordered::new();
    loop {
        for peer in lookup.next_queries() {
            let request = request.clone();
            pending.push(async move {
                let answer = transport
                    .request(peer, Protocol::DISCOVERY, request, timeout)
                    .await;
                (peer, answer)
            });
        }
        let Some((peer, answer)) = pending.next().await else {
            break;
        };
        match answer.ok().map(|bytes| DiscoveryMessage::decode(&bytes)) {
            Some(Ok(DiscoveryMessage::Nodes(records))) => lookup.on_answer(peer, records),
            _ => lookup.on_failure(peer),
        }
    }
    lookup
}
