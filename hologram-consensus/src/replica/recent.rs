//! The ids of recently committed commands: a filter for re-gossiped ones.

use crate::command::CommandId;
use hologram_cam::FastSet;
use std::collections::VecDeque;

/// How many of the latest decided heights' command ids are remembered.
pub(crate) const RECENT_HEIGHTS: usize = 64;

/// The most command ids remembered, over all those heights.
pub(crate) const RECENT_IDS: usize = 65_536;

/// The ids of the commands decided in the last [`RECENT_HEIGHTS`] heights,
/// at most [`RECENT_IDS`] of them (the oldest heights go first).
///
/// It only keeps a replica from taking back into its mempool (and
/// verifying, and ordering again) a command that a peer re-gossips after it
/// was committed. It is not what makes a command apply once: a duplicate
/// that slips past (committed longer ago than the filter remembers) is
/// ordered again and answered as a duplicate by the state machine's
/// [`SessionTable`](crate::SessionTable).
#[derive(Default)]
pub(crate) struct RecentlyCommitted {
    heights: VecDeque<Vec<CommandId>>,
    ids: FastSet<CommandId>,
}

impl RecentlyCommitted {
    /// Remembers the ids of one decided height, forgetting the oldest
    /// heights past the bounds.
    pub(crate) fn push(&mut self, ids: Vec<CommandId>) {
        self.ids.extend(ids.iter().copied());
        self.heights.push_back(ids);
        while self.heights.len() > RECENT_HEIGHTS
            || (self.ids.len() > RECENT_IDS && self.heights.len() > 1)
        {
            if let Some(old) = self.heights.pop_front() {
                for id in &old {
                    self.ids.remove(id);
                }
            }
        }
    }

    /// Whether `id` was committed recently.
    pub(crate) fn contains(&self, id: &CommandId) -> bool {
        self.ids.contains(id)
    }

    /// The number of ids remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_lattice::Address;

    fn id(i: u64) -> CommandId {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&i.to_le_bytes());
        Address::from_bytes(b)
    }

    #[test]
    fn remembers_the_latest_heights_only() {
        let mut r = RecentlyCommitted::default();
        for h in 0..(RECENT_HEIGHTS as u64 + 10) {
            r.push(vec![id(2 * h), id(2 * h + 1)]);
        }
        assert_eq!(r.len(), 2 * RECENT_HEIGHTS);
        assert!(!r.contains(&id(0)));
        assert!(!r.contains(&id(19)));
        assert!(r.contains(&id(20)));
        assert!(r.contains(&id(2 * (RECENT_HEIGHTS as u64 + 9) + 1)));
    }

    #[test]
    fn the_count_is_capped_but_the_latest_height_stays() {
        let mut r = RecentlyCommitted::default();
        r.push((0..10).map(id).collect());
        r.push((10..10 + RECENT_IDS as u64).map(id).collect());
        assert_eq!(r.len(), RECENT_IDS);
        assert!(!r.contains(&id(3)));
        assert!(r.contains(&id(10)));
    }
}
