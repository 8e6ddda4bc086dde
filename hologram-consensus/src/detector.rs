//! The `ByzantineDetector`: the chapter's checks, in its order, on every vote
//! and proposal a replica receives.

use crate::vote::{SignedHeader, Slot, Vote, VoteKind};
use crate::{ConsensusError, ValidatorSet};
use hologram_lattice::NodeId;
use hologram_receipt::Receipt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The most equivocation proofs a detector keeps.
pub const MAX_PROOFS: usize = 1024;

/// Two different signed votes of one validator for one slot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EquivocationProof {
    /// The first vote seen.
    pub first: Vote,
    /// The conflicting one.
    pub second: Vote,
}

impl EquivocationProof {
    /// Checks the proof with nothing but the votes: one voter, one slot,
    /// different values, both signatures valid. Returns the equivocator.
    ///
    /// ```
    /// use hologram_consensus::{EquivocationProof, Slot, Vote, VoteKind};
    /// use hologram_receipt::{KeyPair, Receipt};
    /// let keys = KeyPair::from_seed([1; 32]);
    /// let slot = Slot { height: 1, round: 0, kind: VoteKind::Prevote };
    /// let proof = EquivocationProof {
    ///     first: Vote::sign(&keys, slot, Some(Receipt::from_bytes(b"a"))),
    ///     second: Vote::sign(&keys, slot, Some(Receipt::from_bytes(b"b"))),
    /// };
    /// assert_eq!(proof.verify().unwrap(), keys.node_id());
    /// ```
    pub fn verify(&self) -> Result<NodeId, ConsensusError> {
        let (a, b) = (&self.first, &self.second);
        if a.voter != b.voter || a.slot != b.slot || a.value == b.value {
            return Err(ConsensusError::NotEquivocation(format!(
                "not two different votes of one validator for one slot ({} in {:?}, {} in {:?})",
                a.voter, a.slot, b.voter, b.slot
            )));
        }
        a.verify_signature()?;
        b.verify_signature()?;
        Ok(a.voter)
    }
}

/// Two different signed proposals of one leader for one height and round.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProposalEquivocation {
    /// The first header seen.
    pub first: SignedHeader,
    /// The conflicting one.
    pub second: SignedHeader,
}

impl ProposalEquivocation {
    /// Checks the proof as [`EquivocationProof::verify`] does; returns the leader.
    pub fn verify(&self) -> Result<NodeId, ConsensusError> {
        let (a, b) = (&self.first, &self.second);
        if a.proposer != b.proposer || (a.height, a.round) != (b.height, b.round) || a == b {
            return Err(ConsensusError::NotEquivocation(
                "not two different headers of one leader for one round".into(),
            ));
        }
        a.verify_signature()?;
        b.verify_signature()?;
        Ok(a.proposer)
    }
}

/// What a validator (or sender) did wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Offence {
    /// It sent a vote or proposal whose signature does not verify.
    InvalidSignature(String),
    /// It is not a validator but sent votes or proposals.
    NotAValidator,
    /// It sent a proposal or decision whose receipt, batch, leader or proof
    /// of lock does not check out.
    InvalidReceipt(String),
    /// It signed two different votes for one slot.
    Equivocation(Box<EquivocationProof>),
    /// It signed two different proposals for one round.
    ConflictingProposals(Box<ProposalEquivocation>),
    /// It signed a receipt claiming a budget above 47.
    ImpossibleBudget(u8),
    /// Its behaviour scored above the anomaly threshold.
    Anomalous {
        /// The score.
        score: f64,
    },
}

/// A detection: who, and what they did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Misbehaviour {
    /// The node blamed.
    pub node: NodeId,
    /// The offence.
    pub offence: Offence,
}

/// What the detector counted of one validator's votes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VoterStats {
    /// Valid votes seen.
    pub votes: u64,
    /// Value votes in a decided round that named the decided value.
    pub agreements: u64,
    /// Value votes in a decided round that named another value.
    pub dissents: u64,
}

/// Scores a validator's statistics: `None` when there is too little data.
pub trait AnomalyScorer: Send + Sync {
    /// The anomaly score (higher is more suspicious).
    fn score(&self, stats: &VoterStats) -> Option<f64>;
}

