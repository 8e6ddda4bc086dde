//! The node task: answers clients from what the node's replicated state
//! machine applied (the consensus driver runs it, see
//! [`machine`](super::machine)), keeps the applied commands for log pages
//! and asks peers for decisions it may have missed (see [`run`](super::run)).

use super::applied::AppliedLog;
use super::control::{
    ControlRequest, ControlResponse, LogPage, NotApplied, Status, SubmitAnswer, CONTROL,
    LOG_PAGE_BYTES, LOG_PAGE_COMMANDS, QUERY_TIMEOUT,
};
use super::durable::DurablePoint;
use super::error::NodeError;
use super::machine::{Event, Point, SharedMachine};
use super::outbound::Queued;
use super::reconfig::Members;
use super::roster::Roster;
use super::run::SYNC_INTERVAL;
use super::service::Request;
use super::watch::Watch;
use crate::net::QuicTransport;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use hologram_consensus::{
    Answer, Command, ConsensusError, ConsensusMessage, Decision, DriverHandle, Lookup, Outcome,
};
use hologram_lattice::transport::Transport;
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use metrics::{Counter, Gauge};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// Where the answer to a submitted command goes.
pub(crate) type SubmitReply = oneshot::Sender<SubmitAnswer>;

/// The most client commands handed to the driver in one submission: what
/// the node task drains from its queue per wakeup.
const SUBMIT_BATCH: usize = 1024;
/// The most submissions the node task has handed to the driver and not yet
/// had answered; past it, client requests wait in their (bounded) queue.
const SUBMITS_IN_FLIGHT: usize = 4;

/// The answers of an applied height to the clients waiting for its
/// commands, by (client, sequence).
type Answers = Vec<((NodeId, u64), SubmitAnswer)>;

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
/// answer), stale or beyond its session's window, once the height that
/// decided it is durable on this node (the driver hands a decision on
/// after its write). A submission already answered is answered from the
/// session table at once.
pub(crate) struct NodeTask {
    machine: SharedMachine,
    /// What the driver did with the machine, in order.
    events: mpsc::UnboundedReceiver<Event>,
    /// The applied commands on disk (log pages are read from it).
    applied: AppliedLog,
    skipped: u64,
    waiters: HashMap<(NodeId, u64), Vec<SubmitReply>>,
    /// Answers of heights applied and not yet durable, by height.
    held: VecDeque<(u64, Answers)>,
    /// How far the machine's state is durable: what the status and log
    /// pages report (see [`durable`](super::durable)).
    durable: DurablePoint,
    /// Snapshots fetched from peers and restored since the node started.
    restored: u64,
    handle: DriverHandle,
    transport: Queued,
    /// Who the peers are, following the validator sets.
    roster: Arc<Roster>,
    /// The transport under `transport` (where new peers' addresses are
    /// learned).
    quic: QuicTransport,
    peers: Vec<NodeId>,
    sync_turn: usize,
    /// The question to a peer of where the members listen, if one was asked.
    asking: Option<tokio::task::JoinHandle<()>>,
    watch: Arc<Watch>,
    applied_gauge: Gauge,
    restores: Counter,
}

impl NodeTask {
    pub(crate) fn new(
        machine: SharedMachine,
        events: mpsc::UnboundedReceiver<Event>,
        applied: AppliedLog,
        handle: DriverHandle,
        transport: Queued,
        (roster, quic): (Arc<Roster>, QuicTransport),
        watch: Arc<Watch>,
    ) -> NodeTask {
        let peers = roster.peers();
        let recovered = Point::of(&machine.lock());
        NodeTask {
            machine,
            events,
            applied,
            skipped: 0,
            waiters: HashMap::new(),
            held: VecDeque::new(),
            durable: DurablePoint::new(recovered),
            restored: 0,
            handle,
            transport,
            roster,
            quic,
            peers,
            sync_turn: 0,
            asking: None,
            watch,
            applied_gauge: metrics::gauge!("hologram_node_applied_commands"),
            restores: metrics::counter!("hologram_node_snapshots_restored_total"),
        }
    }

