//! The node's inbound side: client requests handed to the node task, and
//! consensus frames taken from validators only.

use super::control::{
    ControlRequest, ControlResponse, LogPage, Status, SubmitAnswer, SUBMIT_PATIENCE,
};
use super::reconfig::{Approval, Members};
use super::roster::Roster;
use super::task::SubmitReply;
use super::watch::NodeReport;
use crate::net::telemetry::DROPPED_LOG;
use hologram_consensus::{Command, SetChange, SetOp, ValidatorSet};
use hologram_lattice::transport::{async_trait, Handler, HandlerError, Protocol};
use hologram_lattice::NodeId;
use hologram_receipt::KeyPair;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// A client request handed to the node task, with where its answer goes.
pub(crate) enum Request {
    Submit(Command, SubmitReply),
    Status(oneshot::Sender<Status>),
    Log(u64, oneshot::Sender<LogPage>),
    Report(oneshot::Sender<NodeReport>),
    /// The sets the node follows, and the newest one.
    Members(oneshot::Sender<(Members, ValidatorSet)>),
    /// A set change to propose; the driver's answer.
    ChangeSet(
        SetChange,
        oneshot::Sender<Result<(), hologram_consensus::ConsensusError>>,
    ),
}

/// Serves [`CONTROL`](super::control::CONTROL) requests by handing them to
/// the node task. `from` is the key the client's QUIC handshake proved: a
/// command is taken only if that key signed it, and a set change approved
/// (with `keys`, the node's) only if it is one of `operators`.
pub(crate) struct ControlHandler {
    pub(crate) requests: mpsc::Sender<Request>,
    pub(crate) keys: KeyPair,
    pub(crate) operators: Arc<Vec<NodeId>>,
}

#[async_trait]
impl Handler for ControlHandler {
    async fn request(
        &self,
        from: NodeId,
        _: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        let request =
            ControlRequest::decode(&payload).map_err(|e| HandlerError::Refused(e.to_string()))?;
        let response = match request {
            ControlRequest::Submit(commands) => {
                for command in &commands {
                    check_submission(from, command)?;
                }
                let mut answers = Vec::with_capacity(commands.len());
                for command in commands {
                    let (reply, answer) = oneshot::channel();
                    self.ask(Request::Submit(command, reply)).await?;
                    answers.push(answer);
                }
                // Every command has the same patience, counted from now.
                let give_up = tokio::time::Instant::now() + SUBMIT_PATIENCE;
                let answers = answers.into_iter().map(|answer| async move {
                    match tokio::time::timeout_at(give_up, answer).await {
                        Ok(Ok(answer)) => Ok(answer),
                        Ok(Err(_)) => Err(stopped()),
                        Err(_) => Ok(SubmitAnswer::Pending),
                    }
                });
                let answers = futures::future::join_all(answers).await;
                ControlResponse::Submitted(answers.into_iter().collect::<Result<_, _>>()?)
            }
            ControlRequest::Status => {
                let (reply, answer) = oneshot::channel();
                self.ask(Request::Status(reply)).await?;
                ControlResponse::Status(answer.await.map_err(|_| stopped())?)
            }
            ControlRequest::Report => {
                let (reply, answer) = oneshot::channel();
                self.ask(Request::Report(reply)).await?;
                ControlResponse::Report(answer.await.map_err(|_| stopped())?)
            }
            ControlRequest::Log { from } => {
                let (reply, answer) = oneshot::channel();
                self.ask(Request::Log(from, reply)).await?;
                ControlResponse::Log(answer.await.map_err(|_| stopped())?)
            }
            ControlRequest::Members => ControlResponse::Members(self.members().await?.0),
            ControlRequest::Approve(op) => ControlResponse::Approval(self.approve(from, op).await?),
            ControlRequest::ChangeSet(change) => {
                let (reply, answer) = oneshot::channel();
                self.ask(Request::ChangeSet(change, reply)).await?;
                match answer.await.map_err(|_| stopped())? {
                    Ok(()) => ControlResponse::ChangeTaken,
                    Err(e) => {
                        debug!(client = %from, error = %e, "set change refused");
                        return Err(HandlerError::Refused(e.to_string()));
                    }
                }
            }
        };
        response
            .encode()
            .map_err(|e| HandlerError::Failed(e.to_string()))
    }

