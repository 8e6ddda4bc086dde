//! A group's members as its proposer sees them: the [`Member`] seam, the
//! member side ([`MemberService`], in-process or served over a transport)
//! and [`RemoteMember`], a member on another node.
//!
//! **Deployment.** Each member node of a group runs, behind one
//! [`ProtocolMux`](hologram_lattice::transport::ProtocolMux):
//!
//! - its validator for the group's consensus (a
//!   [`LocalValidator`](hologram_consensus::LocalValidator) served by a
//!   [`ValidatorHandler`](hologram_consensus::ValidatorHandler) under
//!   [`hologram_consensus::VALIDATOR_PROTOCOL`]), and
//! - its replica of the shard ([`MemberService`] under
//!   `TXN_MEMBER`): the member's keys and its
//!   [`ReplicatedStateMachine<ShardMachine>`](hologram_consensus::ReplicatedStateMachine).
//!
//! The group's proposer node runs a
//! [`ReplicatedParticipant::over`](super::ReplicatedParticipant::over) the
//! members' [`RemoteValidator`](hologram_consensus::RemoteValidator)s and
//! [`RemoteMember`]s, served to coordinators by a
//! [`ParticipantService`](crate::ParticipantService).
//!
//! **Protocol.** The proposer gets a command decided, then asks each member
//! [`MemberRequest`]: "here are the decided heights from `from` on (those
//! you may lack, at most [`MAX_SYNC_DECISIONS`]); apply them, then
//! [`Ask::Endorse`] this command's output (or [`Ask::Read`] a key)". The
//! member skips the heights it has, applies the others — each checked by
//! [`ReplicatedStateMachine::apply_decision`](hologram_consensus::ReplicatedStateMachine::apply_decision)
//! against the group's validator set, so a Byzantine proposer cannot feed
//! it a forged height — and answers [`MemberReply::Endorsed`] with its
//! signed [`Endorsement`], [`MemberReply::Value`], or
//! [`MemberReply::Behind`] with the next height it needs (it restarted and
//! lost its replica, or the command is past the heights it was sent); the
//! proposer resends from there. What a member answers is only what it
//! claims: the proposer counts an output when `f + 1` members' endorsements
//! of it verify ([`ReplicatedParticipant::agree`](super::ReplicatedParticipant::agree)).
//!
//! **Bounds.** Both messages travel as postcard, decoded by
//! [`MemberRequest::decode`] / [`MemberReply::decode`]: more than
//! [`MAX_MEMBER_FRAME`] bytes are refused before reading, trailing bytes and
//! every bound serde does not check (decisions per request, the batches and
//! certificates inside them, the endorsed message, values, reasons) are
//! refused after. Nothing from the network panics a member.

use super::group::GroupMember;
use super::machine::Endorsement;
use crate::receipts::bounded;
use crate::types::MAX_VALUE_LEN;
use crate::wire::MAX_REASON_LEN;
use crate::{Key, TxnError};
use async_trait::async_trait;
use hologram_consensus::{Command, ConsensusMessage, Decision};
use hologram_lattice::transport::{
    Handler, HandlerError, Protocol, Service, Transport, DEFAULT_MAX_FRAME,
};
use hologram_lattice::{NodeId, PeerId};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The most decided heights one [`MemberRequest`] carries.
pub const MAX_SYNC_DECISIONS: usize = 32;

/// The largest encoded [`MemberRequest`] or [`MemberReply`]: a transport's
/// default frame.
pub const MAX_MEMBER_FRAME: usize = DEFAULT_MAX_FRAME;

/// What a proposer asks a member to do once it applied the heights sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ask {
    /// Endorse the output of this decided command.
    Endorse(Command),
    /// Answer this key's committed value.
    Read(Key),
}

/// A proposer's request to a member (module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRequest {
    /// The group asked about (a member refuses another group's request).
    pub group: NodeId,
    /// The height of `decisions[0]`.
    pub from: u64,
    /// Decided heights `from`, `from + 1`, …: at most
    /// [`MAX_SYNC_DECISIONS`].
    #[serde(deserialize_with = "bounded::<_, _, MAX_SYNC_DECISIONS>")]
    pub decisions: Vec<Decision>,
    /// What to answer after applying them.
    pub ask: Ask,
}

