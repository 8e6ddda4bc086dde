//! The client protocol: how a client submits a command to a node, asks its
//! status and reads its log of applied commands.
//!
//! Requests and responses travel over the node's QUIC transport under
//! [`CONTROL`], encoded with postcard; decoders refuse more than
//! [`MAX_CONTROL_BYTES`] before reading, trailing bytes and log pages over
//! [`LOG_PAGE_COMMANDS`]. A submission carries up to
//! [`MAX_SUBMIT_COMMANDS`] commands, usually signed with one signature
//! ([`Command::sign_batch`]), and is answered once each is, one
//! [`SubmitAnswer`] per command: applied (committed by a quorum and durable
//! on that node), with where it sits in the log; "busy, retry"
//! ([`SubmitAnswer::Busy`]) when the mempool is full, which
//! [`Client`](super::Client) does after a short pause; pending (not
//! committed within [`SUBMIT_PATIENCE`]: a retry of the same command is
//! applied at most once); or refused with a reason.
//!
//! A command is identified by its client and sequence (client sessions,
//! see [`Command`]): the replicated state machine's session table applies
//! each (client, sequence) at most once and keeps its answer, so a retry of
//! the same signed command — to the same node or another — gets the first
//! answer, and the same bytes under a new sequence are a new command. A
//! command whose sequence the table cannot apply is answered
//! [`SubmitAnswer::NotApplied`] ([`NotApplied`]).
//!
//! A client connects with a key of its own, which the QUIC handshake
//! proves: the node takes a submitted command only if it is signed by that
//! same key (and every replica verifies the signature again before it is
//! taken, and inside every proposal), so neither a host that reaches the
//! port nor a Byzantine validator can submit or alter a command in another
//! client's name. Any key may connect: anyone who reaches the port can
//! submit commands signed with a key of their own, and read the log; which
//! clients may do what is the state machine's business (it sees each
//! command's client).

use super::error::NodeError;
use super::reconfig::{Approval, Members};
use super::state::Ack;
use super::watch::NodeReport;
use hologram_consensus::{Command, SetChange, SetOp, MAX_SIGNED_BATCH, MAX_VALIDATORS};
use hologram_lattice::transport::{Protocol, DEFAULT_MAX_FRAME};
use hologram_lattice::wire::{self, WireError};
use hologram_lattice::NodeId;
use hologram_receipt::{ChainHead, Receipt};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The protocol tag of client requests (outside the library's own tags).
pub const CONTROL: Protocol = Protocol(0x0100);
/// The largest request or response.
pub const MAX_CONTROL_BYTES: usize = DEFAULT_MAX_FRAME;
/// The most commands in one page of the log.
pub const LOG_PAGE_COMMANDS: usize = 1024;
/// The most command bytes in one page of the log (a page holds at least one
/// command, and a command is at most 64 KiB).
pub const LOG_PAGE_BYTES: usize = 1 << 20;
/// How long a node holds a submission waiting for it to be applied.
pub const SUBMIT_PATIENCE: Duration = Duration::from_secs(10);
/// How long a client waits for a status or a log page.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The most commands in one submission: as many as one signature covers
/// ([`MAX_SIGNED_BATCH`]).
pub const MAX_SUBMIT_COMMANDS: usize = MAX_SIGNED_BATCH;

/// What a client asks a node, under [`CONTROL`], encoded with postcard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Order and apply these commands (at most [`MAX_SUBMIT_COMMANDS`], each
    /// signed by the client's key, usually all with one signature, see
    /// [`Command::sign_batch`]); answered with
    /// [`ControlResponse::Submitted`], one [`SubmitAnswer`] per command in
    /// order, once every one of them is answered. A command not signed by
    /// the client's key, or whose signature does not verify, gets the
    /// whole request refused.
    Submit(Vec<Command>),
    /// Answered with [`ControlResponse::Status`].
    Status,
    /// Applied commands from position `from` on (from the first one the
    /// node still holds, if later); answered with [`ControlResponse::Log`].
    Log {
        /// The first position wanted.
        from: u64,
    },
    /// Answered with [`ControlResponse::Report`].
    Report,
    /// The validator sets the node follows; answered with
    /// [`ControlResponse::Members`].
    Members,
    /// Asks the node to approve a change of its group's validator set: it
    /// signs [`SetChange::approval_bytes`] of the operation, the version
    /// and the newest set it knows, with its own key, and answers
    /// [`ControlResponse::Approval`]. Taken only from a key the node was
    /// told is its operator's ([`NodeConfig::operators`](super::NodeConfig::operators));
    /// refused from any other, and when the operation does not fit the
    /// newest set or the node is not one of its validators.
    Approve(SetOp),
    /// Asks the node to propose this change when it leads (any client may:
    /// a quorum of the set it changes approved it, which the node checks
    /// first); answered with [`ControlResponse::ChangeTaken`], or refused
    /// with the reason.
    ChangeSet(SetChange),
}

