//! The node task: owns the replicated state machine, applies decisions,
//! answers clients and asks peers for decisions it may have missed (see
//! [`run`](super::run)).

use super::applied::AppliedLog;
use super::control::{NotApplied, Status, SubmitAnswer, LOG_PAGE_BYTES, LOG_PAGE_COMMANDS};
use super::error::NodeError;
use super::outbound::Queued;
use super::run::SYNC_INTERVAL;
use super::service::Request;
use super::state::CommandList;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use hologram_consensus::{
    Command, ConsensusError, ConsensusMessage, Decision, DriverHandle, Lookup, Outcome,
    ReplicatedStateMachine,
};
use hologram_lattice::transport::Transport;
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// Where the answer to a submitted command goes.
pub(crate) type SubmitReply = oneshot::Sender<SubmitAnswer>;

/// The most client commands handed to the driver in one submission: what
/// the node task drains from its queue per wakeup.
const SUBMIT_BATCH: usize = 1024;
/// The most submissions the node task has handed to the driver and not yet
/// had answered; past it, client requests wait in their (bounded) queue.
const SUBMITS_IN_FLIGHT: usize = 4;

/// A submission handed to the driver: its commands' (client, sequence),
/// and the driver's answer.
type Submitting = BoxFuture<'static, (Vec<(NodeId, u64)>, Result<usize, ConsensusError>)>;

/// What the clients of a submission the driver refused are told: "busy,
/// retry" when the mempool is full, else why.
fn refusal(e: ConsensusError) -> SubmitAnswer {
    match e {
        ConsensusError::MempoolFull { .. } => SubmitAnswer::Busy,
        e => SubmitAnswer::Refused(e.to_string()),
    }
}

/// The node task: see the [module docs](self).
///
/// Clients waiting for a command are keyed by (client, sequence), the
/// command's identity in its client's session, and every outcome of a
/// decided command answers them: applied, a duplicate (with the first
/// answer), stale or beyond its session's window. A submission already
/// answered is answered from the session table at once.
pub(crate) struct NodeTask {
    rsm: ReplicatedStateMachine<CommandList>,
    /// The applied commands on disk (log pages are read from it).
    applied: AppliedLog,
    skipped: u64,
    waiters: HashMap<(NodeId, u64), Vec<SubmitReply>>,
    handle: DriverHandle,
    transport: Queued,
    peers: Vec<NodeId>,
    sync_turn: usize,
}

impl NodeTask {
    pub(crate) fn new(
        rsm: ReplicatedStateMachine<CommandList>,
        applied: AppliedLog,
        handle: DriverHandle,
        transport: Queued,
        peers: Vec<NodeId>,
    ) -> NodeTask {
        NodeTask {
            rsm,
            applied,
            skipped: 0,
            waiters: HashMap::new(),
            handle,
            transport,
            peers,
            sync_turn: 0,
        }
    }

    /// Serves until the driver stops delivering decisions.
    pub(crate) async fn serve(
        mut self,
        mut incoming: mpsc::Receiver<Request>,
        mut decisions: futures::channel::mpsc::UnboundedReceiver<Decision>,
    ) -> Result<(), NodeError> {
        let mut sync = tokio::time::interval(SYNC_INTERVAL);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut submitting: FuturesUnordered<Submitting> = FuturesUnordered::new();
        loop {
            tokio::select! {
                decision = decisions.next() => match decision {
                    Some(decision) => self.apply(&decision).await?,
                    None => return Ok(()),
                },
                Some(request) = incoming.recv(), if submitting.len() < SUBMITS_IN_FLIGHT => {
                    // Everything queued goes to the driver as one
                    // submission: one driver round and one durable write
                    // for all of it, and the task does not wait for it.
                    let mut batch = Vec::new();
                    self.answer(request, &mut batch).await;
                    while batch.len() < SUBMIT_BATCH {
                        let Ok(request) = incoming.try_recv() else { break };
                        self.answer(request, &mut batch).await;
                    }
                    if let Some(submission) = self.submit(batch) {
                        submitting.push(submission);
                    }
                }
                Some((keys, answer)) = submitting.next() => self.submitted(&keys, answer),
                _ = sync.tick() => {
                    self.applied.flush().await?;
                    self.ask_for_decisions().await
                }
            }
        }
    }

    /// Hands `batch` to the driver (gossiped to the other validators, and
    /// kept durably before the driver answers); `None` if it is empty.
    fn submit(&self, batch: Vec<Command>) -> Option<Submitting> {
        if batch.is_empty() {
            return None;
        }
        let keys = batch.iter().map(|c| (c.client(), c.sequence())).collect();
        let handle = self.handle.clone();
        Some(async move { (keys, handle.submit(batch, true).await) }.boxed())
    }

