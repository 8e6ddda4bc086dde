//! The node identities a broadcast node accepts, indexed by lattice page.

use hologram_lattice::routing::PeerRecord;
use hologram_lattice::{NodeId, PAGES};
use std::collections::BTreeSet;

/// The membership a node accepts messages from: every known [`NodeId`], by
/// page (a node's page is `id.coord().page()`, SPEC §2), and the ones it
/// shuns.
///
/// Messages whose origin, any forwarder or whose immediate sender is not a
/// member, or is shunned, are dropped unverified and never forwarded.
/// Delivery certificates are checked against a directory too
/// ([`DeliveryCertificate::verify`](super::DeliveryCertificate::verify)).
///
/// ```
/// use hologram_consensus::broadcast::Directory;
/// use hologram_lattice::NodeId;
/// let ids: Vec<NodeId> = (1..=3u8).map(|i| NodeId::from_bytes([i; 32])).collect();
/// let mut dir = Directory::new(ids.iter().copied());
/// assert!(dir.accepts(&ids[0]));
/// dir.shun(ids[0]);
/// assert!(dir.is_member(&ids[0]) && !dir.accepts(&ids[0]));
/// assert!(!dir.accepts(&NodeId::from_bytes([9; 32])));
/// ```
#[derive(Debug, Clone)]
pub struct Directory {
    members: BTreeSet<NodeId>,
    list: Vec<NodeId>,
    pages: Vec<Vec<NodeId>>,
    shunned: BTreeSet<NodeId>,
}

impl Directory {
    /// A directory of these identities (repeats are kept once).
    pub fn new(ids: impl IntoIterator<Item = NodeId>) -> Self {
        let members: BTreeSet<NodeId> = ids.into_iter().collect();
        let mut pages = vec![Vec::new(); PAGES];
        // Members iterate in id order, so each page's list is sorted.
        for id in &members {
            if let Some(page) = pages.get_mut(usize::from(id.coord().page())) {
                page.push(*id);
            }
        }
        Self {
            list: members.iter().copied().collect(),
            members,
            pages,
            shunned: BTreeSet::new(),
        }
    }

    /// A directory of the peer records whose proof of work verifies at
    /// `difficulty` (SPEC §7); the others are left out. Returns the directory
    /// and how many records were left out.
    pub fn from_records(
        records: impl IntoIterator<Item = PeerRecord>,
        difficulty: u32,
    ) -> (Self, usize) {
        let mut rejected = 0;
        let ids: Vec<NodeId> = records
            .into_iter()
            .filter_map(|r| match r.verify(difficulty) {
                Ok(()) => Some(r.id),
                Err(_) => {
                    rejected += 1;
                    None
                }
            })
            .collect();
        (Self::new(ids), rejected)
    }

    /// Whether `id` is a member (shunned or not).
    pub fn is_member(&self, id: &NodeId) -> bool {
        self.members.contains(id)
    }

    /// Whether messages from `id` are accepted: a member not shunned.
    pub fn accepts(&self, id: &NodeId) -> bool {
        self.members.contains(id) && !self.shunned.contains(id)
    }

    /// Whether `id` is shunned.
    pub fn is_shunned(&self, id: &NodeId) -> bool {
        self.shunned.contains(id)
    }

    /// Stops accepting messages from `id` and stops sending to it.
    pub fn shun(&mut self, id: NodeId) {
        self.shunned.insert(id);
    }

    /// Accepts `id` again.
    pub fn forgive(&mut self, id: &NodeId) {
        self.shunned.remove(id);
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member, in id order.
    pub fn members(&self) -> impl ExactSizeIterator<Item = NodeId> + '_ {
        self.members.iter().copied()
    }

    /// The `i`-th member in id order, if `i < len()`.
    pub fn member_at(&self, i: usize) -> Option<NodeId> {
        self.list.get(i).copied()
    }

    /// The members on `page` (taken mod 48), in id order, shunned ones included.
    pub fn page(&self, page: u8) -> &[NodeId] {
        self.pages
            .get(usize::from(page) % PAGES)
            .map_or(&[], Vec::as_slice)
    }

    /// The number of pages with at least one member.
    pub fn occupied_pages(&self) -> usize {
        self.pages.iter().filter(|p| !p.is_empty()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_hold_their_members_in_order() {
        let ids: Vec<NodeId> = (0..200u8).map(|i| NodeId::from_bytes([i; 32])).collect();
        let dir = Directory::new(ids.iter().copied().chain(ids.iter().copied()));
        assert_eq!(dir.len(), 200);
        let mut total = 0;
        for p in 0..PAGES as u8 {
            let page = dir.page(p);
            assert!(page.windows(2).all(|w| w[0] < w[1]));
            assert!(page.iter().all(|id| id.coord().page() == p));
            total += page.len();
        }
        assert_eq!(total, 200);
        assert_eq!(dir.page(48), dir.page(0));
        assert!(dir.occupied_pages() > 40);
    }

    #[test]
    fn records_without_work_are_left_out() {
        let good = PeerRecord::mint(NodeId::from_bytes([1; 32]), 6, 1 << 16)
            .unwrap()
            .unwrap();
        let mut bad = PeerRecord::mint(NodeId::from_bytes([2; 32]), 6, 1 << 16)
            .unwrap()
            .unwrap();
        while bad.verify(6).is_ok() {
            bad.pow.nonce += 1;
        }
        let (dir, rejected) = Directory::from_records([good, bad], 6);
        assert_eq!(rejected, 1);
        assert!(dir.accepts(&good.id) && !dir.is_member(&bad.id));
    }
}