/// The default scorer: dissents / (agreements + dissents) once at least
/// `min_samples` value votes in decided rounds were seen. Honest validators
/// almost never vote for a value that loses in the round that decides, since
/// a round has one leader.
#[derive(Debug, Clone, Copy)]
pub struct DissentScorer {
    /// Decided-round value votes needed before scoring.
    pub min_samples: u64,
}

impl Default for DissentScorer {
    fn default() -> Self {
        Self { min_samples: 8 }
    }
}

impl AnomalyScorer for DissentScorer {
    fn score(&self, s: &VoterStats) -> Option<f64> {
        let n = s.agreements + s.dissents;
        (n >= self.min_samples.max(1)).then(|| s.dissents as f64 / n as f64)
    }
}

/// The chapter's `ByzantineDetector`.
///
/// 1. **Invalid receipt or signature**: the signature does not verify (the
///    *sender* is blamed: anyone can put another validator's id on a forged
///    vote), or the signer is not a validator.
/// 2. **Equivocation**: a validator signed two different votes for one
///    [`Slot`] (or two different proposals for one height and round). The
///    result is an [`EquivocationProof`] that any third party verifies with
///    the validator's [`NodeId`] alone.
/// 3. **Impossible budget claim**: a signed receipt claims a budget above 47
///    (SPEC §5).
/// 4. **Statistical anomaly**: a pluggable [`AnomalyScorer`] scores each
///    validator's [`VoterStats`]; above the threshold it is reported. The
///    default, [`DissentScorer`], is the share of a validator's value votes
///    that named a value other than the one decided in that round.
///
/// Detected validators are listed ([`ByzantineDetector::detected`]) and each
/// detection is returned as a [`Misbehaviour`], so routing and topology can
/// shun them. Memory is bounded: vote history is pruned below the heights in
/// flight, and proofs are kept for the latest [`MAX_PROOFS`] slots.
pub struct ByzantineDetector {
    validators: ValidatorSet,
    history: BTreeMap<Slot, HashMap<NodeId, Vote>>,
    headers: BTreeMap<(u64, u32), HashMap<NodeId, SignedHeader>>,
    stats: HashMap<NodeId, VoterStats>,
    scorer: Box<dyn AnomalyScorer>,
    fault_threshold: f64,
    detected: BTreeMap<NodeId, usize>,
    anomalous: BTreeSet<NodeId>,
    proofs: BTreeMap<(Slot, NodeId), EquivocationProof>,
    /// The equivocators already warned about (validators only: one warning
    /// each, whatever they go on signing).
    warned: BTreeSet<NodeId>,
    /// Whose detector this is (named in its warnings).
    observer: Option<NodeId>,
}

impl core::fmt::Debug for ByzantineDetector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ByzantineDetector")
            .field("detected", &self.detected)
            .field("proofs", &self.proofs.len())
            .finish_non_exhaustive()
    }
}

impl ByzantineDetector {
    /// The validators now (a replica's sets in force and scheduled, after
    /// a change).
    pub(crate) fn set_validators(&mut self, members: &[NodeId]) {
        if self.validators.validators() != members {
            if let Ok(set) = ValidatorSet::new(members.to_vec()) {
                self.validators = set;
            }
        }
    }

    /// A detector for `validators` with the [`DissentScorer`] and threshold 0.5.
    pub fn new(validators: ValidatorSet) -> Self {
        Self::with_scorer(validators, Box::new(DissentScorer::default()), 0.5)
    }

    /// A detector with its own anomaly scorer and threshold.
    pub fn with_scorer(
        validators: ValidatorSet,
        scorer: Box<dyn AnomalyScorer>,
        fault_threshold: f64,
    ) -> Self {
        Self {
            validators,
            history: BTreeMap::new(),
            headers: BTreeMap::new(),
            stats: HashMap::new(),
            scorer,
            fault_threshold,
            detected: BTreeMap::new(),
            anomalous: BTreeSet::new(),
            proofs: BTreeMap::new(),
            warned: BTreeSet::new(),
            observer: None,
        }
    }