    /// The driver's answer to a submission: taken, its commands' clients
    /// wait for them to be applied; refused, they are answered now ("busy,
    /// retry" when the mempool is full, else the reason).
    fn submitted(&mut self, keys: &[(NodeId, u64)], answer: Result<usize, ConsensusError>) {
        let Err(e) = answer else { return };
        let refusal = refusal(e);
        for key in keys {
            for reply in self.waiters.remove(key).unwrap_or_default() {
                let _ = reply.send(refusal.clone());
            }
        }
    }

    /// Applies a decision, records its commands for log pages and answers
    /// the clients waiting for its commands, whatever became of each.
    async fn apply(&mut self, decision: &Decision) -> Result<(), NodeError> {
        let answers = self.rsm.apply_decision(decision)?;
        if self.applied.record(decision, &answers) {
            self.applied.flush().await?;
        }
        let mut new = 0;
        for answer in &answers {
            let response = match &answer.outcome {
                Outcome::Applied(done) => {
                    new += 1;
                    SubmitAnswer::Applied(done.output)
                }
                Outcome::Duplicate(first) => SubmitAnswer::Applied(*first),
                Outcome::Stale => SubmitAnswer::NotApplied(self.not_applied(answer.client, false)),
                Outcome::Refused => SubmitAnswer::NotApplied(self.not_applied(answer.client, true)),
            };
            let key = (answer.client, answer.sequence);
            for reply in self.waiters.remove(&key).unwrap_or_default() {
                let _ = reply.send(response.clone());
            }
        }
        self.skipped += (answers.len() - new) as u64;
        info!(
            height = decision.height(),
            commands = decision.batch.len(),
            new,
            applied = self.rsm.applied_count(),
            head = %self.rsm.receipt_chain().head(),
            "decided"
        );
        Ok(())
    }

    /// Why `client`'s command was not applied: stale, or (`ahead`) beyond
    /// its session's window.
    fn not_applied(&self, client: NodeId, ahead: bool) -> NotApplied {
        let sessions = self.rsm.sessions();
        let first_unanswered = sessions.first_unanswered(&client).unwrap_or(0);
        match ahead {
            true => NotApplied::OutOfWindow {
                first_unanswered,
                window: sessions.limits().window,
            },
            false => NotApplied::Stale { first_unanswered },
        }
    }

    /// Answers `request`, or (a submission not applied yet) registers
    /// its waiter and adds its command to `batch`, for the driver.
    async fn answer(&mut self, request: Request, batch: &mut Vec<Command>) {
        match request {
            Request::Submit(command, reply) => {
                let key = (command.client(), command.sequence());
                // The session table first: a retry of an applied command
                // gets its first answer, a stale one its error, at once.
                match self.rsm.sessions().lookup(&key.0, key.1) {
                    Lookup::Answered(&ack) => {
                        let _ = reply.send(SubmitAnswer::Applied(ack));
                        return;
                    }
                    Lookup::Stale => {
                        let why = self.not_applied(key.0, false);
                        let _ = reply.send(SubmitAnswer::NotApplied(why));
                        return;
                    }
                    Lookup::Unknown => {}
                }
                // Answered once applied (committed, durable on this node).
                self.waiters.entry(key).or_default().push(reply);
                batch.push(command);
            }
            Request::Status(reply) => {
                let chain = self.rsm.receipt_chain();
                let _ = reply.send(Status {
                    node: self.transport.local_id(),
                    heights: self.rsm.next_height(),
                    applied: chain.len(),
                    head: chain.head(),
                    skipped: self.skipped,
                });
            }
            Request::Log(from, reply) => {
                let limit = self.rsm.state().len();
                let page = (self.applied)
                    .page(from, limit, LOG_PAGE_COMMANDS, LOG_PAGE_BYTES)
                    .await;
                match page {
                    Ok(page) => {
                        let _ = reply.send(page);
                    }
                    // The client's request fails (its reply is dropped).
                    Err(e) => warn!(%e, from, "reading a log page"),
                }
            }
        }
    }

    /// Asks the next peer in turn for decisions from this node's next
    /// height on, and forgets clients that stopped waiting.
    async fn ask_for_decisions(&mut self) {
        self.waiters.retain(|_, replies| {
            replies.retain(|reply| !reply.is_closed());
            !replies.is_empty()
        });
        let Some(&peer) = self.peers.get(self.sync_turn % self.peers.len().max(1)) else {
            return;
        };
        self.sync_turn = self.sync_turn.wrapping_add(1);
        let request = ConsensusMessage::SyncRequest {
            from: self.rsm.next_height(),
        };
        if let Ok(bytes) = request.to_wire() {
            // Queued: a failure is a lost message, asked again next time.
            let _ = self
                .transport
                .send(peer, hologram_consensus::CONSENSUS_PROTOCOL, bytes)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_mempool_is_busy_and_other_errors_refuse() {
        let full = ConsensusError::MempoolFull { capacity: 4 };
        assert!(matches!(refusal(full), SubmitAnswer::Busy));
        let stopped = ConsensusError::Stopped(NodeId::from_bytes([5; 32]));
        assert!(matches!(refusal(stopped), SubmitAnswer::Refused(why) if !why.is_empty()));
    }
}
