//! A validator in this process: keys, the replica's voting record and
//! Tendermint's rules (those of `replica::rules`).

use super::follow::{Decisions, Feed};
use super::{HeightStatus, Validator};
use crate::certificate::Certificate;
use crate::message::{Decision, Proposal};
use crate::persist::{DurableLog, Recovered};
use crate::replica::rules::{self, Refusal};
use crate::replica::{HeightRecord, VotingRecord};
use crate::vote::{SignedHeader, Slot, Vote, VoteKind};
use crate::{ConsensusError, ValidatorSet};
use async_trait::async_trait;
use futures::lock::Mutex;
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Receipt};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Decided heights beyond the next one kept waiting for the gap to fill.
const MAX_PENDING: usize = 1024;
/// Decided heights kept in memory to tell a new proposer and subscribers, by default.
const KEEP_DECIDED: usize = 1024;

/// A validator in this process; see [`Validator`](crate::Validator).
///
/// Its voting rules, per height `h` and round `r`, are Tendermint's:
/// one prevote and one precommit per slot (asked again, it returns the same
/// vote; asked for another value, it refuses); no vote in a round older
/// than the newest it signed in; once locked on a value (after
/// precommitting it on a polka), it prevotes for another value only when
/// the proposal carries a polka for that value from a round at or after the
/// lock. Proposals must come from the round's leader and name their batch's
/// receipt; polkas and commit certificates must verify. Decided heights are
/// taken in order (later ones wait, at most 1,024) and, with a log, appended
/// to it; the voting record is made durable before a vote is returned. The
/// newest decided heights (1,024 unless [`keep_decided`](Self::keep_decided)
/// says otherwise) stay in memory, for [`status`](Validator::status) and for
/// subscribers ([`subscribe`](Self::subscribe)).
///
/// The same key must not also run a [`Replica`](crate::Replica) on the same
/// heights with another record: that would be two voting records for one
/// validator, which is how an honest node equivocates.
pub struct LocalValidator {
    id: NodeId,
    state: Mutex<State>,
    feed: Arc<Feed>,
}

struct State {
    keys: KeyPair,
    validators: ValidatorSet,
    record: VotingRecord,
    next: u64,
    pending: BTreeMap<u64, Decision>,
    log: Option<DurableLog>,
}

impl core::fmt::Debug for LocalValidator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalValidator")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl LocalValidator {
    /// A validator with nothing decided or signed, keeping its state in memory.
    pub fn new(keys: KeyPair, validators: ValidatorSet) -> Self {
        Self::build(keys, validators, Recovered::default(), None)
    }

    /// A validator restarted from `log` and what [`DurableLog::open`]
    /// recovered from it; its votes and decisions are made durable there.
    /// Refuses if a voting record may have been lost
    /// ([`Recovered::record_unreadable`]).
    pub fn durable(
        keys: KeyPair,
        log: DurableLog,
        recovered: Recovered,
    ) -> Result<Self, ConsensusError> {
        recovered.check_record()?;
        let validators = log.validators().clone();
        Ok(Self::build(keys, validators, recovered, Some(log)))
    }

    fn build(
        keys: KeyPair,
        validators: ValidatorSet,
        recovered: Recovered,
        log: Option<DurableLog>,
    ) -> Self {
        let next = recovered.next_height();
        let (decisions, mut record) = (recovered.decisions, recovered.record);
        record.heights = record.heights.split_off(&next);
        let keep = decisions.len().saturating_sub(KEEP_DECIDED);
        let recent = decisions.into_iter().skip(keep).map(|d| (d.height(), d));
        Self {
            id: keys.node_id(),
            feed: Arc::new(Feed::new(next, recent.collect(), KEEP_DECIDED)),
            state: Mutex::new(State {
                keys,
                validators,
                record,
                next,
                pending: BTreeMap::new(),
                log,
            }),
        }
    }

    /// Keeps the newest `heights` decided heights in memory (at least one;
    /// 1,024 by default): what [`status`](Validator::status) can return and
    /// how far a [`subscribe`](Self::subscribe)r may fall behind.
    pub fn keep_decided(self, heights: usize) -> Self {
        self.feed.set_keep(heights);
        self
    }

    /// The decided heights from `from` on, each once and in height order,
    /// as they are decided: a bounded pull cursor over the heights this
    /// validator keeps (see [`Decisions`]). A subscriber that falls behind
    /// them gets [`ConsensusError::Lagged`] and reads the rest from the
    /// [`DurableLog`].
    pub fn subscribe(&self, from: u64) -> Decisions {
        self.feed.subscribe(from)
    }

    /// The next height this validator has not seen decided.
    pub async fn next_height(&self) -> u64 {
        self.state.lock().await.next
    }

    /// A copy of the voting record.
    pub async fn voting_record(&self) -> VotingRecord {
        self.state.lock().await.record.clone()
    }
}

impl State {
    fn refuse(&self, reason: impl Into<String>) -> ConsensusError {
        ConsensusError::Refused {
            validator: self.keys.node_id(),
            reason: reason.into(),
        }
    }

    /// The checks every proposal passes: bounds, height not decided, signed
    /// by the round's leader, naming its batch's receipt, with a proof of
    /// lock that verifies if it has one (see [`rules`]). (Its commands'
    /// client signatures are checked before a prevote; a precommit needs a
    /// polka, whose `f + 1` honest prevoters checked them.)
    fn check_proposal(&self, p: &Proposal) -> Result<(), ConsensusError> {
        p.batch.check_bounds()?;
        let h = &p.header;
        if h.height < self.next {
            return Err(self.refuse(format!("height {} is decided", h.height)));
        }
        rules::check_leader(h, &self.validators)?;
        h.verify_signature()?;
        rules::check_proposal(p, &self.validators)
    }

