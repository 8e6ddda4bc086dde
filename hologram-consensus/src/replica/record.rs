//! What a replica must keep across a crash to stay safe: per height in
//! flight, its lock and every vote and proposal it signed.
//!
//! A replica that forgot its lock, or signed a second vote for a slot after
//! a restart, would count as one more faulty validator. So before a signed
//! message leaves (the driver persists the record before sending), the record
//! holds it, and a restarted replica re-sends what it signed instead of
//! signing anew.

use crate::batch::Batch;
use crate::certificate::Certificate;
use crate::command::{Command, CommandId};
use crate::vote::{SignedHeader, Vote, VoteKind};
use hologram_receipt::Receipt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A lock: the value a replica precommitted after a polka, with the batch
/// (to re-propose it) and the polka (to justify that).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// The locked batch.
    pub batch: Batch,
    /// The quorum of prevotes for it (its slot names the round).
    pub proof: Certificate,
}

impl Lock {
    /// The round of the polka.
    pub fn round(&self) -> u32 {
        self.proof.round()
    }

    /// The locked value.
    pub fn value(&self) -> Receipt {
        self.proof.value
    }
}

/// One height's durable voting state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeightRecord {
    /// The lock, if any.
    pub locked: Option<Lock>,
    /// Votes signed, by round and kind.
    pub votes: BTreeMap<(u32, VoteKind), Vote>,
    /// Proposal headers signed, by round.
    pub proposals: BTreeMap<u32, SignedHeader>,
}

impl HeightRecord {
    /// The highest round in which anything was signed or locked.
    pub fn last_round(&self) -> u32 {
        let votes = self.votes.keys().map(|(r, _)| *r).max();
        let props = self.proposals.keys().copied().max();
        let lock = self.locked.as_ref().map(Lock::round);
        votes.max(props).max(lock).unwrap_or(0)
    }
}

/// The durable state of a replica besides its log: one [`HeightRecord`] per
/// undecided height it took part in, and the commands its own clients
/// submitted that are not committed yet (so that a crash does not silently
/// lose a command the replica accepted).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VotingRecord {
    /// The records by height.
    pub heights: BTreeMap<u64, HeightRecord>,
    /// Commands accepted from local clients and not yet committed.
    pub submitted: BTreeMap<CommandId, Command>,
    /// The replica signs nothing (no proposal, no vote) at a height below
    /// this one: set when it restarted from a voting record that was lost,
    /// so that it cannot sign a vote conflicting with one the lost record
    /// held (see [`Recovered::replica`](crate::Recovered::replica)). Kept
    /// in the record, so a second restart before it is reached abstains
    /// too. 0 (the default): no such height.
    #[serde(skip)]
    pub abstain_below: u64,
    /// How many votes and proposal headers the replica signed anew since
    /// it started (not stored, and not compared by `==`): what the driver's
    /// write-ahead check compares, so that a signature counts even when its
    /// height left the record in the same step (a replica whose own
    /// precommit completes the quorum signs and delivers the height at
    /// once).
    #[serde(skip)]
    pub signed: u64,
}

/// Records are equal when they hold the same heights, submitted commands
/// and abstain height; the count of signatures made is bookkeeping of the
/// running replica, not part of what is stored.
impl PartialEq for VotingRecord {
    fn eq(&self, other: &Self) -> bool {
        self.heights == other.heights
            && self.submitted == other.submitted
            && self.abstain_below == other.abstain_below
    }
}

impl Eq for VotingRecord {}

impl VotingRecord {
    /// Whether this record holds something `saved` lacks that must be
    /// durable before the messages of the step that made it are sent (the
    /// write-ahead rule of Tendermint, CometBFT's WAL and signer state): a
    /// height record that is new or changed (a vote or proposal signed, a
    /// lock taken or moved), or another abstain height.
    ///
    /// A signature is seen by the count of them ([`signed`](Self::signed)),
    /// not only by its height's record: a step can sign a precommit that
    /// completes a quorum and deliver the height, which drops it from the
    /// record. (Without the count such a step sent its precommit while the
    /// write was under way; the write failed, the restarted validator found
    /// the height undelivered and its record without the precommit, and
    /// precommitted nil in that round: seed 190 of the disk-fault campaign.)
    ///
    /// What it leaves out needs no write before sending, only before the
    /// driver settles (answers the submission, hands the decision on):
    ///
    /// - heights dropped because they were delivered, with nothing signed
    ///   in the step: their blocks are
    ///   written in the same atomic write as the record without them. A
    ///   crash before it keeps the old record, which still holds those
    ///   heights' locks and votes, and no block: the replica resumes them
    ///   under their lock, as after any crash before a decision's write. A
    ///   decision a peer was sent meanwhile is certified by a quorum, not by
    ///   this replica's durability.
    /// - `submitted` commands, added or committed: they are gossiped (not
    ///   signed by the replica) and a submission is answered only after the
    ///   write, so a crash before it loses only commands nobody was told
    ///   were taken (their clients retry, and a session answers a retry of
    ///   a command that was committed after all with its first answer).
    pub(crate) fn needs_write_ahead(&self, saved: &VotingRecord) -> bool {
        self.abstain_below != saved.abstain_below
            || self.signed != saved.signed
            || self
                .heights
                .iter()
                .any(|(h, record)| saved.heights.get(h) != Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vote::Slot;
    use hologram_receipt::KeyPair;

    fn vote(keys: &KeyPair, height: u64, kind: VoteKind) -> Vote {
        Vote::sign(
            keys,
            Slot {
                height,
                round: 0,
                kind,
            },
            None,
        )
    }

    /// Only what the replica signed (a new or changed height, or another
    /// abstain height) must be written before its messages are sent;
    /// delivered heights dropped and submitted commands need not.
    #[test]
    fn only_signed_changes_need_write_ahead() {
        let keys = KeyPair::from_seed([3; 32]);
        let mut saved = VotingRecord::default();
        saved
            .heights
            .entry(4)
            .or_default()
            .votes
            .insert((0, VoteKind::Prevote), vote(&keys, 4, VoteKind::Prevote));
        assert!(!saved.needs_write_ahead(&saved));

        let mut signed = saved.clone();
        signed.heights.entry(4).or_default().votes.insert(
            (0, VoteKind::Precommit),
            vote(&keys, 4, VoteKind::Precommit),
        );
        assert!(signed.needs_write_ahead(&saved), "a vote in a height held");
        let mut next = saved.clone();
        next.heights
            .entry(5)
            .or_default()
            .votes
            .insert((0, VoteKind::Prevote), vote(&keys, 5, VoteKind::Prevote));
        assert!(next.needs_write_ahead(&saved), "a vote in a new height");
        let mut abstaining = saved.clone();
        abstaining.abstain_below = 9;
        assert!(abstaining.needs_write_ahead(&saved));

        let mut delivered = saved.clone();
        delivered.heights.remove(&4);
        assert!(!delivered.needs_write_ahead(&saved), "a height delivered");
        delivered.signed += 1;
        assert!(
            delivered.needs_write_ahead(&saved),
            "a height delivered by the step that signed in it"
        );
        let mut submitted = saved.clone();
        let command = Command::sign(&keys, 0, 0, b"x".to_vec()).unwrap();
        submitted.submitted.insert(command.id(), command);
        assert!(!submitted.needs_write_ahead(&saved), "a command submitted");
    }
}
