//! Shards as replicated groups (the cross-shard transactions over
//! `ReplicatedStateMachine`s, the chapter's exercise 3).
//!
//! A shard group of `n = 3f + 1` validators runs the participant logic as a
//! [`ShardMachine`]: the deterministic [`ParticipantCore`] (locks, prepared
//! state, values, decisions) applied to commands. Every step of two-phase
//! commit — prepare, the one-phase commit, the primary's commit or abort
//! decision, resolve, query — is a command, ordered by the group's
//! consensus ([`ReceiptConsensus`](hologram_consensus::ReceiptConsensus)
//! over the members' validators, `2f + 1` precommits per decision) and
//! applied by every member's
//! [`ReplicatedStateMachine`](hologram_consensus::ReplicatedStateMachine),
//! which checks the commit certificate. So a primary group's decision
//! record lives in a replicated log: neither the coordinator's loss nor any
//! `f` members' loss blocks anyone (the "best" option).
//!
//! **Trusting the answer.** A member's answer is its machine's output,
//! endorsed with its own signature ([`Endorsement`], for
//! `Purpose::Transition`); [`ReplicatedParticipant`] returns an output only
//! when `f + 1` distinct members endorsed the same one, so at least one
//! honest member computed it. A lying or silent member (up to `f`) changes
//! nothing; a validator that votes wrongly is refused by consensus.
//!
//! **The group's identity.** Towards the rest of the protocol a group is
//! one participant, and no member holds a key for it. Its id is
//! self-certifying: `BLAKE3("hologram shard-group v1\n" ‖ n u8 ‖ the n
//! member ids ascending)` ([`group_id`](crate::receipts::group_id), `n ≤`
//! [`MAX_GROUP`](crate::receipts::MAX_GROUP)). The group's
//! [`ShardMachine`] runs a core that signs as that
//! [`Group`](crate::receipts::Group) ([`Signer::Group`](crate::Signer::Group)):
//! its prepare votes, decisions and acknowledgements carry the group id as
//! signer and a [`GroupProof`](crate::receipts::GroupProof) with no
//! signature yet, so every replica computes the same output without a
//! secret. Each member's [`Endorsement`] adds its own signature of every
//! such receipt, for the purpose that receipt needs ([`group_claims`]);
//! [`ReplicatedParticipant::agree`] takes the output `f + 1` members
//! endorsed and completes each receipt's proof with `f + 1` of their
//! checked signatures. The coordinator and other participants — groups or
//! single-replica shards, mixed in one transaction — then verify it as any
//! [`SignedReceipt`]. A Byzantine member signing a
//! vote or decision in the group's name outside consensus has one
//! signature of the `f + 1` needed, and is refused
//! ([`TxnError::TooFewSignatures`]); a single signature claiming the group
//! id verifies under no key ([`TxnError::BadSignature`]).
//!
//! A group's core does not hand keys off ([`crate::Transfer`] transfers are
//! signed by one node's keys): asked to, it refuses with
//! [`TxnError::InvalidHandOff`]. Hand-offs between groups are not built yet.
//!
//! **Recovery.** The core's timers (a primary's unilateral abort, a
//! secondary's question) are not deterministic across replicas, so a group
//! does not run them; their work is a command anyone may submit: [`settle`]
//! asks the primary group to abort (which returns the decision already made,
//! commit included, if there is one) and resolves the prepared group with
//! it. A transaction whose coordinator crashed at any step is thereby
//! completed or aborted everywhere.
//!
//! **Proposing.** One member's keys drive the group's consensus; when that
//! member is down, or its rounds fail [`FAILOVER_AFTER`] times in a row, the
//! next live member takes over at the next height after `catch_up` (a height
//! its predecessor got decided is adopted, a locked value re-proposed).
//!
//! **Where it runs.** [`ReplicatedParticipant::in_process`] (and
//! [`ReplicatedParticipant::new`]) run a whole group in one process:
//! members and validators side by side; a member that is down still has its
//! replica kept up to date, as if it had restarted and caught up.
//! [`ReplicatedParticipant::over`] runs only the proposer, over validators
//! and members anywhere — on a network, one node per member:
//!
//! | node | runs | serves |
//! |---|---|---|
//! | each member | a [`LocalValidator`] and a [`MemberService`] (its keys, its replica) | [`ValidatorHandler`](hologram_consensus::ValidatorHandler) under `hologram_consensus::VALIDATOR_PROTOCOL`, the [`MemberService`] under `Protocol::TXN_MEMBER` |
//! | the group's proposer | [`ReplicatedParticipant::over`] the members' [`RemoteValidator`](hologram_consensus::RemoteValidator)s and [`RemoteMember`]s, with one or more members' keys to propose with | a [`ParticipantService`](crate::ParticipantService) under `crate::TXN_CALL_PROTOCOL` |
//! | a coordinator | [`DistributedTransaction`](crate::DistributedTransaction) over [`RemoteParticipant`](crate::RemoteParticipant)s | nothing |
//!
//! The proposer sends each member the decided heights it lacks with each
//! request (they are self-verifying: the member checks each commit
//! certificate), and a member that restarted with an empty replica says so
//! and is sent the log from its start ([`member`]). The proposer holds no
//! state the group needs: a new proposer node (other keys, or the same)
//! started [`over`](ReplicatedParticipant::over) the same nodes adopts the
//! heights the validators decided before its first proposal (as long as
//! they still keep them: a [`LocalValidator`] keeps the last 1024), and a
//! [`RemoteParticipant`](crate::RemoteParticipant) given several proposer
//! nodes moves to the next when one does not answer. Two proposers active
//! at once stay safe (validators enforce one value per height) but slow
//! each other down.
//!
//! Not built yet: a proposer node's log is in memory only (a new proposer
//! rebuilds it from the validators, one height per status round trip), the
//! log is never compacted (a member restarting late is sent every height),
//! and members' replicas are not durable (a restarted member replays the
//! whole log; its validator's voting record must be durable —
//! [`LocalValidator::durable`] — or it may vote twice).
//!
//! [`ParticipantCore`]: crate::ParticipantCore

