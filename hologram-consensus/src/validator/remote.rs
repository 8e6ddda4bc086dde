//! A validator in another process, asked over a `Transport`.

use super::{HeightStatus, Validator, ValidatorRequest, ValidatorResponse};
use crate::certificate::Certificate;
use crate::message::{Decision, Proposal};
use crate::vote::Vote;
use crate::ConsensusError;
use async_trait::async_trait;
use hologram_lattice::transport::{Handler, HandlerError, Protocol, Service, Transport};
use hologram_lattice::NodeId;
use std::sync::Arc;
use std::time::Duration;

/// A validator reached over a transport: each call is one
/// [`Protocol::VALIDATOR`] request answered by the peer's
/// [`ValidatorHandler`]. A vote it returns is only what the peer claims:
/// [`ReceiptConsensus`](crate::ReceiptConsensus) checks every one.
pub struct RemoteValidator {
    id: NodeId,
    transport: Arc<dyn Transport>,
    timeout: Duration,
}

impl core::fmt::Debug for RemoteValidator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RemoteValidator")
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RemoteValidator {
    /// The validator `id`, asked through `transport`, each answer awaited at
    /// most `timeout`.
    pub fn new(id: NodeId, transport: Arc<dyn Transport>, timeout: Duration) -> Self {
        Self {
            id,
            transport,
            timeout,
        }
    }

    async fn ask(&self, request: ValidatorRequest) -> Result<ValidatorResponse, ConsensusError> {
        let bytes = request.encode()?;
        let answer = self
            .transport
            .request(self.id, Protocol::VALIDATOR, bytes, self.timeout)
            .await?;
        match ValidatorResponse::decode(&answer)? {
            ValidatorResponse::Refused(reason) => Err(ConsensusError::Refused {
                validator: self.id,
                reason,
            }),
            other => Ok(other),
        }
    }

    fn vote(&self, answer: ValidatorResponse) -> Result<Vote, ConsensusError> {
        match answer {
            ValidatorResponse::Vote(v) => Ok(v),
            other => Err(ConsensusError::Refused {
                validator: self.id,
                reason: format!("answered {other:?} where a vote was asked for"),
            }),
        }
    }
}

#[async_trait]
impl Validator for RemoteValidator {
    fn id(&self) -> NodeId {
        self.id
    }

    async fn prepare_vote(&self, proposal: &Proposal) -> Result<Vote, ConsensusError> {
        let answer = self
            .ask(ValidatorRequest::Prepare(Box::new(proposal.clone())))
            .await?;
        self.vote(answer)
    }

    async fn commit(
        &self,
        proposal: &Proposal,
        polka: &Certificate,
    ) -> Result<Vote, ConsensusError> {
        let answer = self
            .ask(ValidatorRequest::Commit(
                Box::new(proposal.clone()),
                Box::new(polka.clone()),
            ))
            .await?;
        self.vote(answer)
    }

    async fn finalize(&self, decision: &Decision) -> Result<(), ConsensusError> {
        match self
            .ask(ValidatorRequest::Finalize(Box::new(decision.clone())))
            .await?
        {
            ValidatorResponse::Finalized => Ok(()),
            other => Err(ConsensusError::Refused {
                validator: self.id,
                reason: format!("answered {other:?} to a decision"),
            }),
        }
    }

    async fn status(&self, height: u64) -> Result<HeightStatus, ConsensusError> {
        match self.ask(ValidatorRequest::Status(height)).await? {
            ValidatorResponse::Status(s) => Ok(*s),
            other => Err(ConsensusError::Refused {
                validator: self.id,
                reason: format!("answered {other:?} to a status request"),
            }),
        }
    }
}

/// Serves a validator (a [`LocalValidator`](super::LocalValidator), or any [`Validator`] wrapping
/// one) to [`RemoteValidator`]s: mount it on the node's
/// [`ProtocolMux`](hologram_lattice::transport::ProtocolMux) (it answers
/// [`Protocol::VALIDATOR`] requests). Malformed requests are refused with the
/// decoder's reason; refusals of the validator are answered as
/// [`ValidatorResponse::Refused`].
#[derive(Clone)]
pub struct ValidatorHandler {
    validator: Arc<dyn Validator>,
}

impl ValidatorHandler {
    /// A handler serving `validator`.
    pub fn new(validator: Arc<dyn Validator>) -> Self {
        Self { validator }
    }
}

#[async_trait]
impl Handler for ValidatorHandler {
    async fn request(
        &self,
        _from: NodeId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        if protocol != Protocol::VALIDATOR {
            return Err(HandlerError::Refused(format!(
                "a validator serves only VALIDATOR requests, not {protocol:?}"
            )));
        }
        let request =
            ValidatorRequest::decode(&payload).map_err(|e| HandlerError::Refused(e.to_string()))?;
        let v = &self.validator;
        let answer = match request {
            ValidatorRequest::Prepare(p) => v.prepare_vote(&p).await.map(ValidatorResponse::Vote),
            ValidatorRequest::Commit(p, polka) => {
                v.commit(&p, &polka).await.map(ValidatorResponse::Vote)
            }
            ValidatorRequest::Finalize(d) => {
                v.finalize(&d).await.map(|()| ValidatorResponse::Finalized)
            }
            ValidatorRequest::Status(h) => v
                .status(h)
                .await
                .map(|s| ValidatorResponse::Status(Box::new(s))),
        };
        answer
            .unwrap_or_else(|e| ValidatorResponse::Refused(e.to_string()))
            .encode()
            .map_err(|e| HandlerError::Failed(e.to_string()))
    }

    async fn message(&self, _: NodeId, _: Protocol, _: Vec<u8>) {}
}

impl Service for ValidatorHandler {
    fn protocol(&self) -> Protocol {
        Protocol::VALIDATOR
    }
}