/// A member's answer to a [`MemberRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberReply {
    /// The member's endorsement of the command's output.
    Endorsed(Box<Endorsement>),
    /// The key's committed value at the member.
    Value(Option<Vec<u8>>),
    /// The member has no output to endorse yet: it needs the decided heights
    /// from `next_height` on.
    Behind {
        /// The first height the member has not applied.
        next_height: u64,
    },
    /// The member refused (another group, a height that did not verify, a
    /// member that does not answer), and why.
    Refused(String),
}

fn decode_error(what: &'static str, reason: impl ToString) -> TxnError {
    TxnError::Decode {
        what,
        reason: reason.to_string(),
    }
}

/// Decodes exactly `bytes` as a `T`, refusing more than [`MAX_MEMBER_FRAME`]
/// before reading and any trailing bytes.
fn decode_exact<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, TxnError> {
    crate::types::bound(what, bytes.len(), MAX_MEMBER_FRAME)?;
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|e| decode_error(what, e))?;
    if !rest.is_empty() {
        return Err(decode_error(what, format!("{} trailing bytes", rest.len())));
    }
    Ok(value)
}

fn encode<T: Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, TxnError> {
    let bytes = postcard::to_allocvec(value).map_err(|e| decode_error(what, e))?;
    crate::types::bound(what, bytes.len(), MAX_MEMBER_FRAME)?;
    Ok(bytes)
}

impl MemberRequest {
    /// Checks the bounds serde does not: each decision's batch and
    /// certificate (as a consensus message carrying it is checked) and the
    /// key read.
    pub fn check(&self) -> Result<(), TxnError> {
        crate::types::bound("decided heights", self.decisions.len(), MAX_SYNC_DECISIONS)?;
        for d in &self.decisions {
            ConsensusMessage::Decision(Box::new(d.clone()))
                .check_bounds()
                .map_err(|e| decode_error("member request", e))?;
        }
        if let Ask::Read(key) = &self.ask {
            key.check()?;
        }
        Ok(())
    }

    /// The postcard encoding.
    pub fn encode(&self) -> Result<Vec<u8>, TxnError> {
        encode(self, "member request")
    }

    /// Decodes exactly `bytes` (module docs).
    pub fn decode(bytes: &[u8]) -> Result<Self, TxnError> {
        let request: Self = decode_exact(bytes, "member request")?;
        request.check()?;
        Ok(request)
    }
}

impl MemberReply {
    /// Checks the bounds serde does not: the endorsed message's, the
    /// value's length and the reason's.
    pub fn check(&self) -> Result<(), TxnError> {
        match self {
            MemberReply::Endorsed(e) => match &e.output {
                Some(message) => message.check(),
                None => Ok(()),
            },
            MemberReply::Value(Some(v)) => crate::types::bound("value", v.len(), MAX_VALUE_LEN),
            MemberReply::Refused(reason) => {
                crate::types::bound("refusal reason", reason.len(), MAX_REASON_LEN)
            }
            MemberReply::Value(None) | MemberReply::Behind { .. } => Ok(()),
        }
    }

    /// The postcard encoding.
    pub fn encode(&self) -> Result<Vec<u8>, TxnError> {
        encode(self, "member reply")
    }

    /// Decodes exactly `bytes` (module docs).
    pub fn decode(bytes: &[u8]) -> Result<Self, TxnError> {
        let reply: Self = decode_exact(bytes, "member reply")?;
        reply.check()?;
        Ok(reply)
    }
}

