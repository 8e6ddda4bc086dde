//! Commands waiting to be ordered.
//!
//! Commands are kept in arrival order, each once (by [`CommandId`]). A
//! command named by a known proposal of a height still in flight is
//! *claimed*; leaders propose unclaimed commands first. With pipelining the
//! unclaimed commands are split into lanes (`id` mod depth), and the leader of
//! height `h` prefers lane `h mod depth`, so concurrent leaders of the window
//! rarely propose the same command twice (and when they do, execution applies
//! it once: see [`crate::state_machine`]).

use crate::batch::{Command, CommandId};
use std::collections::{BTreeMap, HashMap};

struct Entry {
    command: Command,
    seq: u64,
    claims: u32,
    gossip: bool,
}

/// The mempool of one replica.
pub(crate) struct Mempool {
    entries: HashMap<CommandId, Entry>,
    lanes: Vec<BTreeMap<u64, CommandId>>,
    next_seq: u64,
    capacity: usize,
    gossiped: usize,
}

impl Mempool {
    pub(crate) fn new(capacity: usize, lanes: usize) -> Self {
        Self {
            entries: HashMap::new(),
            lanes: (0..lanes.max(1)).map(|_| BTreeMap::new()).collect(),
            next_seq: 0,
            capacity,
            gossiped: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The number of unclaimed commands.
    pub(crate) fn unclaimed(&self) -> usize {
        self.lanes.iter().map(BTreeMap::len).sum()
    }

    fn lane(&self, id: &CommandId) -> usize {
        (id.as_bytes()[0] as usize) % self.lanes.len()
    }

    /// Adds a command (returns false if it was present).
    pub(crate) fn insert(&mut self, id: CommandId, command: Command, gossip: bool) -> bool {
        if self.entries.contains_key(&id) {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let lane = self.lane(&id);
        self.lanes[lane].insert(seq, id);
        self.gossiped += usize::from(gossip);
        self.entries.insert(
            id,
            Entry {
                command,
                seq,
                claims: 0,
                gossip,
            },
        );
        true
    }

    /// Removes a command (it was decided).
    pub(crate) fn remove(&mut self, id: &CommandId) {
        if let Some(e) = self.entries.remove(id) {
            self.gossiped -= usize::from(e.gossip);
            if e.claims == 0 {
                let lane = self.lane(id);
                self.lanes[lane].remove(&e.seq);
            }
        }
    }

    /// A known proposal names `id`.
    pub(crate) fn claim(&mut self, id: &CommandId) {
        let lane = self.lane(id);
        if let Some(e) = self.entries.get_mut(id) {
            if e.claims == 0 {
                self.lanes[lane].remove(&e.seq);
            }
            e.claims += 1;
        }
    }

    /// A proposal naming `id` is gone (its height decided another value).
    pub(crate) fn unclaim(&mut self, id: &CommandId) {
        let lane = self.lane(id);
        if let Some(e) = self.entries.get_mut(id) {
            e.claims = e.claims.saturating_sub(1);
            if e.claims == 0 {
                self.lanes[lane].insert(e.seq, *id);
            }
        }
    }

    /// Up to `max` unclaimed commands for height `height`: its lane first,
    /// then the others, oldest first within a lane.
    pub(crate) fn take_for(&self, height: u64, max: usize) -> Vec<Command> {
        let n = self.lanes.len();
        let first = (height % n as u64) as usize;
        let mut out = Vec::with_capacity(max.min(self.unclaimed()));
        for k in 0..n {
            for id in self.lanes[(first + k) % n].values() {
                if out.len() >= max {
                    return out;
                }
                if let Some(e) = self.entries.get(id) {
                    out.push(e.command.clone());
                }
            }
        }
        out
    }

    /// Up to `max` unclaimed commands that were submitted for gossip, oldest first.
    pub(crate) fn gossip_pending(&self, max: usize) -> Vec<Command> {
        if self.gossiped == 0 {
            return Vec::new();
        }
        let mut pending: Vec<(u64, &Entry)> = self
            .lanes
            .iter()
            .flat_map(|lane| lane.iter())
            .filter_map(|(seq, id)| self.entries.get(id).map(|e| (*seq, e)))
            .filter(|(_, e)| e.gossip)
            .collect();
        pending.sort_unstable_by_key(|(seq, _)| *seq);
        pending
            .into_iter()
            .take(max)
            .map(|(_, e)| e.command.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(i: u32) -> (CommandId, Command) {
        let c = Command::new(i.to_le_bytes().to_vec()).unwrap();
        (c.id(), c)
    }

    #[test]
    fn claims_move_commands_out_of_and_back_into_lanes() {
        let mut m = Mempool::new(100, 4);
        for i in 0..40 {
            let (id, c) = cmd(i);
            assert!(m.insert(id, c.clone(), true));
            assert!(!m.insert(id, c, true));
        }
        assert_eq!(m.unclaimed(), 40);
        let taken = m.take_for(1, 10);
        assert_eq!(taken.len(), 10);
        // Lane 1 first.
        let lane1 = taken
            .iter()
            .take_while(|c| c.id().as_bytes()[0] % 4 == 1)
            .count();
        assert!(lane1 > 0);
        for c in &taken {
            m.claim(&c.id());
        }
        assert_eq!(m.unclaimed(), 30);
        for c in &taken {
            assert!(!m.take_for(1, 40).contains(c));
            m.unclaim(&c.id());
        }
        assert_eq!(m.unclaimed(), 40);
        m.claim(&taken[0].id());
        m.remove(&taken[0].id());
        m.remove(&taken[1].id());
        assert_eq!((m.len(), m.unclaimed()), (38, 38));
        assert_eq!(m.gossip_pending(100).len(), 38);
    }
}
