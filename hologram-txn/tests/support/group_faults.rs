//! Faults of a replicated group's members shared by the group tests: a
//! Byzantine validator that votes for values it was not asked about.

use async_trait::async_trait;
use hologram_consensus::{
    Certificate, ConsensusError, Decision, HeightStatus, Proposal, Validator, Vote,
};
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Receipt};
use std::sync::Arc;

/// A Byzantine validator: it takes part (its own record advances as an
/// honest one's would) but answers with votes, correctly signed, for a
/// value other than the proposal's; consensus does not count them.
pub struct WrongVotes {
    /// The validator's keys, which sign the wrong votes.
    pub keys: KeyPair,
    /// The honest validator whose record it keeps.
    pub inner: Arc<dyn Validator>,
}

impl WrongVotes {
    fn wrong(&self, vote: Vote) -> Vote {
        Vote::sign(&self.keys, vote.slot, Some(Receipt::from_bytes(b"other")))
    }
}

#[async_trait]
impl Validator for WrongVotes {
    fn id(&self) -> NodeId {
        self.keys.node_id()
    }

    async fn prepare_vote(&self, proposal: &Proposal) -> Result<Vote, ConsensusError> {
        Ok(self.wrong(self.inner.prepare_vote(proposal).await?))
    }

    async fn commit(
        &self,
        proposal: &Proposal,
        polka: &Certificate,
    ) -> Result<Vote, ConsensusError> {
        Ok(self.wrong(self.inner.commit(proposal, polka).await?))
    }

    async fn finalize(&self, decision: &Decision) -> Result<(), ConsensusError> {
        self.inner.finalize(decision).await
    }

    async fn status(&self, height: u64) -> Result<HeightStatus, ConsensusError> {
        self.inner.status(height).await
    }
}
