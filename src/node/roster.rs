//! [`Roster`]: who this node's peers are, following the validator sets in
//! force rather than a fixed list.
//!
//! The peers of a node are the validators of its group's
//! [`Membership`]: those of the set in force and of every set a decided
//! change scheduled ([`Membership::members`]). The roster is what the
//! node's consensus gate ([`ValidatorsOnly`](super::service::ValidatorsOnly))
//! lets through, what its per-peer send queues are kept for, and whom it
//! asks for missed decisions; the node task moves it each time a decided
//! height changes the membership. So a validator whose removal is in force
//! is dropped (its frames refused, nothing more sent to it), and one whose
//! addition was decided is taken in, before its set is in force, so that it
//! can sync the heights before it.
//!
//! **Where a new validator listens.** The transport dials a peer only at
//! an address in its [`AddressBook`]: the addresses given at start
//! (`--peer`, `--peers`, `--genesis`), and, for a member the node has no
//! address for, the address of the member's own connection to this node
//! (its QUIC endpoint sends from the socket it listens on): a joining node
//! dials the members it was given, so each of them learns where it
//! listens once its addition is decided; and for a member still without
//! one, the address a peer knows (asked with
//! [`ControlRequest::Members`](super::ControlRequest::Members), one peer at
//! a time): two nodes that joined reach each other so. Only members are
//! learned: a key the decided sets do not name cannot put itself in the
//! book, and its frames never reach consensus; a told address is replaced
//! by the one the member's own connection comes from, and a wrong one only
//! fails meanwhile (a connection proves the key it reaches).

use crate::net::{AddressBook, QuicTransport};
use hologram_consensus::Membership;
use hologram_lattice::NodeId;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use tracing::info;

/// Who this node's peers are; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Roster {
    me: NodeId,
    /// The members of the sets in force and scheduled, this node among them
    /// if it is one.
    members: RwLock<Arc<Vec<NodeId>>>,
    book: AddressBook,
    /// The peers whose address in the book a peer told (not proven by a
    /// connection of theirs): replaced by the address of their own
    /// connection, if it differs.
    told: Mutex<HashSet<NodeId>>,
}

impl Roster {
    /// A roster of `members` (the genesis set, or the sets the node
    /// recovered), dialing peers where `book` says.
    pub(crate) fn new(me: NodeId, members: Vec<NodeId>, book: AddressBook) -> Self {
        Self {
            me,
            members: RwLock::new(Arc::new(members)),
            book,
            told: Mutex::default(),
        }
    }