/// What a node answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlResponse {
    /// What became of each command submitted, in the order submitted.
    Submitted(Vec<SubmitAnswer>),
    /// The node's status.
    Status(Status),
    /// Applied commands from the position asked, or the first one the
    /// node still holds (empty past the end).
    Log(LogPage),
    /// The node's report: status, health, mempool, data directory, peers.
    Report(NodeReport),
    /// The validator sets the node follows.
    Members(Members),
    /// The node's approval of a set change.
    Approval(Approval),
    /// The node took the set change: it will propose it when it leads.
    ChangeTaken,
}

/// What became of one submitted command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubmitAnswer {
    /// Applied (committed by a quorum and durable on the node), here; a
    /// retry of an applied command gets its first answer.
    Applied(Ack),
    /// The node's mempool is full: the command was not taken, and the
    /// client should submit it again after a short pause (backpressure).
    Busy,
    /// Decided but not applied, and never will be under its sequence.
    NotApplied(NotApplied),
    /// Not applied within [`SUBMIT_PATIENCE`]: it stays pending, and
    /// submitting the same command again (to this node or another)
    /// applies it at most once.
    Pending,
    /// The node could not take it, for this reason.
    Refused(String),
}

/// Why a decided command was not applied (its client's session said so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotApplied {
    /// Its sequence is below its client's first unanswered sequence: the
    /// client said it held that answer, and the answer was forgotten.
    Stale {
        /// The client's first unanswered sequence, as the node knows it.
        first_unanswered: u64,
    },
    /// Its sequence is too far ahead of its client's first unanswered
    /// sequence (by the session window or more).
    OutOfWindow {
        /// The client's first unanswered sequence, as the node knows it.
        first_unanswered: u64,
        /// How far ahead a sequence may be.
        window: u64,
    },
}

impl core::fmt::Display for NotApplied {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NotApplied::Stale { first_unanswered } => write!(
                f,
                "stale: its sequence is below the client's first unanswered one ({first_unanswered})"
            ),
            NotApplied::OutOfWindow {
                first_unanswered,
                window,
            } => write!(
                f,
                "refused: its sequence is {window} or more past the client's first unanswered one ({first_unanswered})"
            ),
        }
    }
}

/// A page of a node's log of applied commands.
///
/// A node keeps the newest applied commands
/// ([`NodeConfig::keep_commands`](super::NodeConfig::keep_commands)), and
/// one restored from a snapshot only those applied after it: `first` says
/// where the page starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    /// The position of the first command of the page.
    pub first: u64,
    /// Commands in position order, each with its transition receipt: the
    /// chain over all the receipts from position 0 is the head a
    /// [`Status`] reports.
    pub commands: Vec<(Command, Receipt)>,
}

/// A node's view of the replicated state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The node.
    pub node: NodeId,
    /// Heights decided, applied and durable on the node (what it recovers
    /// if it restarts: never more than that, so a node's status never goes
    /// back).
    pub heights: u64,
    /// Commands applied in those heights.
    pub applied: u64,
    /// The head of the chain over those commands' transition receipts.
    pub head: ChainHead,
    /// Decided commands not applied (since the node started): repeats
    /// (retries, answered with the first answer), stale ones and ones
    /// beyond their session's window.
    pub skipped: u64,
    /// The height of the newest snapshot of the state machine the node
    /// took or restored (0: none yet).
    pub snapshot: u64,
    /// Snapshots the node fetched from peers and restored since it started
    /// (state sync).
    pub restored: u64,
}

impl ControlRequest {
    /// The postcard encoding.
    pub fn encode(&self) -> Result<Vec<u8>, NodeError> {
        encode(self, "control request")
    }

    /// Decodes exactly `bytes`: at most [`MAX_CONTROL_BYTES`], checked
    /// before decoding, and no trailing bytes.
    /// A submission holds at most [`MAX_SUBMIT_COMMANDS`] commands (none is
    /// answered with no answer).
    pub fn decode(bytes: &[u8]) -> Result<Self, NodeError> {
        let request: Self = wire::decode("control request", bytes, MAX_CONTROL_BYTES)?;
        match &request {
            ControlRequest::Submit(commands) => {
                wire::check_count("submitted commands", commands.len(), MAX_SUBMIT_COMMANDS)?
            }
            ControlRequest::ChangeSet(change) => wire::check_count(
                "set change approvals",
                change.approvals.len(),
                MAX_VALIDATORS,
            )?,
            _ => {}
        }
        Ok(request)
    }
}

