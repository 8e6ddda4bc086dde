//! A [`Participant`] on another node, asked request/response over a
//! `Transport`: [`RemoteParticipant`] on the caller's side,
//! [`ParticipantService`] on the node that runs the participant (deployment,
//! wire and trust: see [`RemoteParticipant`]).

use crate::transaction::{call, Participant};
use crate::{Decision, SignedReceipt, TxnError, TxnId, TxnMessage};
use async_trait::async_trait;
use hologram_lattice::transport::{Handler, HandlerError, Protocol, Service, Transport};
use hologram_lattice::wire::Wire;
use hologram_lattice::{NodeId, PeerId};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// The error for an answer that is not the one asked for.
pub(crate) fn unexpected(txn: TxnId, reply: Option<TxnMessage>) -> TxnError {
    TxnError::Decode {
        what: "participant answer",
        reason: format!("unexpected answer for {txn}: {reply:?}"),
    }
}

/// A participant's reply about `txn`, or its refusal as the error.
pub(crate) fn reply_to(txn: TxnId, reply: Option<TxnMessage>) -> Result<TxnMessage, TxnError> {
    match reply {
        Some(TxnMessage::Refused { refusal, .. }) => Err(refusal.into_error(txn)),
        Some(reply) if reply.txn() == Some(txn) => Ok(reply),
        other => Err(unexpected(txn, other)),
    }
}

/// The prepare vote of a `Prepared` reply.
pub(crate) fn vote_of(txn: TxnId, reply: TxnMessage) -> Result<SignedReceipt, TxnError> {
    match reply {
        TxnMessage::Prepared { vote, .. } => Ok(vote),
        other => Err(unexpected(txn, Some(other))),
    }
}

/// The decision of a `Decided` reply.
pub(crate) fn decision_of(txn: TxnId, reply: TxnMessage) -> Result<Decision, TxnError> {
    match reply {
        TxnMessage::Decided { decision, .. } => Ok(decision),
        other => Err(unexpected(txn, Some(other))),
    }
}

/// The acknowledgement of an `Ack` reply.
pub(crate) fn ack_of(txn: TxnId, reply: TxnMessage) -> Result<SignedReceipt, TxnError> {
    match reply {
        TxnMessage::Ack { ack, .. } => Ok(ack),
        other => Err(unexpected(txn, Some(other))),
    }
}

/// A participant reached over a transport.
///
/// It knows the participant's id (the key, or group id, its receipts are
/// signed under) and the nodes that serve it: each call goes to the node
/// that answered last, and on a transport failure the call moves on to the
/// next node for the next attempt (several nodes serve one participant
/// when a replicated group runs more than one proposer node).
///
/// **Deployment.** The node running a participant — a [`LocalParticipant`]
/// of a single-replica shard, or the proposer of a replicated group's
/// [`ReplicatedParticipant`](crate::ReplicatedParticipant) — registers a
/// [`ParticipantService`] for [`crate::TXN_CALL_PROTOCOL`]. A coordinator's node
/// reaches it with a [`RemoteParticipant`] and runs
/// [`DistributedTransaction`](crate::DistributedTransaction) over it as over
/// any participant.
///
/// **Wire.** A request is a coordinator's [`TxnMessage`] (`Prepare`,
/// `CommitOnePhase`, `Commit`, `Abort`, `Resolve`) in its wire form; the
/// answer is the participant's reply ([`call`]) in its wire form: `Prepared`,
/// `Decided`, `Ack`, or `Refused` with the participant's error. Both sides
/// decode with [`TxnMessage::from_wire`] (bounded, every nested bound
/// checked); a request that is not a coordinator's request is refused.
///
/// **What is trusted.** Nothing the peer answers: the coordinator verifies
/// every receipt it is given (single signatures and group proofs alike), so a
/// peer that lies is refused as a participant answering in the same process
/// would be. A call that gets no answer in time — lost, late, or the peer
/// down — fails with a retryable [`TxnError::Unreachable`]; requests are
/// idempotent at the participant (a repeated prepare, decision or resolve
/// returns what the first one did), so the coordinator's retries are safe.
///
/// [`LocalParticipant`]: crate::LocalParticipant
pub struct RemoteParticipant {
    id: NodeId,
    peers: Vec<PeerId>,
    /// The node asked next: `peers[next % peers.len()]`.
    next: AtomicUsize,
    transport: Arc<dyn Transport>,
    timeout: Duration,
    attempts: usize,
}

/// How many times a [`RemoteParticipant`] sends a call that gets no answer
/// before it fails, unless set with [`RemoteParticipant::with_attempts`].
pub const CALL_ATTEMPTS: usize = 2;

