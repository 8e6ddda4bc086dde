//! The routing table: peers indexed by page, nearest-peer queries (SPEC §1, §8).

use crate::coord::byte_distance;
use crate::{Coord, PeerId, PAGES};
use std::collections::hash_map::Entry;
use std::collections::HashMap;

/// What [`RoutingTable::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insertion {
    /// The peer was added.
    Added,
    /// The peer was already in the table.
    Present,
    /// The peer's page already holds the table's cap of peers.
    PageFull,
}

/// Peers by lattice site, with an index per page.
///
/// Each page keeps its peers sorted by (byte, id), so the nearest peers of a
/// page are found by a binary search and a walk outwards. Queries visit pages
/// in order of page distance, which dominates the metric, and stop as soon as
/// `k` peers are found: the cost depends on `k` and on how sparse the table
/// is, not on its size. An optional cap on peers per page keeps any one
/// identity farm from filling a region of the table.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    pages: Vec<Vec<(u8, PeerId)>>,
    sites: HashMap<PeerId, Coord>,
    page_cap: usize,
}

impl Default for RoutingTable {
    fn default() -> Self {
        Self::new()
    }
}

impl RoutingTable {
    /// An empty table without a page cap.
    pub fn new() -> Self {
        Self::with_page_cap(usize::MAX)
    }

    /// An empty table that holds at most `cap` peers per page.
    pub fn with_page_cap(cap: usize) -> Self {
        Self {
            pages: vec![Vec::new(); PAGES],
            sites: HashMap::new(),
            page_cap: cap,
        }
    }

    /// An uncapped table of many peers at given sites, built in one pass
    /// (sorting each page once instead of inserting one by one). A repeated
    /// peer keeps its first site.
    pub fn from_sites(peers: impl IntoIterator<Item = (PeerId, Coord)>) -> Self {
        let mut table = Self::new();
        for (peer, site) in peers {
            if let Entry::Vacant(slot) = table.sites.entry(peer) {
                slot.insert(site);
                table.pages[usize::from(site.page())].push((site.byte(), peer));
            }
        }
        for page in &mut table.pages {
            page.sort_unstable();
        }
        table
    }

    /// The cap on peers per page (`usize::MAX` when uncapped).
    pub fn page_cap(&self) -> usize {
        self.page_cap
    }

    /// Adds a peer at its own site ([`PeerId::coord`]).
    pub fn insert(&mut self, peer: PeerId) -> Insertion {
        self.insert_at(peer, peer.coord())
    }

    /// Adds a peer at a given site (for tests and simulations that place
    /// peers by hand; real peers live at [`PeerId::coord`]).
    pub fn insert_at(&mut self, peer: PeerId, site: Coord) -> Insertion {
        if self.sites.contains_key(&peer) {
            return Insertion::Present;
        }
        let page = &mut self.pages[usize::from(site.page())];
        if page.len() >= self.page_cap {
            return Insertion::PageFull;
        }
        let entry = (site.byte(), peer);
        let at = page.partition_point(|e| *e < entry);
        page.insert(at, entry);
        self.sites.insert(peer, site);
        Insertion::Added
    }

    /// Removes a peer; returns its site if it was present.
    pub fn remove(&mut self, peer: &PeerId) -> Option<Coord> {
        let site = self.sites.remove(peer)?;
        let page = &mut self.pages[usize::from(site.page())];
        if let Ok(at) = page.binary_search(&(site.byte(), *peer)) {
            page.remove(at);
        }
        Some(site)
    }

    /// Whether a peer is in the table.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.sites.contains_key(peer)
    }

    /// A peer's site, if it is in the table.
    pub fn site(&self, peer: &PeerId) -> Option<Coord> {
        self.sites.get(peer).copied()
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.sites.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// The peers of one page (taken mod 48), by (byte, id).
    pub fn page_peers(&self, page: u8) -> impl ExactSizeIterator<Item = PeerId> + '_ {
        self.pages[usize::from(page) % PAGES]
            .iter()
            .map(|&(_, id)| id)
    }

    /// Every peer with its site, page by page.
    pub fn iter(&self) -> impl Iterator<Item = (PeerId, Coord)> + '_ {
        self.pages.iter().enumerate().flat_map(|(p, page)| {
            page.iter()
                .map(move |&(b, id)| (id, Coord::new(p as u32, b.into())))
        })
    }

    /// The `k` peers nearest to `target` with their distances, nearest first,
    /// ties broken by id (SPEC §1). Pages are searched outwards from the
    /// target's page until `k` peers are found or none are left.
    pub fn nearest(&self, target: Coord, k: usize) -> Vec<(PeerId, u16)> {
        let mut found: Vec<(u16, PeerId)> = Vec::with_capacity(k);
        let tp = usize::from(target.page());
        for dp in 0..=PAGES / 2 {
            if found.len() >= k {
                break;
            }
            let need = k - found.len();
            let mut ring: Vec<(u16, PeerId)> = Vec::new();
            let up = (tp + dp) % PAGES;
            let down = (tp + PAGES - dp) % PAGES;
            nearest_in_page(&self.pages[up], target.byte(), need, &mut ring);
            if down != up {
                nearest_in_page(&self.pages[down], target.byte(), need, &mut ring);
            }
            ring.sort_unstable();
            ring.truncate(need);
            let base = dp as u16 * 256;
            found.extend(ring.into_iter().map(|(db, id)| (base + db, id)));
        }
        found.into_iter().map(|(d, id)| (id, d)).collect()
    }
}

/// Appends to `out` at least the `need` peers of `page` nearest to byte `tb`
/// by (byte distance, id), as (byte distance, id) in no particular order.
///
/// The byte circle splits into two arcs that each grow in distance from
/// `tb`: upwards `tb, tb+1, …, tb+128` and downwards `tb-1, …, tb-127`. Each
/// arc is walked until it has `need` peers and the next one is farther than
/// the last taken (so ties at the cut are all offered; the caller sorts).
fn nearest_in_page(page: &[(u8, PeerId)], tb: u8, need: usize, out: &mut Vec<(u16, PeerId)>) {
    let n = page.len();
    if n == 0 || need == 0 {
        return;
    }
    let start = page.partition_point(|&(b, _)| b < tb);
    let mut take =
        |i: usize, in_arc: &dyn Fn(u8) -> bool, taken: &mut usize, last: &mut u8| -> bool {
            let (b, id) = page[i];
            if !in_arc(b) {
                return false;
            }
            let d = byte_distance(b, tb);
            if *taken >= need && d > *last {
                return false;
            }
            out.push((u16::from(d), id));
            *taken += 1;
            *last = d;
            true
        };
    let up_arc = |b: u8| b.wrapping_sub(tb) <= 128;
    let down_arc = |b: u8| (1..=127).contains(&tb.wrapping_sub(b));
    let (mut taken, mut last) = (0, 0);
    let mut walked = 0;
    while walked < n && take((start + walked) % n, &up_arc, &mut taken, &mut last) {
        walked += 1;
    }
    let (mut taken, mut last) = (0, 0);
    let mut back = 0;
    while back < n - walked && take((start + n - 1 - back) % n, &down_arc, &mut taken, &mut last) {
        back += 1;
    }
}
