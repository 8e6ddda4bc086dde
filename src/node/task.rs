//! The node task: owns the replicated state machine, applies decisions,
//! answers clients and asks peers for decisions it may have missed (see
//! [`run`](super::run)).

use super::control::{Status, LOG_PAGE_BYTES, LOG_PAGE_COMMANDS};
use super::error::NodeError;
use super::outbound::Queued;
use super::run::SYNC_INTERVAL;
use super::service::{Refusal, Reply, Request};
use super::state::{Ack, CommandList};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use hologram_consensus::{
    Command, CommandId, ConsensusError, ConsensusMessage, Decision, DriverHandle,
    ReplicatedStateMachine,
};
use hologram_lattice::transport::Transport;
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use std::collections::HashMap;
use tokio::sync::mpsc;
use tracing::info;

/// The most client commands handed to the driver in one submission: what
/// the node task drains from its queue per wakeup.
const SUBMIT_BATCH: usize = 1024;
/// The most submissions the node task has handed to the driver and not yet
/// had answered; past it, client requests wait in their (bounded) queue.
const SUBMITS_IN_FLIGHT: usize = 4;

/// A submission handed to the driver: its commands' ids, and the driver's
/// answer.
type Submitting = BoxFuture<'static, (Vec<CommandId>, Result<usize, ConsensusError>)>;

/// The node task: see the [module docs](self).
pub(crate) struct NodeTask {
    rsm: ReplicatedStateMachine<CommandList>,
    acks: HashMap<CommandId, Ack>,
    skipped: u64,
    waiters: HashMap<CommandId, Vec<Reply>>,
    handle: DriverHandle,
    transport: Queued,
    peers: Vec<NodeId>,
    sync_turn: usize,
}

impl NodeTask {
    pub(crate) fn new(
        rsm: ReplicatedStateMachine<CommandList>,
        acks: HashMap<CommandId, Ack>,
        handle: DriverHandle,
        transport: Queued,
        peers: Vec<NodeId>,
    ) -> NodeTask {
        NodeTask {
            rsm,
            acks,
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
                    Some(decision) => self.apply(&decision)?,
                    None => return Ok(()),
                },
                Some(request) = incoming.recv(), if submitting.len() < SUBMITS_IN_FLIGHT => {
                    // Everything queued goes to the driver as one
                    // submission: one driver round and one durable write
                    // for all of it, and the task does not wait for it.
                    let mut batch = Vec::new();
                    self.answer(request, &mut batch);
                    while batch.len() < SUBMIT_BATCH {
                        let Ok(request) = incoming.try_recv() else { break };
                        self.answer(request, &mut batch);
                    }
                    if let Some(submission) = self.submit(batch) {
                        submitting.push(submission);
                    }
                }
                Some((ids, answer)) = submitting.next() => self.submitted(&ids, answer),
                _ = sync.tick() => self.ask_for_decisions().await,
            }
        }
    }

    /// Hands `batch` to the driver (gossiped to the other validators, and
    /// kept durably before the driver answers); `None` if it is empty.
    fn submit(&self, batch: Vec<Command>) -> Option<Submitting> {
        if batch.is_empty() {
            return None;
        }
        let ids = batch.iter().map(Command::id).collect();
        let handle = self.handle.clone();
        Some(async move { (ids, handle.submit(batch, true).await) }.boxed())
    }

    /// The driver's answer to a submission: taken, its commands' clients
    /// wait for them to be applied; refused, they are answered now ("busy,
    /// retry" when the mempool is full).
    fn submitted(&mut self, ids: &[CommandId], answer: Result<usize, ConsensusError>) {
        let Err(e) = answer else { return };
        let refusal = Refusal::of(e);
        for id in ids {
            for reply in self.waiters.remove(id).unwrap_or_default() {
                let _ = reply.send(Err(refusal.clone()));
            }
        }
    }

    /// Applies a decision and answers the clients waiting for its commands.
    fn apply(&mut self, decision: &Decision) -> Result<(), NodeError> {
        let applied = self.rsm.apply_decision(decision)?;
        self.skipped += (decision.batch.len() - applied.len()) as u64;
        for done in &applied {
            let ack = Ack {
                height: done.entry.height,
                position: done.output,
            };
            self.acks.insert(done.entry.command, ack);
            for reply in self.waiters.remove(&done.entry.command).unwrap_or_default() {
                let _ = reply.send(Ok(ack));
            }
        }
        info!(
            height = decision.height(),
            commands = decision.batch.len(),
            new = applied.len(),
            applied = self.rsm.log().len(),
            head = %self.rsm.receipt_chain().head(),
            "decided"
        );
        Ok(())
    }

    /// Answers `request`, or (a submission not applied yet) registers
    /// its waiter and adds its command to `batch`, for the driver.
    fn answer(&mut self, request: Request, batch: &mut Vec<Command>) {
        match request {
            Request::Submit(command, reply) => {
                let id = command.id();
                if let Some(&ack) = self.acks.get(&id) {
                    let _ = reply.send(Ok(ack));
                    return;
                }
                // Answered once applied (committed, durable on this node).
                self.waiters.entry(id).or_default().push(reply);
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
                let state = self.rsm.state();
                let page = state
                    .page(from, LOG_PAGE_COMMANDS, LOG_PAGE_BYTES)
                    .filter_map(|p| {
                        let entry = self.rsm.log().get(usize::try_from(p).ok()?)?;
                        Some((state.get(p)?.clone(), entry.receipt))
                    })
                    .collect();
                let _ = reply.send(page);
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