impl ControlResponse {
    /// The postcard encoding.
    pub fn encode(&self) -> Result<Vec<u8>, NodeError> {
        encode(self, "control response")
    }

    /// Decodes exactly `bytes`: at most [`MAX_CONTROL_BYTES`], checked
    /// before decoding, no trailing bytes, log pages of at most
    /// [`LOG_PAGE_COMMANDS`] and at most [`MAX_SUBMIT_COMMANDS`] answers.
    pub fn decode(bytes: &[u8]) -> Result<Self, NodeError> {
        let response: Self = wire::decode("control response", bytes, MAX_CONTROL_BYTES)?;
        match &response {
            ControlResponse::Log(page) => {
                wire::check_count("log page commands", page.commands.len(), LOG_PAGE_COMMANDS)?
            }
            ControlResponse::Submitted(answers) => {
                wire::check_count("submission answers", answers.len(), MAX_SUBMIT_COMMANDS)?
            }
            ControlResponse::Report(report) => {
                wire::check_count("report peers", report.peers.len(), MAX_VALIDATORS)?
            }
            ControlResponse::Members(m) => {
                wire::check_count("validators in force", m.current.len(), MAX_VALIDATORS)?;
                wire::check_count("validators scheduled", m.newest.len(), MAX_VALIDATORS)?;
                wire::check_count("member addresses", m.addresses.len(), 2 * MAX_VALIDATORS)?
            }
            ControlResponse::Status(_)
            | ControlResponse::Approval(_)
            | ControlResponse::ChangeTaken => {}
        }
        Ok(response)
    }
}