    /// Names the replica this detector serves in its log events.
    pub fn observed_by(mut self, observer: NodeId) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Checks a vote `from` sent, in the chapter's order. `Ok` means the vote
    /// is valid and the first of its voter in its slot (or an exact repeat):
    /// count it; `Ok(Some(_))` reports a statistical anomaly of a valid vote.
    /// `Err` names the offender; do not count the vote.
    pub fn check_vote(
        &mut self,
        from: NodeId,
        vote: &Vote,
    ) -> Result<Option<Misbehaviour>, Misbehaviour> {
        // 1. Invalid receipt or signature.
        if !self.validators.contains(&vote.voter) {
            return Err(self.report(from, Offence::NotAValidator));
        }
        // An exact repeat of a vote already checked costs no verification.
        let repeat = self
            .history
            .get(&vote.slot)
            .and_then(|votes| votes.get(&vote.voter))
            .is_some_and(|first| first == vote);
        if repeat {
            return Ok(None);
        }
        if let Err(e) = vote.verify_signature() {
            return Err(self.report(from, Offence::InvalidSignature(e.to_string())));
        }
        self.check_verified_vote(vote)
    }

    /// Checks 2 to 4 for a vote whose signature was already verified (for
    /// example as part of a certificate).
    pub fn check_verified_vote(
        &mut self,
        vote: &Vote,
    ) -> Result<Option<Misbehaviour>, Misbehaviour> {
        if !self.validators.contains(&vote.voter) {
            return Err(self.report(vote.voter, Offence::NotAValidator));
        }
        // 2. Equivocation.
        let slot_votes = self.history.entry(vote.slot).or_default();
        if let Some(first) = slot_votes.get(&vote.voter) {
            if first == vote {
                return Ok(None);
            }
            let proof = EquivocationProof {
                first: *first,
                second: *vote,
            };
            self.proofs
                .entry((vote.slot, vote.voter))
                .or_insert_with(|| proof.clone());
            while self.proofs.len() > MAX_PROOFS {
                self.proofs.pop_first();
            }
            return Err(self.report(vote.voter, Offence::Equivocation(Box::new(proof))));
        }
        // Recorded before the budget check: equivocation is about what was signed.
        slot_votes.insert(vote.voter, *vote);
        // 3. Impossible budget.
        if let Some(r) = &vote.value {
            if r.budget.is_impossible_claim() {
                return Err(self.report(vote.voter, Offence::ImpossibleBudget(r.budget.get())));
            }
        }
        let stats = self.stats.entry(vote.voter).or_default();
        stats.votes += 1;
        // 4. Statistical anomaly.
        Ok(self.check_anomaly(vote.voter))
    }

    /// The chapter's `detect_byzantine_node`: whether [`check_vote`](Self::check_vote)
    /// finds `from`'s vote Byzantine (including an anomaly report).
    pub fn detect_byzantine_node(&mut self, from: NodeId, vote: &Vote) -> bool {
        !matches!(self.check_vote(from, vote), Ok(None))
    }

    /// Checks a proposal header `from` sent: signature, then equivocation,
    /// then budget. (Whether the proposer leads the round is the replica's
    /// check.)
    pub fn check_proposal(
        &mut self,
        from: NodeId,
        header: &SignedHeader,
    ) -> Result<(), Misbehaviour> {
        if !self.validators.contains(&header.proposer) {
            return Err(self.report(from, Offence::NotAValidator));
        }
        if let Err(e) = header.verify_signature() {
            return Err(self.report(from, Offence::InvalidSignature(e.to_string())));
        }
        let seen = self
            .headers
            .entry((header.height, header.round))
            .or_default();
        if let Some(first) = seen.get(&header.proposer) {
            if first == header {
                return Ok(());
            }
            let proof = ProposalEquivocation {
                first: *first,
                second: *header,
            };
            return Err(self.report(
                header.proposer,
                Offence::ConflictingProposals(Box::new(proof)),
            ));
        }
        seen.insert(header.proposer, *header);
        if header.value.budget.is_impossible_claim() {
            return Err(self.report(
                header.proposer,
                Offence::ImpossibleBudget(header.value.budget.get()),
            ));
        }
        Ok(())
    }

