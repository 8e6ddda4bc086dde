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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
}