fn encode<T: Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, NodeError> {
    let bytes = wire::encode(what, value)?;
    if bytes.len() > MAX_CONTROL_BYTES {
        let (len, max) = (bytes.len(), MAX_CONTROL_BYTES);
        return Err(WireError::TooLarge { what, len, max }.into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_command() -> impl Strategy<Value = Command> {
        let client = hologram_receipt::KeyPair::from_seed([0xc1; 32]);
        (
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(move |(b, s, f)| Command::sign(&client, s, f, b).unwrap())
    }

    fn any_request() -> impl Strategy<Value = ControlRequest> {
        prop_oneof![
            proptest::collection::vec(any_command(), 0..4).prop_map(ControlRequest::Submit),
            Just(ControlRequest::Status),
            Just(ControlRequest::Report),
            any::<u64>().prop_map(|from| ControlRequest::Log { from }),
            Just(ControlRequest::Members),
            any::<[u8; 32]>()
                .prop_map(|id| ControlRequest::Approve(SetOp::Remove(NodeId::from_bytes(id)))),
            (any::<[u8; 32]>(), any::<u64>()).prop_map(|(id, version)| {
                let keys = hologram_receipt::KeyPair::from_seed([0xc4; 32]);
                let set = hologram_consensus::ValidatorSet::new(vec![keys.node_id()]).unwrap();
                let op = SetOp::Add(NodeId::from_bytes(id));
                let approval = SetChange::approve(&keys, version, &set, &op);
                ControlRequest::ChangeSet(SetChange::new(version, op, vec![approval]))
            }),
        ]
    }

    fn any_answer() -> impl Strategy<Value = SubmitAnswer> {
        prop_oneof![
            (
                any::<u64>(),
                any::<u64>(),
                proptest::option::of(proptest::option::of(proptest::collection::vec(
                    any::<u8>(),
                    0..16
                )))
            )
                .prop_map(|(height, position, kv)| SubmitAnswer::Applied(Ack {
                    height,
                    position,
                    kv: kv.map(crate::node::KvResult::Value),
                })),
            Just(SubmitAnswer::Busy),
            Just(SubmitAnswer::Pending),
            ".{0,20}".prop_map(SubmitAnswer::Refused),
            any::<u64>().prop_map(|first_unanswered| {
                SubmitAnswer::NotApplied(NotApplied::Stale { first_unanswered })
            }),
            (any::<u64>(), any::<u64>()).prop_map(|(first_unanswered, window)| {
                SubmitAnswer::NotApplied(NotApplied::OutOfWindow {
                    first_unanswered,
                    window,
                })
            }),
        ]
    }

    fn any_response() -> impl Strategy<Value = ControlResponse> {
        prop_oneof![
            proptest::collection::vec(any_answer(), 0..6).prop_map(ControlResponse::Submitted),
            (any::<[u8; 32]>(), any::<[u8; 32]>(), any::<[u64; 5]>()).prop_map(|(n, h, c)| {
                ControlResponse::Status(Status {
                    node: NodeId::from_bytes(n),
                    heights: c[0],
                    applied: c[1],
                    head: ChainHead::from_bytes(h),
                    skipped: c[2],
                    snapshot: c[3],
                    restored: c[4],
                })
            }),
            (
                any::<u64>(),
                proptest::collection::vec(
                    any_command().prop_map(|c| {
                        let receipt = Receipt::from_bytes(c.bytes());
                        (c, receipt)
                    }),
                    0..8
                )
            )
                .prop_map(|(first, commands)| ControlResponse::Log(LogPage { first, commands })),
            Just(ControlResponse::ChangeTaken),
            (any::<[u8; 32]>(), any::<[u64; 3]>(), 0..5usize).prop_map(|(n, c, k)| {
                let ids: Vec<NodeId> = (0..k as u8).map(|i| NodeId::from_bytes([i; 32])).collect();
                ControlResponse::Members(Members {
                    node: NodeId::from_bytes(n),
                    version: c[0],
                    heights: c[1],
                    current: ids.clone(),
                    newest: ids.clone(),
                    newest_from: c[2],
                    addresses: ids
                        .iter()
                        .map(|id| (*id, "127.0.0.1:7000".parse().unwrap()))
                        .collect(),
                })
            }),
            (any::<u64>(), any::<[u8; 32]>()).prop_map(|(version, set)| {
                let keys = hologram_receipt::KeyPair::from_seed([0xc5; 32]);
                let (approver, signature) = (
                    keys.node_id(),
                    keys.sign(hologram_receipt::Purpose::SetChange, &set),
                );
                ControlResponse::Approval(Approval {
                    version,
                    set,
                    approver,
                    signature,
                })
            }),
        ]
    }

    #[test]
    fn oversized_submissions_are_refused() {
        let client = hologram_receipt::KeyPair::from_seed([0xc2; 32]);
        let payloads = (0..=MAX_SUBMIT_COMMANDS).map(|i| (i as u64, 0, vec![1u8].into()));
        let mut commands =
            Command::sign_batch(&client, payloads.clone().take(MAX_SUBMIT_COMMANDS)).unwrap();
        let fits = ControlRequest::Submit(commands.clone()).encode().unwrap();
        assert!(ControlRequest::decode(&fits).is_ok());
        commands.push(Command::sign(&client, 5_000, 0, vec![2u8]).unwrap());
        let over = ControlRequest::Submit(commands).encode().unwrap();
        assert!(ControlRequest::decode(&over).is_err());
        let answers = vec![SubmitAnswer::Busy; MAX_SUBMIT_COMMANDS + 1];
        let over = ControlResponse::Submitted(answers).encode().unwrap();
        assert!(ControlResponse::decode(&over).is_err());
    }

    #[test]
    fn the_largest_answers_to_a_whole_submission_fit_in_a_response() {
        use crate::node::{KvResult, MAX_KV_READ, MAX_KV_VALUE};
        let value = Some(vec![0xffu8; MAX_KV_VALUE]);
        let ack = Ack {
            height: u64::MAX,
            position: u64::MAX,
            kv: Some(KvResult::Values(vec![value; MAX_KV_READ])),
        };
        let answers = vec![SubmitAnswer::Applied(ack); MAX_SUBMIT_COMMANDS];
        let response = ControlResponse::Submitted(answers);
        let bytes = response.encode().expect("fits");
        assert_eq!(ControlResponse::decode(&bytes).unwrap(), response);
    }

    #[test]
    fn oversized_log_pages_are_refused() {
        let client = hologram_receipt::KeyPair::from_seed([0xc3; 32]);
        let command = Command::sign(&client, 0, 0, vec![1u8]).unwrap();
        let entry = (command.clone(), Receipt::from_bytes(command.bytes()));
        let page = |n: usize| {
            ControlResponse::Log(LogPage {
                first: 7,
                commands: vec![entry.clone(); n],
            })
        };
        let fits = page(LOG_PAGE_COMMANDS).encode().unwrap();
        assert_eq!(
            ControlResponse::decode(&fits).unwrap(),
            page(LOG_PAGE_COMMANDS)
        );
        let over = page(LOG_PAGE_COMMANDS + 1).encode().unwrap();
        assert!(ControlResponse::decode(&over).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn control_messages_round_trip(request in any_request(), response in any_response()) {
            prop_assert_eq!(ControlRequest::decode(&request.encode().unwrap()).unwrap(), request);
            prop_assert_eq!(ControlResponse::decode(&response.encode().unwrap()).unwrap(), response);
        }

        #[test]
        fn control_decoders_refuse_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = ControlRequest::decode(&bytes);
            let _ = ControlResponse::decode(&bytes);
        }

        #[test]
        fn control_decoders_refuse_trailing_bytes(request in any_request(), extra in 1u8..) {
            let mut bytes = request.encode().unwrap();
            bytes.push(extra);
            prop_assert!(ControlRequest::decode(&bytes).is_err());
        }
    }
}