/// A refusal, its reason cut to [`MAX_REASON_LEN`] bytes.
fn refused(reason: impl ToString) -> MemberReply {
    let mut reason = reason.to_string();
    if reason.len() > MAX_REASON_LEN {
        let mut cut = MAX_REASON_LEN;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    MemberReply::Refused(reason)
}

/// A member of a group as its proposer sees it (module docs): in this
/// process ([`MemberService`]) or on another node ([`RemoteMember`]).
#[async_trait]
pub trait Member: Send + Sync {
    /// The member's id (one of the group's validators).
    fn id(&self) -> NodeId;

    /// Sends `request`; the member's answer, or why none came.
    async fn ask(&self, request: MemberRequest) -> Result<MemberReply, TxnError>;
}

/// The member side: a [`GroupMember`] (its keys and its replica) answering
/// [`MemberRequest`]s — called in this process as a [`Member`], or served
/// to a proposer on another node as the [`Handler`] for
/// `TXN_MEMBER` requests. Requests are answered one at a time.
#[derive(Debug)]
pub struct MemberService {
    id: NodeId,
    member: Mutex<GroupMember>,
}

impl MemberService {
    /// A service answering with `member`.
    pub fn new(member: GroupMember) -> Self {
        MemberService {
            id: member.id(),
            member: Mutex::new(member),
        }
    }

    /// Runs `f` on the member (to inspect its replica).
    pub fn with_member<R>(&self, f: impl FnOnce(&GroupMember) -> R) -> R {
        f(&self.member.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Answers `request` (module docs).
    pub fn answer(&self, request: MemberRequest) -> MemberReply {
        // `answer` leaves the member consistent at every step (a height is
        // applied whole or not at all), so a panic elsewhere cannot have
        // broken it.
        let mut member = self.member.lock().unwrap_or_else(PoisonError::into_inner);
        member.answer(request)
    }
}

#[async_trait]
impl Member for MemberService {
    fn id(&self) -> NodeId {
        self.id
    }

    async fn ask(&self, request: MemberRequest) -> Result<MemberReply, TxnError> {
        Ok(self.answer(request))
    }
}

#[async_trait]
impl Handler for MemberService {
    async fn request(
        &self,
        _from: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        if protocol != crate::protocols::TXN_MEMBER {
            return Err(HandlerError::Refused(format!(
                "a group member answers only TXN_MEMBER requests, not {protocol:?}"
            )));
        }
        let request =
            MemberRequest::decode(&payload).map_err(|e| HandlerError::Refused(e.to_string()))?;
        self.answer(request)
            .encode()
            .map_err(|e| HandlerError::Failed(e.to_string()))
    }

    async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {}
}

impl Service for MemberService {
    fn protocol(&self) -> Protocol {
        crate::protocols::TXN_MEMBER
    }
}

/// A member on another node, asked over a transport: each call is one
/// `TXN_MEMBER` request answered by the node's
/// [`MemberService`]. Its answers are only what it claims (module docs).
pub struct RemoteMember {
    id: NodeId,
    transport: Arc<dyn Transport>,
    timeout: Duration,
}

impl core::fmt::Debug for RemoteMember {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RemoteMember")
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RemoteMember {
    /// The member `id` (its node is `id` too), asked through `transport`,
    /// each answer awaited at most `timeout`.
    pub fn new(id: NodeId, transport: Arc<dyn Transport>, timeout: Duration) -> Self {
        RemoteMember {
            id,
            transport,
            timeout,
        }
    }
}

#[async_trait]
impl Member for RemoteMember {
    fn id(&self) -> NodeId {
        self.id
    }

    async fn ask(&self, request: MemberRequest) -> Result<MemberReply, TxnError> {
        let answer = self
            .transport
            .request(
                self.id,
                crate::protocols::TXN_MEMBER,
                request.encode()?,
                self.timeout,
            )
            .await
            .map_err(|e| TxnError::Transport(format!("member {}: {e}", self.id)))?;
        MemberReply::decode(&answer)
    }
}

impl GroupMember {
    /// The member's answer to `request` (module docs).
    pub(crate) fn answer(&mut self, request: MemberRequest) -> MemberReply {
        let group = self.machine().state().core().id();
        if request.group != group {
            return refused(format!("a member of group {group}, not {}", request.group));
        }
        let next = self.machine().next_height();
        if request.from > next {
            return MemberReply::Behind { next_height: next };
        }
        // The heights this member has are skipped; `from <= next`.
        let skip = usize::try_from(next - request.from).unwrap_or(usize::MAX);
        let fresh = request.decisions.get(skip..).unwrap_or_default();
        if let Err(e) = self.apply(fresh) {
            return refused(e);
        }
        match request.ask {
            Ask::Endorse(command) => match self.endorse(group, &command) {
                Some(e) => MemberReply::Endorsed(Box::new(e)),
                None => MemberReply::Behind {
                    next_height: self.machine().next_height(),
                },
            },
            Ask::Read(key) => match self.read(&key) {
                Some(value) => MemberReply::Value(value),
                None => refused("this member does not answer"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ParticipantConfig, ParticipantCore, ShardMap, TxnId, TxnMessage};
    use hologram_consensus::ValidatorSet;
    use hologram_receipt::KeyPair;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes are an error or a request/reply within bounds, never a
        /// panic; what decodes encodes back to the same bytes.
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(r) = MemberRequest::decode(&bytes) {
                prop_assert!(r.decisions.len() <= MAX_SYNC_DECISIONS);
                prop_assert_eq!(MemberRequest::decode(&r.encode().unwrap()).unwrap(), r);
            }
            if let Ok(r) = MemberReply::decode(&bytes) {
                prop_assert_eq!(MemberReply::decode(&r.encode().unwrap()).unwrap(), r);
            }
        }

        /// A member given any request — garbage decisions included — answers
        /// without panicking and applies nothing it cannot verify.
        #[test]
        fn a_member_refuses_unverified_heights(bytes in proptest::collection::vec(any::<u8>(), 1..128), from in 0u64..3) {
            let keys: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed([40 + i; 32])).collect();
            let group = crate::Group::new(keys.iter().map(KeyPair::node_id).collect()).unwrap();
            let set = ValidatorSet::new(keys.iter().map(KeyPair::node_id).collect()).unwrap();
            let core = ParticipantCore::new(group.clone(), ParticipantConfig::default(), ShardMap::even(&[group.id()])).unwrap();
            let service = MemberService::new(GroupMember::new(keys[0].clone(), set, core, super::super::MemberBehaviour::Honest));
            let command = Command::sign(&hologram_receipt::KeyPair::from_seed([0xc1; 32]), bytes).unwrap();
            let batch = hologram_consensus::Batch::new(vec![command.clone()]).unwrap();
            let vote = hologram_consensus::Vote::sign(&keys[1], hologram_consensus::Slot { height: from, round: 0, kind: hologram_consensus::VoteKind::Precommit }, Some(batch.receipt()));
            let forged = Decision { batch, certificate: hologram_consensus::Certificate::from_votes(vote.slot, vote.value.unwrap(), [&vote]) };
            let request = MemberRequest { group: group.id(), from, decisions: vec![forged], ask: Ask::Endorse(command) };
            let reply = service.answer(MemberRequest::decode(&request.encode().unwrap()).unwrap());
            match from {
                0 => prop_assert!(matches!(reply, MemberReply::Refused(_))),
                _ => prop_assert_eq!(reply, MemberReply::Behind { next_height: 0 }),
            }
            prop_assert_eq!(service.with_member(|m| m.machine().next_height()), 0);
            // Another group's request is refused.
            let other = MemberRequest { group: keys[0].node_id(), from: 0, decisions: vec![], ask: Ask::Read(Key::new(b"k".to_vec()).unwrap()) };
            prop_assert!(matches!(service.answer(other), MemberReply::Refused(_)));
        }
    }

    #[test]
    fn oversized_and_trailing_input_is_refused() {
        let huge = vec![0u8; MAX_MEMBER_FRAME + 1];
        assert!(matches!(
            MemberRequest::decode(&huge),
            Err(TxnError::TooLarge { .. })
        ));
        assert!(matches!(
            MemberReply::decode(&huge),
            Err(TxnError::TooLarge { .. })
        ));
        let mut bytes = MemberReply::Behind { next_height: 3 }.encode().unwrap();
        bytes.push(0);
        assert!(matches!(
            MemberReply::decode(&bytes),
            Err(TxnError::Decode { .. })
        ));
        // More decisions than the bound are refused while decoding.
        let command = Command::sign(
            &hologram_receipt::KeyPair::from_seed([0xc1; 32]),
            TxnMessage::Abort {
                txn: TxnId([1; 16]),
            }
            .to_wire()
            .unwrap(),
        )
        .unwrap();
        let batch = hologram_consensus::Batch::new(vec![command.clone()]).unwrap();
        let keys = KeyPair::from_seed([9; 32]);
        let vote = hologram_consensus::Vote::sign(
            &keys,
            hologram_consensus::Slot {
                height: 0,
                round: 0,
                kind: hologram_consensus::VoteKind::Precommit,
            },
            Some(batch.receipt()),
        );
        let decision = Decision {
            batch,
            certificate: hologram_consensus::Certificate::from_votes(
                vote.slot,
                vote.value.unwrap(),
                [&vote],
            ),
        };
        let request = MemberRequest {
            group: keys.node_id(),
            from: 0,
            decisions: vec![decision; MAX_SYNC_DECISIONS + 1],
            ask: Ask::Endorse(command),
        };
        let bytes = postcard::to_allocvec(&request).unwrap();
        assert!(matches!(
            MemberRequest::decode(&bytes),
            Err(TxnError::Decode { .. })
        ));
        // A reply with an overlong value is refused.
        let long = MemberReply::Value(Some(vec![0; MAX_VALUE_LEN + 1]));
        assert!(matches!(
            MemberReply::decode(&postcard::to_allocvec(&long).unwrap()),
            Err(TxnError::TooLarge { .. })
        ));
    }
}
