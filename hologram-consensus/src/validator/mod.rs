//! The `Validator` seam: a participant in consensus as
//! [`ReceiptConsensus`](crate::ReceiptConsensus) sees it.

mod follow;
mod local;
mod remote;
mod wire;

pub use follow::Decisions;
pub use local::LocalValidator;
pub use remote::{RemoteValidator, ValidatorHandler};
pub use wire::{ValidatorRequest, ValidatorResponse};

use crate::certificate::Certificate;
use crate::message::{Decision, Proposal};
use crate::replica::Lock;
use crate::vote::Vote;
use crate::ConsensusError;
use async_trait::async_trait;
use hologram_lattice::NodeId;
use serde::{Deserialize, Serialize};

/// A participant in consensus.
///
/// A validator is asked three things, each answered with the same signed
/// [`Vote`]s, [`Certificate`]s and [`Decision`]s the [`Replica`](crate::Replica)
/// exchanges, so a certificate gathered here verifies like any other:
///
/// 1. [`prepare_vote`](Validator::prepare_vote): check a leader's proposal
///    and return a signed prevote on its receipt;
/// 2. [`commit`](Validator::commit): given a polka (a quorum of prevotes for
///    the proposal), lock on it and return a signed precommit;
/// 3. [`finalize`](Validator::finalize): take the commit certificate (a
///    quorum of precommits) as the decision of the height.
///
/// and, so that a proposer that failed can be replaced by another,
/// [`status`](Validator::status): what the validator knows of a height (its
/// decision, its lock with the polka that justifies it, the newest round it
/// voted in). A new proposer learns from it what it must re-propose.
///
/// A [`LocalValidator`] applies Tendermint's voting rules to each request
/// (and, followed through [`LocalValidator::subscribe`], hands on what is
/// decided); a [`RemoteValidator`] asks one over a `Transport`
/// ([`crate::VALIDATOR_PROTOCOL`] requests, served by a
/// [`ValidatorHandler`]), beside the replicas' one-way messages under
/// `crate::CONSENSUS_PROTOCOL`, so one node serves both.
#[async_trait]
pub trait Validator: Send + Sync {
    /// The validator's id (its public key).
    fn id(&self) -> NodeId;

    /// Checks `proposal` and returns a signed prevote for its value, or why
    /// it will not vote for it.
    async fn prepare_vote(&self, proposal: &Proposal) -> Result<Vote, ConsensusError>;

    /// Checks that `polka` is a quorum of prevotes for `proposal`'s value in
    /// its round, locks on it and returns a signed precommit.
    async fn commit(
        &self,
        proposal: &Proposal,
        polka: &Certificate,
    ) -> Result<Vote, ConsensusError>;

    /// Takes a decided height (its commit certificate is checked).
    async fn finalize(&self, decision: &Decision) -> Result<(), ConsensusError>;

    /// What the validator knows of `height`.
    async fn status(&self, height: u64) -> Result<HeightStatus, ConsensusError>;
}

/// What a validator knows of one height (see [`Validator::status`]). A
/// proposer trusts none of it blindly: decisions and locks are checked
/// against their certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeightStatus {
    /// The first height the validator has not seen decided.
    pub next_height: u64,
    /// The height's decision, if the validator has it.
    pub decided: Option<Decision>,
    /// The validator's lock at the height, if any.
    pub locked: Option<Lock>,
    /// The newest round of the height it signed a vote in.
    pub last_round: Option<u32>,
}

#[async_trait]
impl<T: Validator + ?Sized> Validator for std::sync::Arc<T> {
    fn id(&self) -> NodeId {
        (**self).id()
    }

    async fn prepare_vote(&self, proposal: &Proposal) -> Result<Vote, ConsensusError> {
        (**self).prepare_vote(proposal).await
    }

    async fn commit(
        &self,
        proposal: &Proposal,
        polka: &Certificate,
    ) -> Result<Vote, ConsensusError> {
        (**self).commit(proposal, polka).await
    }

    async fn finalize(&self, decision: &Decision) -> Result<(), ConsensusError> {
        (**self).finalize(decision).await
    }

    async fn status(&self, height: u64) -> Result<HeightStatus, ConsensusError> {
        (**self).status(height).await
    }
}
