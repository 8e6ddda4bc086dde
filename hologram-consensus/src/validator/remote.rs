//! A validator in another process, asked over a `Transport`.

use super::{HeightStatus, Validator, ValidatorRequest, ValidatorResponse};
use crate::certificate::Certificate;
use crate::message::{Decision, Proposal};
use crate::replica::catchup::CatchUpServer;
use crate::replica::DEFAULT_SYNC_BYTES_PER_INTERVAL;
use crate::vote::Vote;
use crate::ConsensusError;
use async_trait::async_trait;
use hologram_lattice::transport::{Handler, HandlerError, Protocol, Service, Transport};
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A validator reached over a transport: each call is one
/// [`crate::VALIDATOR_PROTOCOL`] request answered by the peer's
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

    /// Asks `request`; `expect` takes the answer asked for (`what`) and
    /// gives back any other, which counts as a refusal.
    async fn ask<T>(
        &self,
        request: ValidatorRequest,
        what: &str,
        expect: impl FnOnce(ValidatorResponse) -> Result<T, Box<ValidatorResponse>>,
    ) -> Result<T, ConsensusError> {
        let bytes = request.to_wire()?;
        let answer = self
            .transport
            .request(self.id, crate::VALIDATOR_PROTOCOL, bytes, self.timeout)
            .await?;
        let reason = match ValidatorResponse::from_wire(&answer)? {
            ValidatorResponse::Refused(reason) => reason,
            other => match expect(other) {
                Ok(value) => return Ok(value),
                Err(other) => format!("answered {other:?} where {what} was asked for"),
            },
        };
        Err(ConsensusError::Refused {
            validator: self.id,
            reason,
        })
    }
}

fn vote(answer: ValidatorResponse) -> Result<Vote, Box<ValidatorResponse>> {
    match answer {
        ValidatorResponse::Vote(v) => Ok(v),
        other => Err(Box::new(other)),
    }
}

#[async_trait]
impl Validator for RemoteValidator {
    fn id(&self) -> NodeId {
        self.id
    }

    async fn prepare_vote(&self, proposal: &Proposal) -> Result<Vote, ConsensusError> {
        let request = ValidatorRequest::Prepare(Box::new(proposal.clone()));
        self.ask(request, "a prevote", vote).await
    }

    async fn commit(
        &self,
        proposal: &Proposal,
        polka: &Certificate,
    ) -> Result<Vote, ConsensusError> {
        let request = ValidatorRequest::Commit(Box::new(proposal.clone()), Box::new(polka.clone()));
        self.ask(request, "a precommit", vote).await
    }

    async fn finalize(&self, decision: &Decision) -> Result<(), ConsensusError> {
        let request = ValidatorRequest::Finalize(Box::new(decision.clone()));
        self.ask(request, "finalizing", |a| match a {
            ValidatorResponse::Finalized => Ok(()),
            other => Err(Box::new(other)),
        })
        .await
    }

    async fn status(&self, height: u64) -> Result<HeightStatus, ConsensusError> {
        let request = ValidatorRequest::Status(height);
        self.ask(request, "a status", |a| match a {
            ValidatorResponse::Status(s) => Ok(*s),
            other => Err(Box::new(other)),
        })
        .await
    }
}

/// Serves a validator (a [`LocalValidator`](super::LocalValidator), or any [`Validator`] wrapping
/// one) to [`RemoteValidator`]s: mount it on the node's
/// [`ProtocolMux`](hologram_lattice::transport::ProtocolMux) (it answers
/// [`crate::VALIDATOR_PROTOCOL`] requests). Malformed requests are refused with the
/// decoder's reason; refusals of the validator are answered as
/// [`ValidatorResponse::Refused`].
///
/// The decision a status answer carries is catch-up, served as a
/// [`Replica`](crate::Replica) serves it: each height at most once per
/// asking node and 100 ms interval, within
/// [`DEFAULT_SYNC_BYTES_PER_INTERVAL`] bytes per node and interval (the
/// status is answered without it past that; the proposer asks again).
#[derive(Clone)]
pub struct ValidatorHandler {
    validator: Arc<dyn Validator>,
    catch_up: Arc<Mutex<(Instant, CatchUpServer)>>,
}

/// The catch-up interval of a [`ValidatorHandler`], in milliseconds.
const CATCH_UP_INTERVAL_MS: u64 = 100;

impl ValidatorHandler {
    /// A handler serving `validator`.
    pub fn new(validator: Arc<dyn Validator>) -> Self {
        Self {
            validator,
            catch_up: Arc::new(Mutex::new((Instant::now(), CatchUpServer::default()))),
        }
    }

    /// Whether `from` may be sent `decision` now (see the type's docs).
    fn may_send(&self, from: NodeId, decision: &Decision) -> bool {
        let mut guard = self.catch_up.lock().unwrap_or_else(|e| e.into_inner());
        let (start, server) = &mut *guard;
        let now = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let h = decision.height();
        let range = (h, h.saturating_add(1));
        let budget = DEFAULT_SYNC_BYTES_PER_INTERVAL;
        let known = std::iter::once(decision);
        !server
            .select(now, CATCH_UP_INTERVAL_MS, budget, from, range, known)
            .is_empty()
    }
}

#[async_trait]
impl Handler for ValidatorHandler {
    async fn request(
        &self,
        from: NodeId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        if protocol != crate::VALIDATOR_PROTOCOL {
            return Err(HandlerError::Refused(format!(
                "a validator serves only VALIDATOR requests, not {protocol:?}"
            )));
        }
        let request = ValidatorRequest::from_wire(&payload)
            .map_err(|e| HandlerError::Refused(e.to_string()))?;
        let v = &self.validator;
        let answer = match request {
            ValidatorRequest::Prepare(p) => v.prepare_vote(&p).await.map(ValidatorResponse::Vote),
            ValidatorRequest::Commit(p, polka) => {
                v.commit(&p, &polka).await.map(ValidatorResponse::Vote)
            }
            ValidatorRequest::Finalize(d) => {
                v.finalize(&d).await.map(|()| ValidatorResponse::Finalized)
            }
            ValidatorRequest::Status(h) => v.status(h).await.map(|mut s| {
                s.decided = s.decided.filter(|d| self.may_send(from, d));
                ValidatorResponse::Status(Box::new(s))
            }),
        };
        answer
            .unwrap_or_else(|e| ValidatorResponse::Refused(e.to_string()))
            .to_wire()
            .map_err(|e| HandlerError::Failed(e.to_string()))
    }

    async fn message(&self, _: NodeId, _: Protocol, _: Vec<u8>) {}
}

impl Service for ValidatorHandler {
    fn protocol(&self) -> Protocol {
        crate::VALIDATOR_PROTOCOL
    }
}