    async fn message(&self, _: NodeId, _: Protocol, _: Vec<u8>) {}
}

/// A submitted command is taken only if the client that sent it (the key
/// its connection proved) signed it, and the signature verifies (once per
/// signature: the commands a client signed at once are cache hits after
/// the first).
fn check_submission(from: NodeId, command: &Command) -> Result<(), HandlerError> {
    if command.client() != from {
        debug!(client = %from, signer = %command.client(), "submission refused: another key's command");
        return Err(HandlerError::Refused(format!(
            "the command is signed by {}, not by the client that sent it ({from})",
            command.client()
        )));
    }
    command.verify().map_err(|e| {
        debug!(client = %from, error = %e, "submission refused: bad signature");
        HandlerError::Refused(format!("the command's signature does not verify: {e}"))
    })
}

impl ControlHandler {
    async fn ask(&self, request: Request) -> Result<(), HandlerError> {
        self.requests.send(request).await.map_err(|_| stopped())
    }

    async fn members(&self) -> Result<(Members, ValidatorSet), HandlerError> {
        let (reply, answer) = oneshot::channel();
        self.ask(Request::Members(reply)).await?;
        answer.await.map_err(|_| stopped())
    }

    /// This node's approval of `op` on the newest set it knows, asked by
    /// `from`: refused unless `from` is an operator, this node is a
    /// validator of that set and `op` fits it.
    async fn approve(&self, from: NodeId, op: SetOp) -> Result<Approval, HandlerError> {
        if !self.operators.contains(&from) {
            warn!(client = %from, ?op, "approval refused: not an operator of this node");
            return Err(HandlerError::Refused(format!(
                "{from} is not an operator of this node"
            )));
        }
        let (members, set) = self.members().await?;
        let me = self.keys.node_id();
        if !set.contains(&me) {
            return Err(HandlerError::Refused(format!(
                "{me} is not a validator of the newest set (version {})",
                members.version
            )));
        }
        op.apply(&set).map_err(HandlerError::Refused)?;
        let (approver, signature) = SetChange::approve(&self.keys, members.version, &set, &op);
        info!(client = %from, ?op, version = members.version, "set change approved");
        Ok(Approval {
            version: members.version,
            set: set.fingerprint(),
            approver,
            signature,
        })
    }
}

fn stopped() -> HandlerError {
    HandlerError::Failed("the node is stopping".into())
}

/// A handler that passes on frames from the validators only (the
/// [`Roster`]'s members, following the validator sets): a message from
/// another key is dropped, a request refused. Over QUIC `from` is the key
/// the peer's handshake proved, so a host with a key outside the validator
/// sets cannot get a frame to `inner`.
pub(crate) struct ValidatorsOnly {
    pub(crate) validators: Arc<Roster>,
    pub(crate) inner: Arc<dyn Handler>,
}

#[async_trait]
impl Handler for ValidatorsOnly {
    async fn request(
        &self,
        from: NodeId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        if !self.validators.allows(&from) {
            // Anyone can try (a node waiting to be added does, often): at
            // a bounded rate.
            if let Some(suppressed) = DROPPED_LOG.allow() {
                warn!(peer = %from, ?protocol, suppressed, "request refused: not a validator");
            }
            return Err(HandlerError::Refused(format!(
                "{from} is not a validator of this cluster"
            )));
        }
        self.inner.request(from, protocol, payload).await
    }

    async fn message(&self, from: NodeId, protocol: Protocol, payload: Vec<u8>) {
        if !self.validators.allows(&from) {
            if let Some(suppressed) = DROPPED_LOG.allow() {
                warn!(peer = %from, ?protocol, suppressed, "message dropped: not a validator");
            }
            return;
        }
        self.inner.message(from, protocol, payload).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_consensus::BatchProof;
    use hologram_receipt::KeyPair;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);

