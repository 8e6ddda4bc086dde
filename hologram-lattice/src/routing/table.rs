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
    pages: Vec<Page>,
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
            pages: vec![Page::default(); PAGES],
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
                table.pages[usize::from(site.page())]
                    .entries
                    .push((site.byte(), peer));
            }
        }
        for page in &mut table.pages {
            page.entries.sort_unstable();
            page.reindex();
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
        if page.entries.len() >= self.page_cap {
            return Insertion::PageFull;
        }
        page.insert(site.byte(), peer);
        self.sites.insert(peer, site);
        Insertion::Added
    }

    /// Removes a peer; returns its site if it was present.
    pub fn remove(&mut self, peer: &PeerId) -> Option<Coord> {
        let site = self.sites.remove(peer)?;
        self.pages[usize::from(site.page())].remove(site.byte(), peer);
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
            .entries
            .iter()
            .map(|&(_, id)| id)
    }

    /// Every peer with its site, page by page.
    pub fn iter(&self) -> impl Iterator<Item = (PeerId, Coord)> + '_ {
        self.pages.iter().enumerate().flat_map(|(p, page)| {
            page.entries
                .iter()
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

/// Appends to `out` the `need` peers of `page` nearest to byte `tb` by
/// (byte distance, id), as (byte distance, id), in no particular order, plus
/// at most `need` more (the caller sorts and truncates).
///
/// The byte circle splits into two arcs that each grow in distance from
/// `tb`: upwards `tb, tb+1, …, tb+128` and downwards `tb-1, …, tb-127`.
/// Upwards, entries come in exactly (distance, id) order. Downwards, bytes
/// come in distance order but each byte's run is sorted by id, so the walk
/// goes run by run, taking each run from its start.
fn nearest_in_page(page: &Page, tb: u8, need: usize, out: &mut Vec<(u16, PeerId)>) {
    let entries = &page.entries[..];
    let n = entries.len();
    if n == 0 || need == 0 {
        return;
    }
    let start = page.start_of(tb);
    let mut taken = 0;
    while taken < need && taken < n {
        let (b, id) = entries[(start + taken) % n];
        if b.wrapping_sub(tb) > 128 {
            break;
        }
        out.push((u16::from(byte_distance(b, tb)), id));
        taken += 1;
    }
    let mut got = 0;
    let mut b = tb;
    for _ in 1..=127 {
        if got >= need {
            break;
        }
        b = b.wrapping_sub(1);
        let run = page.run(b);
        for &(_, id) in run.iter().take(need - got) {
            out.push((u16::from(byte_distance(b, tb)), id));
            got += 1;
        }
    }
}

/// One page's peers, sorted by (byte, id), with a directory of where each
/// byte value starts so that a query finds its place without a search.
#[derive(Debug, Clone)]
struct Page {
    entries: Vec<(u8, PeerId)>,
    /// `starts[b]`: index of the first entry with byte ≥ b (`starts[256] = len`).
    starts: [u32; 257],
}

impl Default for Page {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            starts: [0; 257],
        }
    }
}

impl Page {
    fn start_of(&self, byte: u8) -> usize {
        self.starts[usize::from(byte)] as usize
    }

    /// The entries of one byte value, sorted by id.
    fn run(&self, byte: u8) -> &[(u8, PeerId)] {
        let b = usize::from(byte);
        &self.entries[self.starts[b] as usize..self.starts[b + 1] as usize]
    }

    fn insert(&mut self, byte: u8, peer: PeerId) {
        let b = usize::from(byte);
        let at = self.start_of(byte) + self.run(byte).partition_point(|e| e.1 < peer);
        self.entries.insert(at, (byte, peer));
        for s in &mut self.starts[b + 1..] {
            *s += 1;
        }
    }

    fn remove(&mut self, byte: u8, peer: &PeerId) {
        let b = usize::from(byte);
        if let Ok(i) = self.run(byte).binary_search_by(|e| e.1.cmp(peer)) {
            self.entries.remove(self.start_of(byte) + i);
            for s in &mut self.starts[b + 1..] {
                *s -= 1;
            }
        }
    }

    /// Rebuilds the directory after the entries were sorted in bulk.
    fn reindex(&mut self) {
        let mut i = 0;
        for (b, start) in self.starts.iter_mut().enumerate() {
            while i < self.entries.len() && usize::from(self.entries[i].0) < b {
                i += 1;
            }
            *start = i as u32;
        }
    }
}
