//! The chapter's `ReceiptConsensus`: one proposer drives heights through a
//! set of [`Validator`]s.

use crate::batch::Batch;
use crate::certificate::Certificate;
use crate::detector::{ByzantineDetector, Misbehaviour};
use crate::message::Decision;
use crate::replica::{rules, Lock};
use crate::validator::Validator;
use crate::vote::{Slot, Vote, VoteKind};
use crate::{ConsensusError, ValidatorSet};
use futures::future::join_all;
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Receipt};
use std::collections::HashSet;

/// What [`ReceiptConsensus::achieve_consensus`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsensusResult {
    /// The value with this receipt was committed (certified by `2f + 1`
    /// precommits) at the height that was current.
    Committed(Receipt),
    /// A phase gathered too few valid votes: nothing was committed in this
    /// round. `refusals` says what each validator that did not count
    /// answered.
    InsufficientVotes {
        /// The phase that fell short (prevotes or precommits).
        phase: VoteKind,
        /// The round tried.
        round: u32,
        /// Valid matching votes gathered.
        got: usize,
        /// The quorum needed.
        needed: usize,
        /// Why each other validator's answer did not count.
        refusals: Vec<(NodeId, String)>,
    },
    /// Nothing could be proposed or the votes did not form a certificate,
    /// with the reason.
    Failed(String),
}

/// A proposer driving heights through validators.
///
/// Its three phases are the chapter's, on the types the [`Replica`](crate::Replica)
/// uses, so it is the same protocol in a request/response form rather than a
/// second one:
///
/// 1. **Proposal.** The proposer signs a [`SignedHeader`](crate::SignedHeader) for the batch's
///    receipt in the next round of the height that it leads (leaders rotate
///    as `validators[(height + round) mod n]`, so it uses every `n`-th round)
///    and asks every validator to [`prepare_vote`](Validator::prepare_vote).
/// 2. **Receipt validation.** Each answer is checked — the vote is from the
///    validator asked, for this slot and value, and passes the
///    [`ByzantineDetector`] (signature, equivocation, impossible budget,
///    anomaly). Fewer than `2f + 1` valid prevotes:
///    [`ConsensusResult::InsufficientVotes`]. Otherwise they form a polka.
/// 3. **Commit on a threshold.** Validators [`commit`](Validator::commit) on
///    the polka (locking on the value) and return precommits, checked the
///    same way; `2f + 1` form the commit [`Certificate`], which every
///    validator is given ([`finalize`](Validator::finalize)):
///    [`ConsensusResult::Committed`] with the receipt.
///
/// Safety does not rest on the proposer: validators enforce Tendermint's
/// rules themselves ([`LocalValidator`](crate::LocalValidator)), so a
/// Byzantine proposer cannot get two values certified at one height, and a
/// value without `2f + 1` precommits is never committed. If a round reached
/// a polka but not a commit, the next attempt at that height re-proposes the
/// polka's value with it as proof of lock (that value may already be locked
/// by up to `2f + 1` validators); [`achieve_consensus`](ReceiptConsensus::achieve_consensus)
/// then commits that value, and its result's receipt says so: the caller
/// proposes its own batch again.
///
/// A proposer that fails is replaced by starting another (with another
/// key) at the same height: before its first attempt, and after any attempt
/// that did not commit, it asks every validator's
/// [`status`](Validator::status) ([`ReceiptConsensus::catch_up`]) and
/// adopts a verified decision of the height, re-proposes the lock with the
/// newest verified polka, and skips the rounds validators already voted in.
///
/// A decision made here is a [`Decision`] like any other: a
/// [`ReplicatedStateMachine`](crate::ReplicatedStateMachine), a
/// [`DurableLog`](crate::DurableLog) or a replica of the same validator set
/// accepts it.
pub struct ReceiptConsensus<V: Validator> {
    keys: KeyPair,
    validators: Vec<V>,
    set: ValidatorSet,
    detector: ByzantineDetector,
    misbehaviour: Vec<Misbehaviour>,
    height: u64,
    round: u32,
    /// The value of this height that reached a polka, with it (the
    /// replica's valid value).
    valid: Option<Lock>,
    decisions: Vec<Decision>,
    /// Whether the validators' state of this height is known (no attempt
    /// failed since the last [`catch_up`](Self::catch_up)).
    synced: bool,
}

