//! Passing proposals on, so that a leader's equivocation is proven.
//!
//! A leader that signs two proposals for one round and sends each to part
//! of the validators is proven only by a replica that holds both signed
//! headers. A replica passes the proposal it holds for a round to each
//! validator whose vote of that round names another value: an honest such
//! voter holds the other proposal (it votes only for what it was proposed)
//! and forms the [`ProposalEquivocation`]. With an honest leader, honest
//! votes name its value or nil, and nothing is passed on.
//!
//! Votes often arrive after their height was decided, so the proposals of
//! the last [`SETTLED_HEIGHTS`] decided heights are kept for this: a vote
//! of such a height naming another value is answered with the round's
//! proposal (once per voter and round), and a proposal of such a height
//! that conflicts with the one kept is proven (once per round).

use super::{Outgoing, Outputs, Replica};
use crate::detector::{Offence, ProposalEquivocation};
use crate::message::{ConsensusMessage, Proposal};
use crate::vote::{Vote, VoteKind};
use hologram_lattice::NodeId;
use std::collections::{BTreeMap, HashSet};

/// How many decided heights below the next one keep their proposals.
const SETTLED_HEIGHTS: u64 = 8;

/// The proposals of a decided height, kept to pass on.
#[derive(Default)]
pub(super) struct Settled {
    proposals: BTreeMap<u32, Proposal>,
    /// (round, voter) pairs already sent the round's proposal.
    relayed: HashSet<(u32, NodeId)>,
    /// Rounds whose leader was proven to equivocate.
    proven: HashSet<u32>,
}

impl Replica {
    /// Passes the proposal this replica holds for `h`'s `round` to each
    /// voter (or `only` that one) whose vote counted in that round names
    /// another value.
    pub(super) fn relay_proposal(
        &self,
        h: u64,
        round: u32,
        only: Option<NodeId>,
        out: &mut Outputs,
    ) {
        let Some(st) = self.heights.get(&h) else {
            return;
        };
        let Some(p) = st.proposals.get(&round) else {
            return;
        };
        let sets = [VoteKind::Prevote, VoteKind::Precommit].map(|k| st.votes(k, round));
        let mut dissenters: Vec<NodeId> = sets
            .into_iter()
            .flatten()
            .flat_map(|set| set.votes())
            .filter(|v| v.value.is_some_and(|value| value != p.header.value))
            .map(|v| v.voter)
            .filter(|v| *v != self.me && only.is_none_or(|o| o == *v))
            .collect();
        dissenters.sort_unstable();
        dissenters.dedup();
        for voter in dissenters {
            let relay = ConsensusMessage::Proposal(Box::new(p.clone()));
            out.messages.push(Outgoing::To(voter, relay));
        }
    }

    /// Keeps the proposals of the decided height `h`.
    pub(super) fn settle(&mut self, h: u64, proposals: BTreeMap<u32, Proposal>) {
        if !proposals.is_empty() {
            let settled = Settled {
                proposals,
                ..Settled::default()
            };
            self.settled.insert(h, settled);
        }
        let keep_from = self.next.saturating_sub(SETTLED_HEIGHTS);
        self.settled = self.settled.split_off(&keep_from);
    }

    /// A vote `from` a validator of a decided height: passes on the
    /// round's proposal if the vote names another value.
    pub(super) fn settled_vote(&mut self, from: NodeId, vote: &Vote, out: &mut Outputs) {
        if !self.membership.is_member(&from) || vote.voter == self.me {
            return;
        }
        let Some(s) = self.settled.get_mut(&vote.slot.height) else {
            return;
        };
        let Some(p) = s.proposals.get(&vote.slot.round) else {
            return;
        };
        let other = vote.value.is_some_and(|v| v != p.header.value);
        if other && s.relayed.insert((vote.slot.round, vote.voter)) {
            let relay = ConsensusMessage::Proposal(Box::new(p.clone()));
            out.messages.push(Outgoing::To(vote.voter, relay));
        }
    }

    /// A proposal `from` a validator of a decided height: proves its
    /// leader's equivocation if it conflicts with the one kept.
    pub(super) fn settled_proposal(&mut self, from: NodeId, p: &Proposal, out: &mut Outputs) {
        if !self.membership.is_member(&from) {
            return;
        }
        let (h, round) = (p.header.height, p.header.round);
        let Some(s) = self.settled.get_mut(&h) else {
            return;
        };
        let Some(held) = s.proposals.get(&round) else {
            return;
        };
        if held.header == p.header || s.proven.contains(&round) {
            return;
        }
        let proof = ProposalEquivocation {
            first: held.header,
            second: p.header,
        };
        if let Ok(leader) = proof.verify() {
            s.proven.insert(round);
            let offence = Offence::ConflictingProposals(Box::new(proof));
            out.misbehaviour.push(self.detector.report(leader, offence));
        }
    }
}
