//! The node task: owns the replicated state machine, applies decisions,
//! answers clients and asks peers for decisions it may have missed (see
//! [`run`](super::run)).

use super::applied::AppliedLog;
use super::control::{Status, LOG_PAGE_BYTES, LOG_PAGE_COMMANDS};
use super::error::NodeError;
use super::outbound::Queued;
use super::run::SYNC_INTERVAL;
use super::service::Request;
use super::state::{Ack, CommandList};
use futures::StreamExt;
use hologram_consensus::{
    CommandId, ConsensusMessage, Decision, DriverHandle, ReplicatedStateMachine,
};
use hologram_lattice::transport::Transport;
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// The node task: see the [module docs](self).
pub(crate) struct NodeTask {
    rsm: ReplicatedStateMachine<CommandList>,
    /// The applied commands on disk (log pages are read from it).
    applied: AppliedLog,
    acks: HashMap<CommandId, Ack>,
    skipped: u64,
    waiters: HashMap<CommandId, Vec<oneshot::Sender<Result<Ack, String>>>>,
    handle: DriverHandle,
    transport: Queued,
    peers: Vec<NodeId>,
    sync_turn: usize,
}

impl NodeTask {
    pub(crate) fn new(
        rsm: ReplicatedStateMachine<CommandList>,
        applied: AppliedLog,
        acks: HashMap<CommandId, Ack>,
        handle: DriverHandle,
        transport: Queued,
        peers: Vec<NodeId>,
    ) -> NodeTask {
        NodeTask {
            rsm,
            applied,
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
        loop {
            tokio::select! {
                decision = decisions.next() => match decision {
                    Some(decision) => self.apply(&decision).await?,
                    None => return Ok(()),
                },
                Some(request) = incoming.recv() => self.answer(request).await,
                _ = sync.tick() => {
                    self.applied.flush().await?;
                    self.ask_for_decisions().await
                }
            }
        }
    }

    /// Applies a decision, records its commands for log pages and answers
    /// the clients waiting for them.
    async fn apply(&mut self, decision: &Decision) -> Result<(), NodeError> {
        let applied = self.rsm.apply_decision(decision)?;
        if self.applied.record(decision, &applied) {
            self.applied.flush().await?;
        }
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

    async fn answer(&mut self, request: Request) {
        match request {
            Request::Submit(command, reply) => {
                let id = command.id();
                if let Some(&ack) = self.acks.get(&id) {
                    let _ = reply.send(Ok(ack));
                    return;
                }
                // Answered once the driver made the command durable.
                match self.handle.submit(vec![command], true).await {
                    Ok(_) => self.waiters.entry(id).or_default().push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
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
