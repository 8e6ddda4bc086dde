//! Admitting votes: what is refused before a signature is verified (the
//! rules are listed on [`VoteChecks`], which counts them). The state is kept
//! per height in the window and dropped when the height is delivered;
//! failed-verification entries older than an interval are dropped when their
//! map grows, so its size is bounded by validators × slots touched in one
//! interval.

use crate::vote::{Slot, Vote};
use hologram_lattice::NodeId;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Failed-verification entries kept per height before expired ones are swept.
const SWEEP_AT: usize = 1024;

/// What a replica did with the votes it received (of heights in its window):
/// how many signatures it verified and how many votes it refused without
/// verifying. Read it with [`Replica::vote_checks`](super::Replica::vote_checks).
///
/// Verifying a vote's signature is the costly step of handling it (~50 µs),
/// and anyone can send votes. A replica therefore refuses, *before*
/// verifying, every vote of a height in its window that can add nothing:
///
/// - a vote whose sender or voter is not a validator;
/// - an exact copy of the vote its voter already has counted in the slot (a
///   replay: [`duplicates`](Self::duplicates));
/// - a vote that conflicts with the counted one when that voter's
///   equivocation in the slot was already proven: one conflicting vote per
///   voter and slot is verified, so an
///   [`EquivocationProof`](crate::EquivocationProof) is still produced, and
///   the rest are refused;
/// - a vote of a slot in which its sender sent a vote that failed
///   verification less than a resend interval ago (so a forged vote, such as
///   a real one moved to another slot, costs at most one verification per
///   sender, slot and interval);
/// - a vote of a round more than 64 beyond the height's current round: such
///   votes are not stored and only serve to join a later round, so at most
///   one of them per sender and height is verified per resend interval.
///
/// Votes of heights outside the window are never verified (they are
/// answered with a decision or a catch-up request). The per-sender rules
/// assume the transport authenticates the sender: over one that does not, a
/// peer claiming a validator's id can delay that validator's vote in a slot
/// by an interval with a forged one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VoteChecks {
    /// Vote signatures verified (valid or not).
    pub verified: u64,
    /// Of those, the ones that did not verify.
    pub invalid: u64,
    /// Exact copies of a vote already counted, dropped unverified.
    pub duplicates: u64,
    /// Other votes refused unverified (the rules above).
    pub refused: u64,
}

/// Whether to verify a vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Verify its signature, then handle it.
    Verify,
    /// Drop it unverified.
    Drop,
}

/// What is remembered of one height's votes.
#[derive(Default)]
struct HeightGate {
    /// `(voter, slot)` whose equivocation was proven.
    proven: HashSet<(NodeId, Slot)>,
    /// `(sender, slot)` → when a vote the sender sent for it failed.
    failed: HashMap<(NodeId, Slot), u64>,
    /// sender → when one of its far-round votes was last verified.
    far: HashMap<NodeId, u64>,
}

/// The vote gate of a replica; see the [module docs](self).
#[derive(Default)]
pub(crate) struct VoteGate {
    heights: BTreeMap<u64, HeightGate>,
    checks: VoteChecks,
}

impl VoteGate {
    /// Decides whether `from`'s `vote` is verified. `counted` is the vote its
    /// voter has counted in the slot (`None` if none, or if the slot is far);
    /// `far` says the round is beyond the stored window.
    pub(crate) fn admit(
        &mut self,
        now: u64,
        interval_ms: u64,
        from: NodeId,
        vote: &Vote,
        counted: Option<&Vote>,
        far: bool,
    ) -> Admission {
        let recent = |at: &u64| now < at.saturating_add(interval_ms) && now >= *at;
        if let Some(first) = counted {
            if first == vote {
                self.checks.duplicates += 1;
                return Admission::Drop;
            }
        }
        let gate = self.heights.entry(vote.slot.height).or_default();
        let refuse = (counted.is_some() && gate.proven.contains(&(vote.voter, vote.slot)))
            || gate.failed.get(&(from, vote.slot)).is_some_and(recent)
            || (far && gate.far.get(&from).is_some_and(recent));
        if refuse {
            self.checks.refused += 1;
            return Admission::Drop;
        }
        if far {
            gate.far.insert(from, now);
        }
        self.checks.verified += 1;
        Admission::Verify
    }

    /// Counts a vote refused for a reason found outside the gate (its sender
    /// or voter is not a validator).
    pub(crate) fn refuse(&mut self) {
        self.checks.refused += 1;
    }

    /// `from`'s `vote`, admitted, did not verify.
    pub(crate) fn failed(&mut self, now: u64, interval_ms: u64, from: NodeId, vote: &Vote) {
        self.checks.invalid += 1;
        let gate = self.heights.entry(vote.slot.height).or_default();
        if gate.failed.len() >= SWEEP_AT {
            gate.failed
                .retain(|_, at| now < at.saturating_add(interval_ms) && now >= *at);
        }
        gate.failed.insert((from, vote.slot), now);
    }

    /// `vote`, verified, proved its voter's equivocation in its slot.
    pub(crate) fn proven(&mut self, vote: &Vote) {
        self.heights
            .entry(vote.slot.height)
            .or_default()
            .proven
            .insert((vote.voter, vote.slot));
    }

    /// Forgets the heights below `next` (delivered).
    pub(crate) fn prune_below(&mut self, next: u64) {
        self.heights = self.heights.split_off(&next);
    }

    /// The counts so far.
    pub(crate) fn checks(&self) -> VoteChecks {
        self.checks
    }
}
