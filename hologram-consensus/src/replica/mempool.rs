//! Commands waiting to be ordered.
//!
//! Commands are kept in arrival order, each once (by [`CommandId`]). A
//! command named by a known proposal of a height still in flight is
//! *claimed*; leaders propose unclaimed commands first. With pipelining the
//! unclaimed commands are split into lanes (`id` mod depth), and the leader of
//! height `h` prefers lane `h mod depth`, so concurrent leaders of the window
//! rarely propose the same command twice (and when they do, execution applies
//! it once: see [`crate::state_machine`]).

use crate::command::{Command, CommandId};
use hologram_cam::FastMap;
use std::collections::hash_map::Entry as Slot;
use std::collections::BTreeMap;

struct Entry {
    /// `None` until the command itself arrives: a known proposal named it
    /// first (its claims are then above zero).
    command: Option<Command>,
    seq: u64,
    claims: u32,
    gossip: bool,
}

/// The mempool of one replica.
///
/// One map, keyed by command id with the keyed fast hasher, holds both the
/// commands and how many known proposals of heights in flight name each id
/// (a proposal may name a command before it arrives here), so each command
/// costs one lookup per step: arrival, claim, release and decision.
pub(crate) struct Mempool {
    entries: FastMap<CommandId, Entry>,
    lanes: Vec<BTreeMap<u64, CommandId>>,
    next_seq: u64,
    capacity: usize,
    held: usize,
    gossiped: usize,
}

impl Mempool {
    pub(crate) fn new(capacity: usize, lanes: usize) -> Self {
        Self {
            entries: FastMap::default(),
            lanes: (0..lanes.max(1)).map(|_| BTreeMap::new()).collect(),
            next_seq: 0,
            capacity,
            held: 0,
            gossiped: 0,
        }
    }

    /// The number of commands held.
    pub(crate) fn len(&self) -> usize {
        self.held
    }