    fn members(&self) -> Arc<Vec<NodeId>> {
        Arc::clone(&self.members.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether `id` is a member (its consensus frames are taken).
    pub(crate) fn allows(&self, id: &NodeId) -> bool {
        self.members().contains(id)
    }

    /// The members other than this node.
    pub(crate) fn peers(&self) -> Vec<NodeId> {
        (self.members().iter())
            .filter(|id| **id != self.me)
            .copied()
            .collect()
    }

    /// Moves to `membership`'s members; returns the peers if they changed.
    pub(crate) fn follow(&self, membership: &Membership) -> Option<Vec<NodeId>> {
        let members = membership.members();
        {
            let mut held = self.members.write().unwrap_or_else(PoisonError::into_inner);
            if **held == members {
                return None;
            }
            let added: Vec<&NodeId> = members.iter().filter(|id| !held.contains(id)).collect();
            let removed: Vec<&NodeId> = held.iter().filter(|id| !members.contains(id)).collect();
            info!(
                ?added,
                ?removed,
                version = membership.version(),
                height = membership.next_height(),
                validators = membership.current().len(),
                "the node's peers follow the validator sets"
            );
            *held = Arc::new(members);
        }
        Some(self.peers())
    }

    /// Where the members listen, as far as this node knows (an unspecified
    /// address, such as this node's own `0.0.0.0`, is left out).
    pub(crate) fn addresses(&self) -> Vec<(NodeId, SocketAddr)> {
        (self.members().iter())
            .filter_map(|id| Some((*id, self.book.get(id)?)))
            .filter(|(_, addr)| !addr.ip().is_unspecified())
            .collect()
    }

    /// Whether a peer has no address.
    pub(crate) fn missing_addresses(&self) -> bool {
        self.peers().iter().any(|id| self.book.get(id).is_none())
    }

    /// Records the addresses a peer told (`given`) of the peers this node
    /// has none for; any other is ignored. Returns how many were.
    pub(crate) fn learn_given(&self, from: NodeId, given: &[(NodeId, SocketAddr)]) -> usize {
        let peers = self.peers();
        let mut learned = 0;
        for (peer, addr) in given {
            if !peers.contains(peer) || self.book.get(peer).is_some() {
                continue;
            }
            if addr.ip().is_unspecified() {
                continue;
            }
            info!(%peer, %addr, told_by = %from, "learned where a validator listens");
            self.book.insert(*peer, *addr);
            self.told
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(*peer);
            learned += 1;
        }
        learned
    }

    /// Records, for each peer without an address (or with one a peer told
    /// that its own connection contradicts), the address of its live
    /// connection to this node (if it has one); returns how many were.
    pub(crate) fn learn_addresses(&self, transport: &QuicTransport) -> usize {
        let mut learned = 0;
        let mut told = self.told.lock().unwrap_or_else(PoisonError::into_inner);
        for peer in self.peers() {
            let known = self.book.get(&peer);
            if known.is_some() && !told.contains(&peer) {
                continue;
            }
            let Some(addr) = transport.inbound_address(&peer) else {
                continue;
            };
            told.remove(&peer);
            if Some(addr) != known {
                info!(%peer, %addr, "learned where a new validator listens");
                self.book.insert(peer, addr);
                learned += 1;
            }
        }
        learned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_consensus::{SetChange, SetOp, ValidatorSet};
    use hologram_receipt::KeyPair;

    #[test]
    fn the_roster_follows_additions_at_once_and_removals_once_in_force() {
        let keys: Vec<KeyPair> = (1..=5u8).map(|i| KeyPair::from_seed([i; 32])).collect();
        let ids: Vec<NodeId> = keys.iter().map(KeyPair::node_id).collect();
        let set = ValidatorSet::new(ids[..4].to_vec()).unwrap();
        let mut membership = Membership::new(set.clone(), 2);
        let roster = Roster::new(ids[0], ids[..4].to_vec(), AddressBook::new());
        assert_eq!(roster.follow(&membership), None, "the same members");
        assert!(!roster.allows(&ids[4]));
        // Height 0 decides the addition of a fifth: taken in at once.
        let op = SetOp::Add(ids[4]);
        let approvals = (keys[..3].iter())
            .map(|k| SetChange::approve(k, 0, &set, &op))
            .collect();
        let change = SetChange::new(0, op, approvals);
        let d = decided(&keys[..4], 0, Some(change), &set);
        membership.apply(&d).unwrap();
        let peers = roster.follow(&membership).expect("changed");
        assert_eq!(peers, ids[1..5].to_vec());
        assert!(roster.allows(&ids[4]));
        // Then a removal of the second: still a peer until it is in force.
        let five = membership.newest().clone();
        let op = SetOp::Remove(ids[1]);
        let approvals = (keys[..4].iter())
            .map(|k| SetChange::approve(k, 1, &five, &op))
            .collect();
        let change = SetChange::new(1, op, approvals);
        let d = decided(&keys[..4], 1, Some(change), &set);
        membership.apply(&d).unwrap();
        assert_eq!(roster.follow(&membership), None);
        assert!(roster.allows(&ids[1]));
        for h in 2..4 {
            let under = membership.at(h).unwrap().clone();
            let signers: Vec<KeyPair> = (keys.iter())
                .filter(|k| under.contains(&k.node_id()))
                .cloned()
                .collect();
            membership
                .apply(&decided(&signers, h, None, &under))
                .unwrap();
            roster.follow(&membership);
        }
        assert!(!roster.allows(&ids[1]), "removed once in force");
        assert_eq!(roster.peers(), vec![ids[2], ids[3], ids[4]]);
    }

    #[test]
    fn a_told_address_is_taken_only_for_a_member_without_one() {
        let id = |i: u8| NodeId::from_bytes([i; 32]);
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let book = AddressBook::new();
        book.insert(id(2), addr(2));
        let roster = Roster::new(id(1), vec![id(1), id(2), id(3), id(4)], book.clone());
        assert!(roster.missing_addresses());
        let told = [
            (id(2), addr(20)),                     // known already
            (id(3), addr(3)),                      // a member without one
            (id(4), "0.0.0.0:4".parse().unwrap()), // unspecified
            (id(9), addr(9)),                      // not a member
        ];
        assert_eq!(roster.learn_given(id(2), &told), 1);
        assert_eq!(book.get(&id(2)), Some(addr(2)));
        assert_eq!(book.get(&id(3)), Some(addr(3)));
        assert_eq!((book.get(&id(4)), book.get(&id(9))), (None, None));
        assert!(roster.missing_addresses());
        assert_eq!(roster.addresses(), vec![(id(2), addr(2)), (id(3), addr(3))]);
    }

    /// A decision of `height` certified by all of `keys`, its batch naming `set`.
    fn decided(
        keys: &[KeyPair],
        height: u64,
        change: Option<SetChange>,
        set: &ValidatorSet,
    ) -> hologram_consensus::Decision {
        use hologram_consensus::{Batch, Certificate, Slot, Vote, VoteKind};
        let batch = Batch::new(vec![])
            .unwrap()
            .with_set(set.fingerprint(), change);
        let slot = Slot {
            height,
            round: 0,
            kind: VoteKind::Precommit,
        };
        let signatures = (keys.iter())
            .map(|k| {
                let v = Vote::sign(k, slot, Some(batch.receipt()));
                (v.voter, v.signature)
            })
            .collect();
        hologram_consensus::Decision {
            certificate: Certificate {
                slot,
                value: batch.receipt(),
                signatures,
            },
            batch,
        }
    }
}
