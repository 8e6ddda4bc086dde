//! [`Client`]: a client of validator nodes, over QUIC with a key of its own.

use super::control::{
    ControlRequest, ControlResponse, Status, CONTROL, MAX_CONTROL_BYTES, QUERY_TIMEOUT,
    SUBMIT_PATIENCE,
};
use super::error::NodeError;
use super::state::Ack;
use crate::net::{AddressBook, QuicConfig, QuicTransport};
use hologram_consensus::Command;
use hologram_lattice::transport::{async_trait, Handler, HandlerError, Protocol, Transport};
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Receipt};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

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
pub struct Client {
    keys: KeyPair,
    transport: QuicTransport,
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
        Ok(Self {
            keys: keys.clone(),
            transport,
        })
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

    /// Signs `payload` with the client's key and submits it to `node`;
    /// returns the command and where it was applied.
    pub async fn submit_payload(
        &self,
        node: NodeId,
        payload: Vec<u8>,
    ) -> Result<(Command, Ack), NodeError> {
        let command = Command::sign(&self.keys, payload)?;
        let ack = self.submit(node, command.clone()).await?;
        Ok((command, ack))
    }

    /// Submits a command to `node` and waits until it is applied there. The
    /// node refuses a command not signed by this client's key. While the
    /// node answers "busy" (its mempool is full), the command is submitted
    /// again after a pause that doubles from [`BUSY_BACKOFF`] up to
    /// [`MAX_BUSY_BACKOFF`], for at most [`SUBMIT_PATIENCE`]; then
    /// [`NodeError::Busy`].
    pub async fn submit(&self, node: NodeId, command: Command) -> Result<Ack, NodeError> {
        let patience = SUBMIT_PATIENCE + QUERY_TIMEOUT;
        let request = ControlRequest::Submit(command);
        let give_up = tokio::time::Instant::now() + SUBMIT_PATIENCE;
        let mut pause = BUSY_BACKOFF;
        loop {
            match self.call(node, &request, patience).await? {
                ControlResponse::Applied(at) => return Ok(at),
                ControlResponse::Busy if tokio::time::Instant::now() + pause < give_up => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_BUSY_BACKOFF);
                }
                ControlResponse::Busy => return Err(NodeError::Busy { node }),
                other => return Err(unexpected(&other)),
            }
        }
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

    /// `node`'s whole log of applied commands and their transition
    /// receipts, read page by page.
    pub async fn log(&self, node: NodeId) -> Result<Vec<(Command, Receipt)>, NodeError> {
        let mut log = Vec::new();
        loop {
            let from = log.len() as u64;
            match self
                .call(node, &ControlRequest::Log { from }, QUERY_TIMEOUT)
                .await?
            {
                ControlResponse::Log(page) if page.is_empty() => return Ok(log),
                ControlResponse::Log(page) => log.extend(page),
                other => return Err(unexpected(&other)),
            }
        }
    }

    /// Closes the client's endpoint (its calls fail from then on).
    pub fn close(&self) {
        self.transport.close();
    }
}

fn unexpected(response: &ControlResponse) -> NodeError {
    let got = match response {
        ControlResponse::Applied(_) => "an acknowledgement",
        ControlResponse::Busy => "busy",
        ControlResponse::Status(_) => "a status",
        ControlResponse::Log(_) => "a log page",
    };
    NodeError::UnexpectedResponse { got }
}