impl<V: Validator> core::fmt::Debug for ReceiptConsensus<V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReceiptConsensus")
            .field("proposer", &self.keys.node_id())
            .field("height", &self.height)
            .field("round", &self.round)
            .finish_non_exhaustive()
    }
}

impl<V: Validator> ReceiptConsensus<V> {
    /// A proposer with `keys` (a member of `set`) asking `validators` (each
    /// a distinct member of `set`), starting at height `height`.
    pub fn new(
        keys: KeyPair,
        set: ValidatorSet,
        validators: Vec<V>,
        height: u64,
    ) -> Result<Self, ConsensusError> {
        set.check_member(&keys.node_id())?;
        let mut seen = HashSet::new();
        for v in &validators {
            set.check_member(&v.id())?;
            if !seen.insert(v.id()) {
                return Err(ConsensusError::InvalidValidatorSet(format!(
                    "validator {} given twice",
                    v.id()
                )));
            }
        }
        Ok(Self {
            keys,
            validators,
            detector: ByzantineDetector::new(set.clone()),
            set,
            misbehaviour: Vec::new(),
            height,
            round: 0,
            valid: None,
            decisions: Vec::new(),
            synced: false,
        })
    }

    /// The votes needed in each phase: `2f + 1` of the validator set.
    pub fn threshold(&self) -> usize {
        self.set.quorum()
    }

    /// The height the next value will be committed at.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The decisions made so far, in height order.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// The detector every vote went through.
    pub fn detector(&self) -> &ByzantineDetector {
        &self.detector
    }

    /// Misbehaviour found in the validators' answers.
    pub fn misbehaviour(&self) -> &[Misbehaviour] {
        &self.misbehaviour
    }

    /// The next round of this height that this proposer leads.
    fn next_own_round(&self) -> Option<u32> {
        let me = self.keys.node_id();
        (0..self.set.len() as u32)
            .map(|i| self.round.saturating_add(i))
            .find(|r| self.set.leader(self.height, *r) == me)
    }

    /// Runs one round of the three phases for `batch` (or for the value of
    /// an earlier polka at this height, see [`ReceiptConsensus`]).
    pub async fn achieve_consensus(&mut self, batch: Batch) -> ConsensusResult {
        if let Err(e) = batch.check_bounds() {
            return ConsensusResult::Failed(e.to_string());
        }
        if !self.synced {
            self.catch_up().await;
        }
        // Until it commits, the next attempt asks the validators first.
        self.synced = false;
        let Some(round) = self.next_own_round() else {
            return ConsensusResult::Failed("no round left that this proposer leads".into());
        };
        self.round = round.saturating_add(1);
        let proposal = rules::proposal(&self.keys, self.height, round, self.valid.take(), || batch);
        let value = proposal.header.value;
        // Until a new polka replaces it, the old one still binds this height.
        self.valid = proposal.proof_of_lock.clone().map(|proof| Lock {
            batch: proposal.batch.clone(),
            proof,
        });

        // Phases 1 and 2: prevotes, each checked.
        let slot = Slot {
            height: self.height,
            round,
            kind: VoteKind::Prevote,
        };
        let answers = join_all(self.validators.iter().map(|v| v.prepare_vote(&proposal))).await;
        let (prevotes, refusals) = self.check_answers(slot, value, answers);
        if prevotes.len() < self.threshold() {
            return self.insufficient(slot, prevotes.len(), refusals);
        }
        let polka = Certificate::from_votes(slot, value, &prevotes);
        self.valid = Some(Lock {
            batch: proposal.batch.clone(),
            proof: polka.clone(),
        });

        // Phase 3: precommits on the polka.
        let slot = Slot {
            kind: VoteKind::Precommit,
            ..slot
        };
        let answers = join_all(self.validators.iter().map(|v| v.commit(&proposal, &polka))).await;
        let (precommits, refusals) = self.check_answers(slot, value, answers);
        if precommits.len() < self.threshold() {
            return self.insufficient(slot, precommits.len(), refusals);
        }
        let decision = Decision {
            batch: proposal.batch,
            certificate: Certificate::from_votes(slot, value, &precommits),
        };
        if let Err(e) = decision.verify(&self.set) {
            return ConsensusResult::Failed(format!("the votes did not form a certificate: {e}"));
        }
        self.adopt(decision, round).await;
        self.synced = true;
        ConsensusResult::Committed(value)
    }

