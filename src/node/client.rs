//! [`Client`]: a client of validator nodes, over QUIC with a key of its own.

use super::control::{
    ControlRequest, ControlResponse, LogPage, Status, SubmitAnswer, CONTROL, MAX_CONTROL_BYTES,
    QUERY_TIMEOUT, SUBMIT_PATIENCE,
};
use super::error::NodeError;
use super::reconfig::{Approval, Members};
use super::state::Ack;
use super::watch::NodeReport;
use crate::net::{AddressBook, QuicConfig, QuicTransport};
use hologram_consensus::{ClientSession, Command, SetChange, SetOp};
use hologram_lattice::transport::{async_trait, Handler, HandlerError, Protocol, Transport};
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Receipt};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many nodes a submission is tried at, in turn, before it fails
/// ([`Client::submit_all`]).
pub const SUBMIT_ATTEMPTS: usize = 4;

/// The first pause before a command a node answered "busy" is submitted
/// again ([`Client::submit`]).
pub const BUSY_BACKOFF: Duration = Duration::from_millis(2);
/// The longest pause between submissions of a command a node answered
/// "busy".
pub const MAX_BUSY_BACKOFF: Duration = Duration::from_millis(100);

/// A client of validator nodes: a QUIC endpoint with the client's key,
/// which serves nothing and asks the nodes it was told about. Each node
/// proves its key in the handshake, and the client proves its own: the
/// commands it submits must be signed with that same key.
///
/// **One session per client.** The client numbers its commands in a
/// [`ClientSession`] of its key ([`Client::command`]), and tells it of the
/// answers it gets, so the nodes' session tables can forget them. Its
/// first sequence is the wall clock in microseconds, so that a new process
/// with an old key (the command line's key file) starts above any number
/// it used before; two clients of one key at once, or a clock set back,
/// break that (their commands would be answered as stale or as another's).
/// [`Client::submit_payload`] retries a submission that timed out or failed
/// on the way with the *same* signed command at the next node: the
/// replicated state machine applies it at most once, and every node
/// answers a retry of an applied command with its first answer.
pub struct Client {
    keys: KeyPair,
    transport: QuicTransport,
    session: Mutex<ClientSession>,
    nodes: Mutex<Vec<NodeId>>,
}

/// Serves no request (a client is only ever the asking side).
struct Serves;

#[async_trait]
impl Handler for Serves {
    async fn request(&self, _: NodeId, _: Protocol, _: Vec<u8>) -> Result<Vec<u8>, HandlerError> {
        Err(HandlerError::Refused("a node client serves nothing".into()))
    }

    async fn message(&self, _: NodeId, _: Protocol, _: Vec<u8>) {}
}