impl core::fmt::Debug for RemoteParticipant {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RemoteParticipant")
            .field("id", &self.id)
            .field("peers", &self.peers)
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl RemoteParticipant {
    /// Participant `id`, served by the node `peer`, asked through
    /// `transport`, each answer awaited at most `timeout`.
    pub fn new(id: NodeId, peer: PeerId, transport: Arc<dyn Transport>, timeout: Duration) -> Self {
        Self::served_by(id, vec![peer], transport, timeout)
    }

    /// Participant `id`, served by any of `peers` (tried in turn when one
    /// fails to answer). `peers` must not be empty.
    pub fn served_by(
        id: NodeId,
        peers: Vec<PeerId>,
        transport: Arc<dyn Transport>,
        timeout: Duration,
    ) -> Self {
        RemoteParticipant {
            id,
            peers,
            next: AtomicUsize::new(0),
            transport,
            timeout,
            attempts: CALL_ATTEMPTS,
        }
    }

    /// Sends each call at most `attempts` times (at least once) while it
    /// gets no answer, moving to the next serving node each time.
    pub fn with_attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Sends `message` about `txn` and decodes the reply, again (to the
    /// next node) while no answer comes; the requests are idempotent.
    async fn ask(&self, txn: TxnId, message: TxnMessage) -> Result<TxnMessage, TxnError> {
        let bytes = message.to_wire()?;
        let mut attempt = 1;
        loop {
            let turn = self.next.load(Relaxed);
            let peer = *self
                .peers
                .get(turn % self.peers.len().max(1))
                .ok_or(TxnError::Empty("list of nodes serving the participant"))?;
            let answer = self
                .transport
                .request(peer, crate::TXN_CALL_PROTOCOL, bytes.clone(), self.timeout)
                .await;
            let reply = match answer {
                Ok(answer) => reply_to(txn, Some(TxnMessage::from_wire(&answer)?)),
                Err(source) => {
                    // Try the next node next time (unless a concurrent call
                    // moved on already).
                    let next = turn.wrapping_add(1);
                    let _ = self.next.compare_exchange(turn, next, Relaxed, Relaxed);
                    let participant = self.id;
                    Err(TxnError::Unreachable {
                        participant,
                        peer,
                        source,
                    })
                }
            };
            match reply {
                Err(TxnError::Transport(_) | TxnError::Unreachable { .. })
                    if attempt < self.attempts =>
                {
                    attempt += 1
                }
                other => return other,
            }
        }
    }
}

/// Implements [`Participant`] for a type that answers by message: one with
/// an `id: NodeId` field and an `async fn ask(&self, txn: TxnId, message:
/// TxnMessage) -> Result<TxnMessage, TxnError>` that returns the reply (a
/// refusal already turned into its error). Each call is the message of the
/// same name; the reply is mapped by [`vote_of`], [`decision_of`] or
/// [`ack_of`].
macro_rules! participant_by_messages {
    ($participant:ty) => {
        #[async_trait::async_trait]
        impl $crate::transaction::Participant for $participant {
            fn id(&self) -> hologram_lattice::NodeId {
                self.id
            }

            async fn prepare(
                &self,
                request: $crate::PrepareRequest,
            ) -> Result<$crate::SignedReceipt, $crate::TxnError> {
                let txn = request.txn;
                let message = $crate::TxnMessage::Prepare(request);
                $crate::remote::vote_of(txn, self.ask(txn, message).await?)
            }

            async fn commit_one_phase(
                &self,
                request: $crate::PrepareRequest,
                expected: hologram_receipt::Receipt,
            ) -> Result<$crate::Decision, $crate::TxnError> {
                let txn = request.txn;
                let message = $crate::TxnMessage::CommitOnePhase { request, expected };
                $crate::remote::decision_of(txn, self.ask(txn, message).await?)
            }

            async fn commit(
                &self,
                txn: $crate::TxnId,
                prepares: Vec<$crate::SignedReceipt>,
            ) -> Result<$crate::Decision, $crate::TxnError> {
                let message = $crate::TxnMessage::Commit { txn, prepares };
                $crate::remote::decision_of(txn, self.ask(txn, message).await?)
            }

            async fn abort(
                &self,
                txn: $crate::TxnId,
            ) -> Result<$crate::Decision, $crate::TxnError> {
                let message = $crate::TxnMessage::Abort { txn };
                $crate::remote::decision_of(txn, self.ask(txn, message).await?)
            }

            async fn resolve(
                &self,
                txn: $crate::TxnId,
                decision: $crate::Decision,
            ) -> Result<$crate::SignedReceipt, $crate::TxnError> {
                let message = $crate::TxnMessage::Resolve { txn, decision };
                $crate::remote::ack_of(txn, self.ask(txn, message).await?)
            }
        }
    };
}
pub(crate) use participant_by_messages;

participant_by_messages!(RemoteParticipant);

/// Serves a [`Participant`] to [`RemoteParticipant`]s: mount it on the
/// node's [`ProtocolMux`](hologram_lattice::transport::ProtocolMux) (it
/// answers [`crate::TXN_CALL_PROTOCOL`] requests) (see the
/// docs of [`RemoteParticipant`]). Works for any participant: a
/// [`LocalParticipant`](crate::LocalParticipant), a
/// [`ReplicatedParticipant`](crate::ReplicatedParticipant) whose members and
/// validators are other nodes, or another [`RemoteParticipant`] (a relay).
pub struct ParticipantService<P: Participant> {
    participant: Arc<P>,
}

impl<P: Participant> ParticipantService<P> {
    /// A service answering with `participant`.
    pub fn new(participant: Arc<P>) -> Self {
        ParticipantService { participant }
    }
}

#[async_trait]
impl<P: Participant + 'static> Handler for ParticipantService<P> {
    async fn request(
        &self,
        _from: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        if protocol != crate::TXN_CALL_PROTOCOL {
            return Err(HandlerError::Refused(format!(
                "a participant service answers only TXN_CALL requests, not {protocol:?}"
            )));
        }
        let message =
            TxnMessage::from_wire(&payload).map_err(|e| HandlerError::Refused(e.to_string()))?;
        let reply = call(self.participant.as_ref(), message)
            .await
            .ok_or_else(|| HandlerError::Refused("not a coordinator's request".into()))?;
        reply
            .to_wire()
            .map_err(|e| HandlerError::Failed(e.to_string()))
    }

    async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {}
}

impl<P: Participant + 'static> Service for ParticipantService<P> {
    fn protocol(&self) -> Protocol {
        crate::TXN_CALL_PROTOCOL
    }
}