    /// Takes what the machine did while the driver rebuilt it from the
    /// node's store (its own snapshot restored, the log after it applied):
    /// the applied table completed, nothing counted as a state sync, all of
    /// it durable.
    pub(crate) async fn recover(&mut self) -> Result<(), NodeError> {
        while let Ok(event) = self.events.try_recv() {
            self.on_event(event, false).await?;
        }
        self.durable = DurablePoint::new(Point::of(&self.machine.lock()));
        self.applied.flush().await
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
                Some(event) = self.events.recv() => self.on_event(event, true).await?,
                decision = decisions.next() => match decision {
                    Some(decision) => self.durable(&decision).await?,
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

    /// What the driver did with the machine: an applied height's commands
    /// recorded for log pages and their answers held until the height is
    /// durable; a restore moves the applied table to the snapshot (and,
    /// `serving`, counts as a state sync).
    async fn on_event(&mut self, event: Event, serving: bool) -> Result<(), NodeError> {
        let done = self.take_event(event, serving).await;
        self.follow_membership();
        done
    }

    /// The peers follow the validator sets the machine applied: the
    /// consensus gate, the send queues and the peers asked for decisions.
    fn follow_membership(&mut self) {
        let changed = self.roster.follow(self.machine.lock().membership());
        if let Some(peers) = changed {
            self.transport.set_peers(&peers);
            self.peers = peers;
            self.roster.learn_addresses(&self.quic);
        }
    }

    async fn take_event(&mut self, event: Event, serving: bool) -> Result<(), NodeError> {
        match event {
            Event::Applied(decision, answers, point) => {
                self.durable.applied(decision.height(), point);
                self.applied(&decision, &answers).await
            }
            Event::Restored(point) => {
                self.durable.restored(point);
                let (height, applied) = (point.heights, point.chain.len());
                self.applied.restart_at(applied).await?;
                if serving {
                    self.restored += 1;
                    self.restores.increment(1);
                    info!(
                        height,
                        applied, "restored a certified snapshot fetched from peers"
                    );
                }
                self.progress();
                Ok(())
            }
        }
    }

    /// An applied height: its commands recorded for log pages, the answers
    /// of the clients waiting for them held until it is durable.
    async fn applied(
        &mut self,
        decision: &Decision,
        answers: &[Answer<super::state::Ack>],
    ) -> Result<(), NodeError> {
        if self.applied.record(decision, answers) {
            self.applied.flush().await?;
        }
        let mut new = 0;
        let mut held = Vec::new();
        for answer in answers {
            let response = match &answer.outcome {
                Outcome::Applied(done) => {
                    new += 1;
                    SubmitAnswer::Applied(done.output.clone())
                }
                Outcome::Duplicate(first) => SubmitAnswer::Applied(first.clone()),
                Outcome::Stale => SubmitAnswer::NotApplied(self.not_applied(answer.client, false)),
                Outcome::Refused => SubmitAnswer::NotApplied(self.not_applied(answer.client, true)),
            };
            let key = (answer.client, answer.sequence);
            if self.waiters.contains_key(&key) {
                held.push((key, response));
            }
        }
        if !held.is_empty() {
            self.held.push_back((decision.height(), held));
        }
        self.skipped += (answers.len() - new) as u64;
        self.progress();
        debug!(
            height = decision.height(),
            commands = decision.batch.len(),
            new,
            "applied"
        );
        Ok(())
    }

    /// The driver handed `decision` on: it and every height before it are
    /// durable on this node, so their clients are answered.
    async fn durable(&mut self, decision: &Decision) -> Result<(), NodeError> {
        // The machine applied it before the driver wrote it and handed it
        // on: its event is in, and taken first.
        while let Ok(event) = self.events.try_recv() {
            self.on_event(event, true).await?;
        }
        self.durable.handed_on(decision.height());
        while self
            .held
            .front()
            .is_some_and(|(h, _)| *h <= decision.height())
        {
            let Some((_, answers)) = self.held.pop_front() else {
                break;
            };
            for (key, response) in answers {
                for reply in self.waiters.remove(&key).unwrap_or_default() {
                    let _ = reply.send(response.clone());
                }
            }
        }
        Ok(())
    }

    /// The gauges and the watch follow the machine.
    fn progress(&self) {
        let (next, applied) = {
            let rsm = self.machine.lock();
            (rsm.next_height(), rsm.applied_count())
        };
        self.applied_gauge.set(applied as f64);
        self.watch.progress(next, self.waiters.len());
    }

    /// Why `client`'s command was not applied: stale, or (`ahead`) beyond
    /// its session's window.
    fn not_applied(&self, client: NodeId, ahead: bool) -> NotApplied {
        let rsm = self.machine.lock();
        let sessions = rsm.sessions();
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
                metrics::counter!("hologram_node_client_requests_total", "kind" => "submit")
                    .increment(1);
                let key = (command.client(), command.sequence());
                // The session table first: a retry of an applied command
                // gets its first answer, a stale one its error, at once.
                let known = match self.machine.lock().sessions().lookup(&key.0, key.1) {
                    Lookup::Answered(ack) => Some(Some(ack.clone())),
                    Lookup::Stale => Some(None),
                    Lookup::Unknown => None,
                };
                match known {
                    Some(Some(ack)) => {
                        let _ = reply.send(SubmitAnswer::Applied(ack));
                        return;
                    }
                    Some(None) => {
                        let why = self.not_applied(key.0, false);
                        let _ = reply.send(SubmitAnswer::NotApplied(why));
                        return;
                    }
                    None => {}
                }
                // Answered once applied (committed, durable on this node).
                self.waiters.entry(key).or_default().push(reply);
                batch.push(command);
            }
            Request::Status(reply) => {
                metrics::counter!("hologram_node_client_requests_total", "kind" => "status")
                    .increment(1);
                let _ = reply.send(self.status());
            }
            Request::Report(reply) => {
                metrics::counter!("hologram_node_client_requests_total", "kind" => "report")
                    .increment(1);
                let _ = reply.send(self.watch.report(self.status()));
            }
            Request::Members(reply) => {
                let rsm = self.machine.lock();
                let membership = rsm.membership();
                let addresses = self.roster.addresses();
                let members = Members::of(self.transport.local_id(), membership, addresses);
                let _ = reply.send((members, membership.newest().clone()));
            }
            Request::ChangeSet(change, reply) => {
                let handle = self.handle.clone();
                tokio::spawn(async move {
                    let _ = reply.send(handle.propose_set_change(change).await);
                });
            }
            Request::Log(from, reply) => {
                metrics::counter!("hologram_node_client_requests_total", "kind" => "log")
                    .increment(1);
                // Durable commands only, as the status reports.
                let limit = self.durable.point().chain.len();
                let page = (self.applied)
                    .page(from, limit, LOG_PAGE_COMMANDS, LOG_PAGE_BYTES)
                    .await;
                match page {
                    Ok((first, commands)) => {
                        let _ = reply.send(LogPage { first, commands });
                    }
                    // The client's request fails (its reply is dropped).
                    Err(e) => warn!(%e, from, "reading a log page"),
                }
            }
        }
    }