impl Client {
    /// A client with key `keys` of `nodes` (each node's id and address), on
    /// a UDP port of its own (any free one, of the first node's address
    /// family). Must be called within a tokio runtime.
    pub fn new(keys: &KeyPair, nodes: &[(NodeId, SocketAddr)]) -> Result<Self, NodeError> {
        let any: IpAddr = match nodes.first() {
            Some((_, addr)) if addr.is_ipv6() => Ipv6Addr::UNSPECIFIED.into(),
            _ => Ipv4Addr::UNSPECIFIED.into(),
        };
        let book = AddressBook::new();
        for &(node, addr) in nodes {
            book.insert(node, addr);
        }
        let config = QuicConfig {
            max_frame: MAX_CONTROL_BYTES,
            // Nobody but the client itself may connect to it.
            allowed: Some(HashSet::new()),
            ..QuicConfig::default()
        };
        let transport = QuicTransport::bind(
            keys,
            SocketAddr::new(any, 0),
            Arc::new(Serves),
            book,
            config,
        )?;
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2));
        Ok(Self {
            keys: keys.clone(),
            transport,
            session: Mutex::new(ClientSession::starting_at(keys.clone(), start)),
            nodes: Mutex::new(nodes.iter().map(|&(id, _)| id).collect()),
        })
    }

    fn session(&self) -> MutexGuard<'_, ClientSession> {
        // Every update completes before the next fallible step.
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The client's next command, of `payload`: numbered in its session,
    /// signed with its key.
    pub fn command(&self, payload: Vec<u8>) -> Result<Command, NodeError> {
        Ok(self.session().command(payload)?)
    }

    /// Tells the session that `command` will not be retried (it was
    /// answered, or given up): the nodes may forget its answer.
    fn settled(&self, command: &Command) {
        self.session().answered(command.sequence());
    }

    /// A client with a fresh random key, for reading (a status, a log):
    /// its submissions must be signed with [`Client::keys`].
    pub fn anonymous(nodes: &[(NodeId, SocketAddr)]) -> Result<Self, NodeError> {
        let keys = super::keys::random_keys().map_err(|reason| NodeError::Io {
            doing: "making a throwaway client key".into(),
            source: std::io::Error::other(reason),
        })?;
        Self::new(&keys, nodes)
    }

    /// The client's key pair: its id is what nodes know it by.
    pub fn keys(&self) -> &KeyPair {
        &self.keys
    }

    /// Tells the client where `node` listens (again, after a restart on
    /// another address).
    pub fn add_node(&self, node: NodeId, addr: SocketAddr) {
        self.transport.book().insert(node, addr);
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        if !nodes.contains(&node) {
            nodes.push(node);
        }
    }

    async fn call(
        &self,
        node: NodeId,
        request: &ControlRequest,
        timeout: Duration,
    ) -> Result<ControlResponse, NodeError> {
        let answer = self
            .transport
            .request(node, CONTROL, request.encode()?, timeout)
            .await?;
        ControlResponse::decode(&answer)
    }

    /// The client's next commands, of `payloads` (1 to
    /// [`MAX_SUBMIT_COMMANDS`](super::MAX_SUBMIT_COMMANDS)), numbered in its session and signed at once:
    /// one signature for all of them ([`ClientSession::commands`]).
    pub fn commands(&self, payloads: Vec<Vec<u8>>) -> Result<Vec<Command>, NodeError> {
        Ok(self.session().commands(payloads)?)
    }

    /// Makes the client's next command of `payload` ([`command`](Self::command))
    /// and submits it ([`submit_retrying`](Self::submit_retrying)), first
    /// to `node`; returns the command and where it was applied.
    pub async fn submit_payload(
        &self,
        node: NodeId,
        payload: Vec<u8>,
    ) -> Result<(Command, Ack), NodeError> {
        let command = self.command(payload)?;
        let ack = self.submit_retrying(node, &command).await?;
        Ok((command, ack))
    }

    /// Makes the client's next commands of `payloads`, signed at once
    /// ([`commands`](Self::commands)), and submits them in one request
    /// ([`submit_all`](Self::submit_all)), first to `node`; returns each
    /// command with what became of it, in order.
    pub async fn submit_payloads(
        &self,
        node: NodeId,
        payloads: Vec<Vec<u8>>,
    ) -> Result<Vec<(Command, Result<Ack, NodeError>)>, NodeError> {
        let commands = self.commands(payloads)?;
        let answers = self.submit_all(node, &commands).await;
        Ok(commands.into_iter().zip(answers).collect())
    }

    /// [`submit_all`](Self::submit_all) of one command.
    pub async fn submit_retrying(&self, node: NodeId, command: &Command) -> Result<Ack, NodeError> {
        let mut answers = self.submit_all(node, std::slice::from_ref(command)).await;
        answers
            .pop()
            .unwrap_or(Err(NodeError::UnexpectedResponse { got: "no answer" }))
    }

    /// Submits `commands` (at most [`MAX_SUBMIT_COMMANDS`](super::MAX_SUBMIT_COMMANDS)) to `node` in
    /// one request ([`submit_commands`](Self::submit_commands)'s, busy ones
    /// resubmitted) and,
    /// those whose submission failed on the way or stayed pending, the
    /// *same* commands to the next node the client knows,
    /// [`SUBMIT_ATTEMPTS`] tries in all. Each command is applied at most
    /// once whichever nodes it reached. Returns what became of each, in
    /// order; once answered, or after the last try, the session is told
    /// it will not be retried.
    pub async fn submit_all(
        &self,
        node: NodeId,
        commands: &[Command],
    ) -> Vec<Result<Ack, NodeError>> {
        let nodes = self
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // `node`, then the others in the order the client knows them.
        let start = nodes.iter().position(|n| *n == node).unwrap_or(0);
        let mut order = vec![node];
        order.extend(
            nodes
                .iter()
                .cycle()
                .skip(start + 1)
                .take(nodes.len())
                .filter(|n| **n != node),
        );
        let mut answers: Vec<Result<Ack, NodeError>> = (0..commands.len())
            .map(|_| {
                Err(NodeError::UnexpectedResponse {
                    got: "nothing (no node to submit to)",
                })
            })
            .collect();
        let mut open: Vec<usize> = (0..commands.len()).collect();
        for &target in order.iter().cycle().take(SUBMIT_ATTEMPTS) {
            if open.is_empty() {
                break;
            }
            let batch: Vec<Command> = open.iter().map(|&i| commands[i].clone()).collect();
            let got = self.submit_once(target, &batch).await;
            let mut again = Vec::new();
            for (i, answer) in open.into_iter().zip(got) {
                if matches!(
                    answer,
                    Err(NodeError::Transport(_) | NodeError::Pending { .. })
                ) {
                    tracing::debug!(node = %target, sequence = commands[i].sequence(), "not answered; retrying at the next node");
                    again.push(i);
                }
                answers[i] = answer;
            }
            open = again;
        }
        for command in commands {
            self.settled(command);
        }
        answers
    }

    /// Submits commands to `node` once, in one request, and waits until
    /// each is answered there (a retry of an applied command gets its
    /// first answer). The node refuses the request if a command is not
    /// signed by this client's key or its signature does not verify. Per
    /// command: applied ([`Ack`]); decided but not applied (stale, or
    /// beyond its session's window), [`NodeError::NotApplied`]; not
    /// applied within the node's patience, [`NodeError::Pending`]. While
    /// the node answers "busy" for some (its mempool is full), those are
    /// submitted again after a pause that doubles from [`BUSY_BACKOFF`] up
    /// to [`MAX_BUSY_BACKOFF`], for at most [`SUBMIT_PATIENCE`]; then
    /// [`NodeError::Busy`]. The session is then told that none of them
    /// will be retried, those whose submission failed on the way too
    /// (else the session's first unanswered sequence would stay at such a
    /// command for good, and the nodes' session window would fill behind
    /// it): to retry a command at other nodes before it is settled, use
    /// [`submit_all`](Self::submit_all). A retry of a settled command is
    /// still applied at most once, but once the client's newer commands
    /// told the nodes it was settled, its answer may be forgotten (it is
    /// then answered as stale).
    pub async fn submit_commands(
        &self,
        node: NodeId,
        commands: &[Command],
    ) -> Vec<Result<Ack, NodeError>> {
        let answers = self.submit_once(node, commands).await;
        for command in commands {
            self.settled(command);
        }
        answers
    }

    /// [`submit_commands`](Self::submit_commands) of one command.
    pub async fn submit(&self, node: NodeId, command: Command) -> Result<Ack, NodeError> {
        let mut answers = self
            .submit_commands(node, std::slice::from_ref(&command))
            .await;
        answers
            .pop()
            .unwrap_or(Err(NodeError::UnexpectedResponse { got: "no answer" }))
    }

    async fn submit_once(&self, node: NodeId, commands: &[Command]) -> Vec<Result<Ack, NodeError>> {
        let patience = SUBMIT_PATIENCE + QUERY_TIMEOUT;
        let mut answers: Vec<Option<Result<Ack, NodeError>>> =
            (0..commands.len()).map(|_| None).collect();
        let mut waiting: Vec<usize> = (0..commands.len()).collect();
        let give_up = tokio::time::Instant::now() + SUBMIT_PATIENCE;
        let mut pause = BUSY_BACKOFF;
        while !waiting.is_empty() {
            let request =
                ControlRequest::Submit(waiting.iter().map(|&i| commands[i].clone()).collect());
            let got = match self.call(node, &request, patience).await {
                Ok(ControlResponse::Submitted(got)) if got.len() == waiting.len() => got,
                Ok(other) => {
                    let e = unexpected(&other);
                    for &i in &waiting {
                        answers[i] = Some(Err(duplicate(&e)));
                    }
                    break;
                }
                Err(e) => {
                    for &i in &waiting {
                        answers[i] = Some(Err(duplicate(&e)));
                    }
                    break;
                }
            };
            let mut busy = Vec::new();
            for (&i, answer) in waiting.iter().zip(got) {
                answers[i] = Some(match answer {
                    SubmitAnswer::Applied(ack) => Ok(ack),
                    SubmitAnswer::NotApplied(why) => Err(NodeError::NotApplied(why)),
                    SubmitAnswer::Pending => Err(NodeError::Pending { node }),
                    SubmitAnswer::Refused(reason) => Err(NodeError::Refused { node, reason }),
                    SubmitAnswer::Busy => {
                        busy.push(i);
                        Err(NodeError::Busy { node })
                    }
                });
            }
            if busy.is_empty() || tokio::time::Instant::now() + pause >= give_up {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_BUSY_BACKOFF);
            waiting = busy;
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or(Err(NodeError::UnexpectedResponse { got: "nothing" })))
            .collect()
    }

    /// `node`'s status.
    pub async fn status(&self, node: NodeId) -> Result<Status, NodeError> {
        match self
            .call(node, &ControlRequest::Status, QUERY_TIMEOUT)
            .await?
        {
            ControlResponse::Status(status) => Ok(status),
            other => Err(unexpected(&other)),
        }
    }

    /// `node`'s report: its status, health, mempool, data directory size
    /// and what it knows of its peers.
    pub async fn report(&self, node: NodeId) -> Result<NodeReport, NodeError> {
        match self
            .call(node, &ControlRequest::Report, QUERY_TIMEOUT)
            .await?
        {
            ControlResponse::Report(report) => Ok(report),
            other => Err(unexpected(&other)),
        }
    }

    /// `node`'s whole log of applied commands and their transition
    /// receipts, from position 0, read page by page; an error
    /// ([`NodeError::LogTrimmed`]) if the node no longer holds its
    /// beginning (see [`log_tail`](Self::log_tail)).
    pub async fn log(&self, node: NodeId) -> Result<Vec<(Command, Receipt)>, NodeError> {
        let LogPage { first, commands } = self.log_tail(node).await?;
        if first > 0 {
            return Err(NodeError::LogTrimmed { first });
        }
        Ok(commands)
    }

    /// The part of `node`'s log it still holds (it keeps the newest
    /// commands, see [`NodeConfig::keep_commands`](super::NodeConfig::keep_commands)),
    /// read page by page: its first position and the commands from there.
    pub async fn log_tail(&self, node: NodeId) -> Result<LogPage, NodeError> {
        let mut log: Option<LogPage> = None;
        loop {
            let from = log
                .as_ref()
                .map_or(0, |l| l.first + l.commands.len() as u64);
            let page = match self
                .call(node, &ControlRequest::Log { from }, QUERY_TIMEOUT)
                .await?
            {
                ControlResponse::Log(page) => page,
                other => return Err(unexpected(&other)),
            };
            if page.commands.is_empty() {
                return Ok(log.unwrap_or(LogPage {
                    first: page.first,
                    commands: Vec::new(),
                }));
            }
            match &mut log {
                None => log = Some(page),
                // The node trimmed its log past what was read meanwhile:
                // what it holds now, from its first.
                Some(_) if page.first != from => log = Some(page),
                Some(l) => l.commands.extend(page.commands),
            }
        }
    }

    /// The validator sets `node` follows.
    pub async fn members(&self, node: NodeId) -> Result<Members, NodeError> {
        match self
            .call(node, &ControlRequest::Members, QUERY_TIMEOUT)
            .await?
        {
            ControlResponse::Members(members) => Ok(members),
            other => Err(unexpected(&other)),
        }
    }

    /// Asks `node` to approve `op` on the newest set it knows (this
    /// client's key must be one of the node's operators').
    pub async fn approve(&self, node: NodeId, op: SetOp) -> Result<Approval, NodeError> {
        match self
            .call(node, &ControlRequest::Approve(op), QUERY_TIMEOUT)
            .await?
        {
            ControlResponse::Approval(approval) => Ok(approval),
            other => Err(unexpected(&other)),
        }
    }

    /// Hands `node` an approved set change to propose when it leads.
    pub async fn change_set(&self, node: NodeId, change: SetChange) -> Result<(), NodeError> {
        match self
            .call(node, &ControlRequest::ChangeSet(change), QUERY_TIMEOUT)
            .await?
        {
            ControlResponse::ChangeTaken => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Closes the client's endpoint (its calls fail from then on).
    pub fn close(&self) {
        self.transport.close();
    }
}

fn unexpected(response: &ControlResponse) -> NodeError {
    let got = match response {
        ControlResponse::Submitted(_) => "answers of another number of commands",
        ControlResponse::Status(_) => "a status",
        ControlResponse::Log(_) => "a log page",
        ControlResponse::Report(_) => "a report",
        ControlResponse::Members(_) => "the validator sets",
        ControlResponse::Approval(_) => "an approval",
        ControlResponse::ChangeTaken => "a set change taken",
    };
    NodeError::UnexpectedResponse { got }
}

/// The error of a request, for each command it carried (a request fails on
/// the way, or with an undecodable or unexpected answer).
fn duplicate(e: &NodeError) -> NodeError {
    match e {
        NodeError::Transport(e) => NodeError::Transport(e.clone()),
        NodeError::Wire(e) => NodeError::Wire(e.clone()),
        NodeError::UnexpectedResponse { got } => NodeError::UnexpectedResponse { got },
        _ => NodeError::UnexpectedResponse {
            got: "an error that is not of a request",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command whose submission failed on the way is settled: the
    /// session's first unanswered sequence moves past it (it stayed there
    /// for good before, and the nodes' session window filled behind it).
    #[tokio::test]
    async fn a_submission_failed_on_the_way_is_settled() {
        let keys = KeyPair::from_seed([7; 32]);
        // A node the client has no address for: every request fails on
        // the way (unreachable).
        let nowhere = KeyPair::from_seed([8; 32]).node_id();
        let client = Client::new(&keys, &[]).unwrap();
        let commands = client.commands(vec![b"a".to_vec(), b"b".to_vec()]).unwrap();
        let first = client.session().first_unanswered();
        assert_eq!(first, commands[0].sequence());
        let answers = client.submit_commands(nowhere, &commands).await;
        assert!(answers
            .iter()
            .all(|a| matches!(a, Err(NodeError::Transport(_)))));
        assert_eq!(
            client.session().first_unanswered(),
            commands[1].sequence() + 1
        );
        client.close();
    }
}
