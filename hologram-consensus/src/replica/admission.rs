//! Which commands a replica lets in: every client signature is verified
//! before a command enters the mempool or a proposal carrying it is accepted.
//!
//! What a peer can make a replica verify is bounded:
//!
//! - a command already in the mempool with the same signature, or
//!   committed recently, is never verified again (neither is a proposal whose batch
//!   is already known at its height);
//! - a `Commands` frame is taken only from a validator, and only its first
//!   `min(max_batch, mempool room)` commands that are new are verified (one
//!   by one and strictly, so that every replica reaches the same verdict;
//!   see [`verify_commands`]). A frame with a bad signature is dropped whole: honest
//!   replicas gossip only commands they verified, so such a frame comes from
//!   a liar or was corrupted (its good commands come again on the sender's
//!   next resend). The work per frame is thus at most `max_batch`
//!   signature verifications, and proportional to the bytes
//!   received (each command verified took at least 100 bytes of the frame);
//! - a proposal is verified only after its cheap checks (height window,
//!   round leader, repeat, header signature, proof of lock, batch receipt),
//!   so only the round's leader can make a replica verify a batch, once per
//!   value; a bad command makes it blamed, its proposal not stored and not
//!   voted for;
//! - a decision (catch-up) is not verified command by command: its commit
//!   certificate shows that `2f + 1` validators, `f + 1` of them honest,
//!   accepted its proposal after verifying it.

use super::{Outgoing, Outputs, Replica};
use crate::command::{verify_commands, Command};
use crate::message::{ConsensusMessage, Proposal};
use crate::ConsensusError;
use hologram_cam::FastSet;
use hologram_lattice::NodeId;

impl Replica {
    /// Whether `c` would be skipped by the mempool anyway (committed
    /// recently, or some command of its id is held): then it is not
    /// verified.
    fn known(&self, c: &Command) -> bool {
        self.committed.contains(&c.id()) || self.mempool.contains(&c.id())
    }

    /// Verifies the new commands of a client's submission (all or nothing).
    pub(super) fn verify_submitted(&self, commands: &[Command]) -> Result<(), ConsensusError> {
        verify_commands(commands.iter().filter(|c| !self.known(c)))
    }

    /// Sends commands to every validator's mempool, at most `max_batch` per
    /// frame (what a receiver verifies of one frame).
    pub(super) fn gossip(&self, commands: Vec<Command>, out: &mut Outputs) {
        for chunk in commands.chunks(self.config.max_batch) {
            out.messages
                .push(Outgoing::Broadcast(ConsensusMessage::Commands(
                    chunk.to_vec(),
                )));
        }
    }

    /// A `Commands` frame from `from` (see the [module docs](self)).
    pub(super) fn on_commands(
        &mut self,
        now: u64,
        from: NodeId,
        commands: Vec<Command>,
        out: &mut Outputs,
    ) {
        if !self.membership.is_member(&from) {
            return;
        }
        let room = self.mempool.capacity().saturating_sub(self.mempool.len());
        let take = room.min(self.config.max_batch);
        let mut seen = FastSet::default();
        let mut fresh: Vec<Command> = Vec::new();
        for c in commands {
            if fresh.len() >= take {
                break;
            }
            if !self.known(&c) && seen.insert(c.id()) {
                fresh.push(c);
            }
        }
        if verify_commands(&fresh).is_err() {
            return;
        }
        self.add_commands(fresh, false);
        self.activate(now, out);
    }

    /// Checks the client signature of each command of `p`'s batch, unless
    /// the batch is already known at its height or the very command is in
    /// the mempool (verified when it entered).
    pub(super) fn verify_proposed(&self, p: &Proposal) -> Result<(), ConsensusError> {
        if self.body(p.header.height, &p.header.value).is_some() {
            return Ok(());
        }
        verify_commands(p.batch.commands().iter().filter(|c| !self.mempool.holds(c)))
    }
}