    /// The vote already signed in `slot` for `value`, if any (see
    /// [`HeightRecord::signed`](crate::replica::HeightRecord)).
    fn signed(&self, slot: Slot, value: Receipt) -> Result<Option<Vote>, ConsensusError> {
        match self.record.heights.get(&slot.height) {
            Some(rec) => rec
                .signed(slot, Some(value))
                .map_err(|r| self.refuse(r.to_string())),
            None => Ok(None),
        }
    }

    /// Signs through the voting record and makes the record durable.
    async fn keep(
        &mut self,
        sign: impl FnOnce(&mut HeightRecord, &KeyPair) -> Result<Vote, Refusal>,
        height: u64,
    ) -> Result<Vote, ConsensusError> {
        let rec = self.record.heights.entry(height).or_default();
        let vote = sign(rec, &self.keys).map_err(|r| self.refuse(r.to_string()))?;
        if let Some(log) = &mut self.log {
            log.save_record(&self.record).await?;
        }
        Ok(vote)
    }
}

/// The slot of a vote of `kind` on the proposal with header `h`.
fn slot_of(h: &SignedHeader, kind: VoteKind) -> Slot {
    Slot {
        height: h.height,
        round: h.round,
        kind,
    }
}

#[async_trait]
impl Validator for LocalValidator {
    fn id(&self) -> NodeId {
        self.id
    }

    async fn prepare_vote(&self, proposal: &Proposal) -> Result<Vote, ConsensusError> {
        let mut st = self.state.lock().await;
        st.check_proposal(proposal)?;
        crate::command::verify_commands(proposal.batch.commands())?;
        // A checkpoint is supported only by a validator whose machine
        // computed it (see `Checkpoint`); this one runs none.
        if let Some(c) = proposal.batch.checkpoint() {
            return Err(st.refuse(format!(
                "the batch names a snapshot at height {}, which this validator cannot check",
                c.height
            )));
        }
        let h = &proposal.header;
        let slot = slot_of(h, VoteKind::Prevote);
        if let Some(v) = st.signed(slot, h.value)? {
            return Ok(v);
        }
        let lock = st
            .record
            .heights
            .get(&h.height)
            .and_then(|r| r.locked.as_ref());
        if let Some(lock) = lock.filter(|_| !rules::may_prevote(lock, h)) {
            return Err(st.refuse(format!(
                "locked on {} since round {} at height {}",
                lock.value().content,
                lock.round(),
                h.height
            )));
        }
        st.keep(
            |rec, keys| rec.sign_vote(keys, slot, Some(h.value)),
            h.height,
        )
        .await
    }

    async fn commit(
        &self,
        proposal: &Proposal,
        polka: &Certificate,
    ) -> Result<Vote, ConsensusError> {
        let mut st = self.state.lock().await;
        st.check_proposal(proposal)?;
        let h = &proposal.header;
        let prevotes = slot_of(h, VoteKind::Prevote);
        if polka.slot != prevotes || polka.value != h.value {
            return Err(st.refuse(format!(
                "the polka is for {:?}, not the proposal's slot and value",
                polka.slot
            )));
        }
        polka.verify_kind(VoteKind::Prevote, &st.validators)?;
        let (batch, polka) = (proposal.batch.clone(), polka.clone());
        st.keep(|rec, keys| rec.precommit_on(keys, batch, polka), h.height)
            .await
    }

    async fn finalize(&self, decision: &Decision) -> Result<(), ConsensusError> {
        let mut st = self.state.lock().await;
        let height = decision.height();
        if height < st.next {
            return Ok(());
        }
        decision.verify(&st.validators)?;
        if st.pending.len() >= MAX_PENDING && !st.pending.contains_key(&height) {
            return Err(st.refuse(format!(
                "{MAX_PENDING} decided heights already wait for height {}",
                st.next
            )));
        }
        st.pending.insert(height, decision.clone());
        let mut ready = Vec::new();
        let first = st.next;
        while let Some(d) = st.pending.remove(&(first + ready.len() as u64)) {
            ready.push(d);
        }
        if ready.is_empty() {
            return Ok(());
        }
        let next = st.next + ready.len() as u64;
        let mut record = st.record.clone();
        record.heights = record.heights.split_off(&next);
        if let Some(log) = &mut st.log {
            if let Err(e) = log.persist(&ready, &record).await {
                for d in ready {
                    st.pending.insert(d.height(), d);
                }
                return Err(e);
            }
        }
        st.record = record;
        st.next = next;
        // Under the state lock, so the feed takes heights in order.
        self.feed.push(ready);
        Ok(())
    }

    async fn status(&self, height: u64) -> Result<HeightStatus, ConsensusError> {
        let st = self.state.lock().await;
        let rec = st.record.heights.get(&height);
        Ok(HeightStatus {
            next_height: st.next,
            decided: self
                .feed
                .get(height)
                .or_else(|| st.pending.get(&height).cloned()),
            locked: rec.and_then(|r| r.locked.clone()),
            last_round: rec.filter(|r| !r.votes.is_empty()).map(|r| r.last_round()),
        })
    }
}

impl Drop for LocalValidator {
    fn drop(&mut self) {
        self.feed.close();
    }
}