    /// The node's status: its durable state (what a restart recovers),
    /// never the machine's, which runs ahead of the store.
    fn status(&self) -> Status {
        let Point { heights, chain } = self.durable.point();
        Status {
            node: self.transport.local_id(),
            heights,
            applied: chain.len(),
            head: chain.head(),
            skipped: self.skipped,
            snapshot: self.machine.snapshot_height(),
            restored: self.restored,
        }
    }

    /// If a peer has no address, asks `peer` where the members listen (one
    /// question at a time).
    fn ask_for_addresses(&mut self, peer: NodeId) {
        if !self.roster.missing_addresses()
            || self.asking.as_ref().is_some_and(|t| !t.is_finished())
        {
            return;
        }
        let (roster, quic) = (self.roster.clone(), self.quic.clone());
        self.asking = Some(tokio::spawn(async move {
            let Ok(request) = ControlRequest::Members.encode() else {
                return;
            };
            let answer = quic.request(peer, CONTROL, request, QUERY_TIMEOUT).await;
            match answer
                .map_err(NodeError::from)
                .and_then(|a| ControlResponse::decode(&a))
            {
                Ok(ControlResponse::Members(m)) => {
                    roster.learn_given(peer, &m.addresses);
                }
                Ok(_) => debug!(%peer, "a peer answered another response to Members"),
                Err(e) => debug!(%peer, error = %e, "asking a peer where the members listen"),
            }
        }));
    }

    /// Asks the next peer in turn for decisions from this node's next
    /// height on, and forgets clients that stopped waiting.
    async fn ask_for_decisions(&mut self) {
        self.waiters.retain(|_, replies| {
            replies.retain(|reply| !reply.is_closed());
            !replies.is_empty()
        });
        self.progress();
        self.roster.learn_addresses(&self.quic);
        let Some(&peer) = self.peers.get(self.sync_turn % self.peers.len().max(1)) else {
            return;
        };
        self.sync_turn = self.sync_turn.wrapping_add(1);
        self.ask_for_addresses(peer);
        let request = ConsensusMessage::SyncRequest {
            from: self.machine.lock().next_height(),
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
