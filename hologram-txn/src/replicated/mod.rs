//! Shards as replicated groups (the cross-shard transactions over
//! `ReplicatedStateMachine`s, the chapter's exercise 3).

mod calls;
mod group;
mod machine;
mod member;

pub use group::{ReplicatedParticipant, DEFAULT_CALL_TIMEOUT, DEFAULT_PATIENCE};
pub use machine::{group_claims, Endorsement, ShardMachine, ENDORSEMENT_TAG};
pub use member::{
    GroupMember, Member, MemberRun, MemberSetup, DEFAULT_WAIT, MAX_OUTPUTS, MAX_WAITING,
};

use crate::transaction::Participant;
use crate::{SignedReceipt, TxnError, TxnId};

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