mod group;
mod machine;
pub mod member;

pub use group::{
    GroupMember, MemberBehaviour, ReplicatedParticipant, FAILOVER_AFTER, MAX_ROUNDS,
    MEMBER_ATTEMPTS,
};
pub use machine::{group_claims, Endorsement, ShardMachine, ENDORSEMENT_TAG};
pub use member::{
    Ask, Member, MemberReply, MemberRequest, MemberService, RemoteMember, MAX_MEMBER_FRAME,
    MAX_SYNC_DECISIONS,
};

use crate::participant::ParticipantCore;
use crate::transaction::Participant;
use crate::{SignedReceipt, TxnError, TxnId};
use hologram_consensus::{LocalValidator, Validator, ValidatorSet};
use hologram_receipt::KeyPair;
use std::sync::Arc;

impl ReplicatedParticipant {
    /// The [`Group`](crate::Group) of these members' keys: a group's core
    /// signs as it (`ParticipantCore::new(group, ...)`), and its id is the
    /// group's participant id.
    pub fn group_of(members: &[KeyPair]) -> Result<crate::Group, TxnError> {
        crate::Group::new(members.iter().map(KeyPair::node_id).collect())
    }

    /// A group in this process: one member (with an honest
    /// [`LocalValidator`]) per entry of `members`, each starting from a
    /// clone of `core` (which signs as the [`Group`](crate::Group) of the
    /// members' ids, see [`ReplicatedParticipant::group_of`]); the first
    /// member proposes until it fails.
    pub fn in_process(
        core: &ParticipantCore,
        members: &[(KeyPair, MemberBehaviour)],
    ) -> Result<Self, TxnError> {
        let set = ValidatorSet::new(members.iter().map(|(k, _)| k.node_id()).collect())
            .map_err(|e| TxnError::Transport(format!("validator set: {e}")))?;
        let validators = members
            .iter()
            .map(|(k, _)| {
                Arc::new(LocalValidator::new(k.clone(), set.clone())) as Arc<dyn Validator>
            })
            .collect();
        let members = members
            .iter()
            .map(|(k, b)| GroupMember::new(k.clone(), set.clone(), core.clone(), *b))
            .collect();
        ReplicatedParticipant::new(set, validators, members)
    }
}

/// Settles `txn` at `prepared` (a participant left prepared, e.g. by a
/// coordinator that crashed): asks `primary` to decide abort — which
/// returns the decision already made if there is one, a commit included —
/// and resolves `prepared` with that decision. Returns `prepared`'s signed
/// acknowledgement.
pub async fn settle(
    prepared: &dyn Participant,
    primary: &dyn Participant,
    txn: TxnId,
) -> Result<SignedReceipt, TxnError> {
    let decision = primary.abort(txn).await?;
    decision.verify(&txn, &primary.id())?;
    prepared.resolve(txn, decision).await
}
