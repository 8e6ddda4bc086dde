//! The state of one height's Tendermint instance: round, step, valid value,
//! proposals and votes by round.

use super::record::Lock;
use super::rules;
use crate::certificate::Certificate;
use crate::message::Proposal;
use crate::vote::{Slot, Vote, VoteKind};
use hologram_lattice::NodeId;
use hologram_receipt::Receipt;
use std::collections::{BTreeMap, HashMap};

/// Where a round is (the paper's `step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    Propose,
    Prevote,
    Precommit,
}

/// The votes of one kind in one round: the first vote of each validator.
#[derive(Default)]
pub(crate) struct VoteSet {
    by_voter: BTreeMap<NodeId, Vote>,
    counts: HashMap<Option<Receipt>, usize>,
}

impl VoteSet {
    /// Adds a vote; false if the voter already voted in this set.
    pub(crate) fn add(&mut self, vote: Vote) -> bool {
        if self.by_voter.contains_key(&vote.voter) {
            return false;
        }
        *self.counts.entry(vote.value).or_default() += 1;
        self.by_voter.insert(vote.voter, vote);
        true
    }

    /// The vote `voter` has counted here, if any.
    pub(crate) fn get(&self, voter: &NodeId) -> Option<&Vote> {
        self.by_voter.get(voter)
    }

    pub(crate) fn total(&self) -> usize {
        self.by_voter.len()
    }

    pub(crate) fn count(&self, value: Option<&Receipt>) -> usize {
        self.counts.get(&value.copied()).copied().unwrap_or(0)
    }

    /// The value (not nil) with at least `quorum` votes, if any.
    pub(crate) fn quorum_value(&self, quorum: usize) -> Option<Receipt> {
        self.counts
            .iter()
            .find(|(v, c)| v.is_some() && **c >= quorum)
            .and_then(|(v, _)| *v)
    }

    pub(crate) fn votes(&self) -> impl Iterator<Item = &Vote> {
        self.by_voter.values()
    }
}

/// One height's instance.
pub(crate) struct HeightState {
    pub(crate) height: u64,
    pub(crate) round: u32,
    pub(crate) step: Step,
    /// The newest value with a polka, with its batch and the polka (the
    /// paper's `validValue` and `validRound`; the lock is in the record).
    pub(crate) valid: Option<Lock>,
    /// The first valid proposal of each round's leader.
    pub(crate) proposals: BTreeMap<u32, Proposal>,
    pub(crate) prevotes: BTreeMap<u32, VoteSet>,
    pub(crate) precommits: BTreeMap<u32, VoteSet>,
    /// The highest round each validator was seen in (round skipping).
    pub(crate) seen_round: HashMap<NodeId, u32>,
    /// "For the first time" flags of the current round.
    pub(crate) prevote_timer_set: bool,
    pub(crate) precommit_timer_set: bool,
    pub(crate) polka_handled: bool,
    /// When the height started here (the replica's clock, ms).
    pub(crate) started: u64,
}

impl HeightState {
    pub(crate) fn new(height: u64) -> Self {
        Self {
            height,
            round: 0,
            step: Step::Propose,
            valid: None,
            proposals: BTreeMap::new(),
            prevotes: BTreeMap::new(),
            precommits: BTreeMap::new(),
            seen_round: HashMap::new(),
            prevote_timer_set: false,
            precommit_timer_set: false,
            polka_handled: false,
            started: 0,
        }
    }

    pub(crate) fn votes_mut(&mut self, kind: VoteKind, round: u32) -> &mut VoteSet {
        match kind {
            VoteKind::Prevote => self.prevotes.entry(round).or_default(),
            VoteKind::Precommit => self.precommits.entry(round).or_default(),
        }
    }

    pub(crate) fn votes(&self, kind: VoteKind, round: u32) -> Option<&VoteSet> {
        match kind {
            VoteKind::Prevote => self.prevotes.get(&round),
            VoteKind::Precommit => self.precommits.get(&round),
        }
    }

    /// A certificate of `kind` for `value` in `round`, if a quorum voted so.
    pub(crate) fn certificate(
        &self,
        kind: VoteKind,
        round: u32,
        value: Receipt,
        quorum: usize,
    ) -> Option<Certificate> {
        let set = self.votes(kind, round)?;
        if set.count(Some(&value)) < quorum {
            return None;
        }
        let slot = Slot {
            height: self.height,
            round,
            kind,
        };
        Some(Certificate::from_votes(slot, value, set.votes()))
    }

    /// Records that `voter` was seen in `round`; returns the round that
    /// `skip` validators have reached (the `skip`-th highest), if above ours.
    pub(crate) fn note_round(&mut self, voter: NodeId, round: u32, skip: usize) -> Option<u32> {
        let seen = self.seen_round.entry(voter).or_insert(round);
        *seen = (*seen).max(round);
        if round <= self.round {
            return None;
        }
        rules::round_reached(self.seen_round.values().copied(), skip).filter(|r| *r > self.round)
    }

    /// A one-line summary for debugging.
    pub(crate) fn summary(&self) -> String {
        let r = self.round;
        let count = |kind| self.votes(kind, r).map_or(0, VoteSet::total);
        format!(
            "h{} r{} {:?} valid={:?} proposal={} prevotes={} precommits={}",
            self.height,
            r,
            self.step,
            self.valid.as_ref().map(Lock::round),
            self.proposals.contains_key(&r),
            count(VoteKind::Prevote),
            count(VoteKind::Precommit),
        )
    }

    /// Enters `round` at the propose step.
    pub(crate) fn enter_round(&mut self, round: u32) {
        self.round = round;
        self.step = Step::Propose;
        self.prevote_timer_set = false;
        self.precommit_timer_set = false;
        self.polka_handled = false;
    }
}