    /// Tells the detector that `value` was decided in `round` of `height`:
    /// value votes of that round count as agreements or dissents.
    pub fn observe_decision(&mut self, height: u64, round: u32, value: &Receipt) {
        for kind in [VoteKind::Prevote, VoteKind::Precommit] {
            let slot = Slot {
                height,
                round,
                kind,
            };
            for vote in self
                .history
                .get(&slot)
                .into_iter()
                .flat_map(HashMap::values)
            {
                let Some(v) = &vote.value else { continue };
                let stats = self.stats.entry(vote.voter).or_default();
                if v == value {
                    stats.agreements += 1;
                } else {
                    stats.dissents += 1;
                }
            }
        }
        let voters: Vec<NodeId> = self.validators.validators().to_vec();
        for voter in voters {
            self.check_anomaly(voter);
        }
    }

    /// Forgets votes and proposals below `height` (keeps statistics and proofs).
    pub fn prune_below(&mut self, height: u64) {
        let first = Slot {
            height,
            round: 0,
            kind: VoteKind::Prevote,
        };
        self.history = self.history.split_off(&first);
        self.headers = self.headers.split_off(&(height, 0));
    }

    /// Every validator (or sender) detected so far, with how many offences.
    pub fn detected(&self) -> &BTreeMap<NodeId, usize> {
        &self.detected
    }

    /// Whether `node` was detected.
    pub fn is_detected(&self, node: &NodeId) -> bool {
        self.detected.contains_key(node)
    }

    /// The equivocation proofs found: one per equivocating validator and
    /// slot, the most recent [`MAX_PROOFS`] slots.
    pub fn proofs(&self) -> impl ExactSizeIterator<Item = &EquivocationProof> + '_ {
        self.proofs.values()
    }

    /// The proof of `voter`'s equivocation in `slot`, if one was found.
    pub fn proof(&self, voter: &NodeId, slot: &Slot) -> Option<&EquivocationProof> {
        self.proofs.get(&(*slot, *voter))
    }

    /// The statistics of `node`.
    pub fn stats(&self, node: &NodeId) -> VoterStats {
        self.stats.get(node).copied().unwrap_or_default()
    }

    /// Counts an offence, and warns once per validator proven to equivocate
    /// (with the proof: the two conflicting signed votes or headers); every
    /// later proof of the same validator is a debug event.
    fn observe(&mut self, node: NodeId, offence: &Offence) {
        let (first, second) = match offence {
            Offence::Equivocation(p) => (format!("{:?}", p.first), format!("{:?}", p.second)),
            Offence::ConflictingProposals(p) => {
                (format!("{:?}", p.first), format!("{:?}", p.second))
            }
            Offence::Anomalous { score } => {
                tracing::info!(validator = %node, score, "validator's votes scored anomalous");
                return;
            }
            _ => return,
        };
        ::metrics::counter!("hologram_consensus_equivocations_total").increment(1);
        let kind = crate::telemetry::offence_label(offence);
        if self.validators.contains(&node) && self.warned.insert(node) {
            let me = self.observer.map(tracing::field::display);
            tracing::warn!(offender = %node, me, kind, first, second, "validator proven to equivocate");
        } else {
            tracing::debug!(offender = %node, kind, "another equivocation proof");
        }
    }

    /// Reports `voter` once when its score first exceeds the threshold.
    fn check_anomaly(&mut self, voter: NodeId) -> Option<Misbehaviour> {
        if self.anomalous.contains(&voter) {
            return None;
        }
        let score = self.scorer.score(&self.stats(&voter))?;
        if score > self.fault_threshold {
            self.anomalous.insert(voter);
            Some(self.report(voter, Offence::Anomalous { score }))
        } else {
            None
        }
    }

    pub(crate) fn report(&mut self, node: NodeId, offence: Offence) -> Misbehaviour {
        self.observe(node, &offence);
        if self.validators.contains(&node) || self.detected.len() < 4 * MAX_PROOFS {
            *self.detected.entry(node).or_default() += 1;
        }
        Misbehaviour { node, offence }
    }
}