    pub(crate) fn is_full(&self) -> bool {
        self.held >= self.capacity
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether this very command (same id and signature) is held: it was
    /// verified when it entered, so it need not be verified again.
    pub(crate) fn holds(&self, command: &Command) -> bool {
        self.entries
            .get(&command.id())
            .and_then(|e| e.command.as_ref())
            .is_some_and(|held| held.signature() == command.signature())
    }

    /// Whether a command of this id is held (with whatever signature).
    pub(crate) fn contains(&self, id: &CommandId) -> bool {
        self.entries.get(id).is_some_and(|e| e.command.is_some())
    }

    /// The number of unclaimed commands.
    pub(crate) fn unclaimed(&self) -> usize {
        self.lanes.iter().map(BTreeMap::len).sum()
    }

    fn lane_of(lanes: usize, id: &CommandId) -> usize {
        (id.as_bytes()[0] as usize) % lanes
    }

    /// Adds a command (returns false if it was present). A command that known
    /// proposals already name stays claimed.
    pub(crate) fn insert(&mut self, id: CommandId, command: Command, gossip: bool) -> bool {
        let seq = self.next_seq;
        let claims = match self.entries.entry(id) {
            Slot::Occupied(mut slot) => {
                let e = slot.get_mut();
                if e.command.is_some() {
                    return false;
                }
                (e.command, e.seq, e.gossip) = (Some(command), seq, gossip);
                e.claims
            }
            Slot::Vacant(slot) => {
                slot.insert(Entry {
                    command: Some(command),
                    seq,
                    claims: 0,
                    gossip,
                });
                0
            }
        };
        self.next_seq += 1;
        self.held += 1;
        self.gossiped += usize::from(gossip);
        if claims == 0 {
            let lane = Self::lane_of(self.lanes.len(), &id);
            self.lanes[lane].insert(seq, id);
        }
        true
    }

    /// Forgets a command and its claims (it was decided).
    pub(crate) fn remove(&mut self, id: &CommandId) {
        if let Some(e) = self.entries.remove(id) {
            if e.command.is_some() {
                self.held -= 1;
                self.gossiped -= usize::from(e.gossip);
                if e.claims == 0 {
                    let lane = Self::lane_of(self.lanes.len(), id);
                    self.lanes[lane].remove(&e.seq);
                }
            }
        }
    }

    /// A known proposal names `id` (which may not have arrived yet).
    pub(crate) fn claim(&mut self, id: &CommandId) {
        let e = self.entries.entry(*id).or_insert(Entry {
            command: None,
            seq: 0,
            claims: 0,
            gossip: false,
        });
        if e.claims == 0 && e.command.is_some() {
            let lane = Self::lane_of(self.lanes.len(), id);
            self.lanes[lane].remove(&e.seq);
        }
        e.claims = e.claims.saturating_add(1);
    }

    /// A proposal naming `id` is gone (its height decided another value).
    pub(crate) fn unclaim(&mut self, id: &CommandId) {
        if let Slot::Occupied(mut slot) = self.entries.entry(*id) {
            let e = slot.get_mut();
            e.claims = e.claims.saturating_sub(1);
            if e.claims == 0 {
                if e.command.is_some() {
                    let lane = Self::lane_of(self.lanes.len(), id);
                    self.lanes[lane].insert(e.seq, *id);
                } else {
                    slot.remove();
                }
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
                if let Some(c) = self.entries.get(id).and_then(|e| e.command.as_ref()) {
                    out.push(c.clone());
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
        let mut pending: Vec<(u64, &Command)> = self
            .lanes
            .iter()
            .flat_map(|lane| lane.iter())
            .filter_map(|(seq, id)| self.entries.get(id).map(|e| (*seq, e)))
            .filter(|(_, e)| e.gossip)
            .filter_map(|(seq, e)| e.command.as_ref().map(|c| (seq, c)))
            .collect();
        pending.sort_unstable_by_key(|(seq, _)| *seq);
        pending
            .into_iter()
            .take(max)
            .map(|(_, c)| c.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(i: u32) -> (CommandId, Command) {
        let keys = hologram_receipt::KeyPair::from_seed([3; 32]);
        let c = Command::sign(&keys, u64::from(i), 0, i.to_le_bytes().to_vec()).unwrap();
        (c.id(), c)
    }

    #[test]
    fn holds_only_the_same_signature() {
        let mut m = Mempool::new(10, 1);
        let (id, c) = cmd(1);
        assert!(!m.holds(&c) && !m.contains(&id));
        m.claim(&id);
        assert!(!m.holds(&c) && !m.contains(&id));
        m.insert(id, c.clone(), false);
        assert!(m.holds(&c) && m.contains(&id));
        let mut sig = c.signature().to_bytes();
        sig[0] ^= 1;
        let other = Command::from_parts(
            c.client(),
            c.sequence(),
            c.first_unanswered(),
            hologram_receipt::Signature::from_bytes(sig),
            crate::BatchProof::single(),
            c.bytes().to_vec(),
        )
        .unwrap();
        assert_eq!(other.id(), id);
        assert!(!m.holds(&other));
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

    #[test]
    fn a_command_named_before_it_arrives_stays_claimed() {
        let mut m = Mempool::new(100, 2);
        let (id, c) = cmd(7);
        // Two proposals name it before it arrives: nothing is held.
        m.claim(&id);
        m.claim(&id);
        assert_eq!((m.len(), m.unclaimed()), (0, 0));
        assert!(m.take_for(0, 10).is_empty());
        // It arrives claimed: held, not offered.
        assert!(m.insert(id, c.clone(), false));
        assert!(!m.insert(id, c.clone(), false));
        assert_eq!((m.len(), m.unclaimed()), (1, 0));
        m.unclaim(&id);
        assert_eq!(m.unclaimed(), 0);
        m.unclaim(&id);
        assert_eq!(m.take_for(0, 10), vec![c.clone()]);
        // Claims released before it arrives leave nothing behind.
        let (other, oc) = cmd(8);
        m.claim(&other);
        m.unclaim(&other);
        assert!(!m.entries.contains_key(&other));
        assert!(m.insert(other, oc, false));
        assert_eq!((m.len(), m.unclaimed()), (2, 2));
        // A decided command goes with its claims.
        m.claim(&id);
        m.remove(&id);
        m.unclaim(&id);
        assert_eq!((m.len(), m.unclaimed()), (1, 1));
        assert!(!m.entries.contains_key(&id));
    }
}
