//! Whom a node forwards a newly delivered message to: phase 1 (its page
//! neighbours, unless a page neighbour brought the message) and phase 2 (one
//! member on each of `gossip_fanout` remote pages chosen with the C768
//! [`ScheduleRotation`] of the slot, spread and offset per message and
//! node); the [module docs](super) give the rule and why it departs from
//! the chapter's `i = 0..fanout`.

use super::{BroadcastConfig, Directory, ForwardPolicy, MessageId};
use hologram_lattice::{NodeId, ScheduleRotation};

/// Pages other than the local one.
const REMOTE_PAGES: usize = 47;

/// SplitMix64's finaliser: a well-mixed 64-bit function of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The first 8 bytes of an id (of a message or node), little-endian: a
/// well-mixed number.
fn low_u64(id: &[u8; 32]) -> u64 {
    let [a, b, c, d, e, f, g, h, ..] = *id;
    u64::from_le_bytes([a, b, c, d, e, f, g, h])
}

/// What target selection needs to know about one forwarding decision.
pub(crate) struct Forwarding<'a> {
    pub directory: &'a Directory,
    pub config: &'a BroadcastConfig,
    pub me: NodeId,
    pub local_page: u8,
    pub message: MessageId,
    pub origin: NodeId,
    /// The peer it came from; `None` at the origin.
    pub from: Option<NodeId>,
    pub now_ms: u64,
}

impl Forwarding<'_> {
    /// Whether `id` may be sent this message: an accepted member that is not
    /// this node, the origin or the peer it came from.
    fn eligible(&self, id: &NodeId) -> bool {
        *id != self.me && *id != self.origin && Some(*id) != self.from && self.directory.accepts(id)
    }

    /// The targets, without repeats.
    pub(crate) fn targets(&self) -> Vec<NodeId> {
        match self.config.policy {
            ForwardPolicy::Flood => self
                .directory
                .members()
                .filter(|id| self.eligible(id))
                .collect(),
            ForwardPolicy::Lattice => {
                let mut out = Vec::new();
                let from_elsewhere = self
                    .from
                    .is_none_or(|f| f.coord().page() != self.local_page);
                if from_elsewhere {
                    out.extend(
                        self.directory
                            .page(self.local_page)
                            .iter()
                            .filter(|id| self.eligible(id)),
                    );
                }
                self.gossip(&mut out);
                out
            }
        }
    }

    /// Phase 2: one member on each of `gossip_fanout` remote pages.
    fn gossip(&self, out: &mut Vec<NodeId>) {
        let fanout = self.config.gossip_fanout.min(REMOTE_PAGES);
        if fanout == 0 {
            return;
        }
        let rotation = ScheduleRotation::at_time(self.now_ms, self.config.slot_ms);
        let h = mix(low_u64(self.message.as_bytes()) ^ low_u64(self.me.as_bytes()));
        let stride = (REMOTE_PAGES / fanout).max(1) as u64;
        let mut chosen = 0;
        // Walk the spread indices, then the rest of the ring, until `fanout`
        // pages with an eligible member are found (sparse networks have
        // empty pages).
        for step in 0..REMOTE_PAGES as u64 {
            if chosen == fanout {
                break;
            }
            let j = step % fanout as u64;
            let lap = step / fanout as u64;
            let i = (h + j * stride + lap) % REMOTE_PAGES as u64;
            let page = rotation.map_page(self.local_page, i as usize);
            let members = self.directory.page(page);
            if members.is_empty() {
                continue;
            }
            let start = (mix(h ^ (step + 1)) % members.len() as u64) as usize;
            let pick = (0..members.len())
                .filter_map(|k| members.get((start + k) % members.len()))
                .find(|id| self.eligible(id) && !out.contains(id));
            if let Some(&id) = pick {
                out.push(id);
                chosen += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn network(n: u32) -> Directory {
        Directory::new((0..n).map(|i| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&i.to_le_bytes());
            NodeId::from_bytes(*blake3::hash(&b).as_bytes())
        }))
    }

    fn forwarding<'a>(
        dir: &'a Directory,
        config: &'a BroadcastConfig,
        me: NodeId,
        from: Option<NodeId>,
    ) -> Forwarding<'a> {
        Forwarding {
            directory: dir,
            config,
            me,
            local_page: me.coord().page(),
            message: MessageId::from_bytes([5; 32]),
            origin: NodeId::from_bytes([0; 32]),
            from,
            now_ms: 1234,
        }
    }

    #[test]
    fn arrivals_from_elsewhere_cover_the_page_and_fanout_pages() {
        let dir = network(1000);
        let config = BroadcastConfig::default();
        let me = dir.member_at(0).unwrap();
        let page = me.coord().page();
        let targets = forwarding(&dir, &config, me, None).targets();
        let on_page: BTreeSet<NodeId> = dir
            .page(page)
            .iter()
            .copied()
            .filter(|&i| i != me)
            .collect();
        let got_page: BTreeSet<NodeId> = targets
            .iter()
            .copied()
            .filter(|t| t.coord().page() == page)
            .collect();
        assert_eq!(got_page, on_page);
        let remote: BTreeSet<u8> = targets
            .iter()
            .map(|t| t.coord().page())
            .filter(|&p| p != page)
            .collect();
        assert_eq!(remote.len(), config.gossip_fanout);
        assert_eq!(targets.len(), on_page.len() + config.gossip_fanout);

        // From a page neighbour: only phase 2.
        let neighbour = *on_page.iter().next().unwrap();
        let targets = forwarding(&dir, &config, me, Some(neighbour)).targets();
        assert_eq!(targets.len(), config.gossip_fanout);
        assert!(targets.iter().all(|t| t.coord().page() != page));
    }

    #[test]
    fn nodes_of_one_page_spread_over_many_pages() {
        let dir = network(1000);
        let config = BroadcastConfig::default();
        let me = dir.member_at(0).unwrap();
        let mut pages = BTreeSet::new();
        for &mate in dir.page(me.coord().page()) {
            for t in forwarding(&dir, &config, mate, Some(me)).targets() {
                pages.insert(t.coord().page());
            }
        }
        assert!(
            pages.len() >= 30,
            "page-mates reach only {} pages",
            pages.len()
        );
    }

    #[test]
    fn flooding_sends_to_everyone_else_and_shunned_nodes_get_nothing() {
        let mut dir = network(50);
        let config = BroadcastConfig {
            policy: ForwardPolicy::Flood,
            ..BroadcastConfig::default()
        };
        let me = dir.member_at(0).unwrap();
        let bad = dir.member_at(1).unwrap();
        assert_eq!(forwarding(&dir, &config, me, None).targets().len(), 49);
        dir.shun(bad);
        let t = forwarding(&dir, &config, me, None).targets();
        assert_eq!(t.len(), 48);
        assert!(!t.contains(&bad));
    }
}