    #[async_trait]
    impl Handler for Count {
        async fn request(
            &self,
            _: NodeId,
            _: Protocol,
            p: Vec<u8>,
        ) -> Result<Vec<u8>, HandlerError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(p)
        }
        async fn message(&self, _: NodeId, _: Protocol, _: Vec<u8>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn only_validators_reach_the_inner_handler() {
        let validator = NodeId::from_bytes([1; 32]);
        let stranger = NodeId::from_bytes([2; 32]);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let roster = Roster::new(validator, vec![validator], Default::default());
        let gate = ValidatorsOnly {
            validators: Arc::new(roster),
            inner: count.clone(),
        };
        let p = hologram_consensus::CONSENSUS_PROTOCOL;
        assert!(gate.request(stranger, p, vec![1]).await.is_err());
        gate.message(stranger, p, vec![1]).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        assert_eq!(
            gate.request(validator, p, vec![1]).await.ok(),
            Some(vec![1])
        );
        gate.message(validator, p, vec![1]).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn only_operators_get_approvals_and_only_of_changes_that_fit() {
        use hologram_consensus::Membership;
        let node = KeyPair::from_seed([1; 32]);
        let others: Vec<KeyPair> = (2..=4u8).map(|i| KeyPair::from_seed([i; 32])).collect();
        let mut ids = vec![node.node_id()];
        ids.extend(others.iter().map(KeyPair::node_id));
        let set = ValidatorSet::new(ids.clone()).unwrap();
        let operator = NodeId::from_bytes([9; 32]);
        let (requests, mut incoming) = mpsc::channel(4);
        let membership = Membership::from(set.clone());
        tokio::spawn(async move {
            while let Some(request) = incoming.recv().await {
                if let Request::Members(reply) = request {
                    let members = Members::of(ids[0], &membership, Vec::new());
                    let _ = reply.send((members, membership.newest().clone()));
                }
            }
        });
        let handler = ControlHandler {
            requests,
            keys: node.clone(),
            operators: Arc::new(vec![operator]),
        };
        let newcomer = NodeId::from_bytes([5; 32]);
        let stranger = NodeId::from_bytes([6; 32]);
        let refused = handler.approve(stranger, SetOp::Add(newcomer)).await;
        assert!(matches!(refused, Err(HandlerError::Refused(why)) if why.contains("operator")));
        let misfit = handler.approve(operator, SetOp::Remove(newcomer)).await;
        assert!(
            matches!(misfit, Err(HandlerError::Refused(_))),
            "{misfit:?}"
        );
        let approval = handler
            .approve(operator, SetOp::Add(newcomer))
            .await
            .unwrap();
        assert_eq!((approval.version, approval.set), (0, set.fingerprint()));
        assert_eq!(approval.approver, node.node_id());
        // With two more, it is a change the set's quorum approved.
        let op = SetOp::Add(newcomer);
        let mut approvals = vec![(approval.approver, approval.signature)];
        approvals.extend(
            others[..2]
                .iter()
                .map(|k| SetChange::approve(k, 0, &set, &op)),
        );
        let change = SetChange::new(0, op, approvals);
        assert_eq!(change.verify(0, &set).unwrap().len(), 5);
    }

    #[test]
    fn a_submission_must_be_signed_by_its_sender() {
        let client = KeyPair::from_seed([3; 32]);
        let other = KeyPair::from_seed([4; 32]);
        let command = Command::sign(&client, 0, 0, b"x".to_vec()).unwrap();
        assert!(check_submission(client.node_id(), &command).is_ok());
        assert!(check_submission(other.node_id(), &command).is_err());
        let forged = Command::from_parts(
            client.node_id(),
            0,
            0,
            command.signature(),
            BatchProof::single(),
            b"y".to_vec(),
        )
        .unwrap();
        assert!(check_submission(client.node_id(), &forged).is_err());
        // Signed at once: each verifies; one with a sibling's proof does not.
        let two = Command::sign_batch(&client, [(1, 0, b"a"[..].into()), (2, 0, b"b"[..].into())])
            .unwrap();
        assert!(two
            .iter()
            .all(|c| check_submission(client.node_id(), c).is_ok()));
        let swapped = Command::from_parts(
            client.node_id(),
            1,
            0,
            two[0].signature(),
            two[1].proof().clone(),
            b"a".to_vec(),
        )
        .unwrap();
        assert!(check_submission(client.node_id(), &swapped).is_err());
    }
}