    /// Records a decision of the current height and tells every validator;
    /// one that misses it still holds its lock, which only ever supports
    /// this value.
    async fn adopt(&mut self, decision: Decision, round: u32) {
        join_all(self.validators.iter().map(|v| v.finalize(&decision))).await;
        self.detector
            .observe_decision(self.height, round, &decision.certificate.value);
        self.detector.prune_below(self.height);
        self.decisions.push(decision);
        self.height += 1;
        self.round = 0;
        self.valid = None;
    }

    /// Learns from the validators what they know of the current height, so
    /// that a proposer taking over from one that failed proposes what it
    /// must: a height some validator has a verified decision for is adopted
    /// (and the next one asked about); the lock with the newest verified
    /// polka becomes the value to re-propose; rounds continue after the
    /// `(f + 1)`-th newest one validators voted in.
    ///
    /// This is the replica's catch-up in request/response form: a decision
    /// is taken only if [`Decision::verify`] accepts it against the
    /// validator set (as a replica checks one it is sent), and a
    /// [`ValidatorHandler`](crate::ValidatorHandler) answers each node's
    /// requests within the replica's per-peer budget.
    pub async fn catch_up(&mut self) {
        loop {
            let height = self.height;
            let statuses = join_all(self.validators.iter().map(|v| v.status(height))).await;
            let mut rounds = Vec::new();
            let mut decided = None;
            for status in statuses.into_iter().flatten() {
                if let Some(d) = status.decided {
                    if d.height() == height && d.verify(&self.set).is_ok() {
                        decided = Some(d);
                        break;
                    }
                }
                if let Some(lock) = status.locked {
                    let proof = &lock.proof;
                    let newer = self.valid.as_ref().is_none_or(|v| v.round() < lock.round());
                    if newer
                        && proof.height() == height
                        && lock.batch.receipt() == proof.value
                        && proof.verify_kind(VoteKind::Prevote, &self.set).is_ok()
                    {
                        self.valid = Some(lock);
                    }
                }
                rounds.extend(status.last_round);
            }
            match decided {
                Some(d) => {
                    let round = d.certificate.round();
                    self.adopt(d, round).await;
                }
                None => {
                    // The (f + 1)-th newest round: at least one honest
                    // validator voted that late, and a Byzantine one cannot
                    // push the rounds out of reach by claiming a huge one.
                    if let Some(r) = rules::round_reached(rounds, self.set.max_faulty() + 1) {
                        self.round = self.round.max(r.saturating_add(1));
                    }
                    self.synced = true;
                    return;
                }
            }
        }
    }

    /// Keeps the answers that are valid votes of the validator asked, for
    /// `slot` and `value`; says why each other one did not count.
    fn check_answers(
        &mut self,
        slot: Slot,
        value: Receipt,
        answers: Vec<Result<Vote, ConsensusError>>,
    ) -> (Vec<Vote>, Vec<(NodeId, String)>) {
        let mut valid = Vec::new();
        let mut refusals = Vec::new();
        for (v, answer) in self.validators.iter().zip(answers) {
            let asked = v.id();
            let vote = match answer {
                Ok(vote) => vote,
                Err(e) => {
                    refusals.push((asked, e.to_string()));
                    continue;
                }
            };
            if let Err(m) = self.detector.check_vote(asked, &vote) {
                refusals.push((asked, format!("{:?}", m.offence)));
                self.misbehaviour.push(m);
                continue;
            }
            if vote.voter != asked || vote.slot != slot || vote.value != Some(value) {
                refusals.push((
                    asked,
                    format!(
                        "answered a vote of {} in {:?} for {:?}, not its own in {slot:?} for {}",
                        vote.voter,
                        vote.slot,
                        vote.value.map(|r| r.content),
                        value.content
                    ),
                ));
                continue;
            }
            valid.push(vote);
        }
        (valid, refusals)
    }

    fn insufficient(
        &self,
        slot: Slot,
        got: usize,
        refusals: Vec<(NodeId, String)>,
    ) -> ConsensusResult {
        ConsensusResult::InsufficientVotes {
            phase: slot.kind,
            round: slot.round,
            got,
            needed: self.threshold(),
            refusals,
        }
    }
}
