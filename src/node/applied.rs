//! The applied commands on disk: what the client protocol's log pages
//! ([`ControlRequest::Log`](super::ControlRequest::Log)) are read from, so
//! that a node's memory does not grow with the commands it applied.
//!
//! Beside the consensus log, in the node's store's named key space, each
//! applied command has an object under `"hologram-node/applied/" ‖ position
//! u64 BE`: its transition receipt (72 canonical bytes) ‖ the command in
//! its wire encoding (client, sequence, first unanswered, signature,
//! payload). `"hologram-node/applied-count"` (u64 LE) says how
//! many positions were stored, `"hologram-node/applied-first"` (u64 LE,
//! absent: 0) the first one still stored; both are written in the same
//! atomic `set_named` as the objects. Commands are buffered and written in
//! batches (at most [`FLUSH_COMMANDS`] commands or [`FLUSH_BYTES`] bytes,
//! and before a page is read).
//!
//! The table is bounded: it keeps the newest `keep` positions
//! ([`NodeConfig::keep_commands`](super::NodeConfig::keep_commands)), each
//! write deleting the oldest ones past that (at most
//! [`PRUNE_PER_FLUSH`] a write, so lowering `keep` shrinks it over a few
//! writes). It is a by-product of the decided blocks: after a restart the
//! replay of the blocks after the node's snapshot writes the positions it
//! is missing (positions and receipts are the same for the same chain).
//! When the node's machine is restored from a snapshot with more commands
//! applied than the table holds (state sync, or a crash between a
//! compaction and a write of the table), the commands in between are in
//! no block the node has: the table starts over at the snapshot's count
//! ([`restart_at`](AppliedLog::restart_at)).

use super::error::{store as store_error, NodeError};
use super::state::Ack;
use hologram_cam::{Name, Object, Store};
use hologram_consensus::{Answer, Command, Decision, MAX_COMMAND_BYTES};
use hologram_lattice::wire;
use hologram_receipt::Receipt;
use std::sync::Arc;

/// The prefix of an applied command's name; the position follows, u64 BE.
const APPLIED_NAME: &[u8] = b"hologram-node/applied/";
/// The name of the count of stored positions.
const COUNT_NAME: &[u8] = b"hologram-node/applied-count";
/// The name of the first position still stored.
const FIRST_NAME: &[u8] = b"hologram-node/applied-first";
/// The most old positions one write deletes.
pub(crate) const PRUNE_PER_FLUSH: u64 = 2 * FLUSH_COMMANDS as u64;
/// The most commands buffered before they are written.
pub(crate) const FLUSH_COMMANDS: usize = 4096;
/// The most payload bytes buffered before they are written.
pub(crate) const FLUSH_BYTES: usize = 1 << 20;
/// The receipt's canonical bytes, before the command.
const RECEIPT: usize = 72;
/// The most bytes of an encoded command: its fixed fields (client, two
/// numbers, signature, with their varint tags) and the largest payload.
const MAX_ENTRY: usize = 32 + 10 + 10 + 64 + 4 + MAX_COMMAND_BYTES;

/// The applied commands on disk: see the [module docs](self).
pub(crate) struct AppliedLog {
    store: Arc<dyn Store>,
    /// How many of the newest positions are kept.
    keep: u64,
    /// Positions `first..stored` are in the store.
    first: u64,
    stored: u64,
    /// Positions `stored..` not written yet, in order.
    pending: Vec<(Command, Receipt)>,
    pending_bytes: usize,
}

fn name(position: u64) -> Result<Name, NodeError> {
    let mut bytes = APPLIED_NAME.to_vec();
    bytes.extend_from_slice(&position.to_be_bytes());
    Name::new(bytes).map_err(store_error("naming an applied command"))
}

fn count_name() -> Result<Name, NodeError> {
    Name::new(COUNT_NAME).map_err(store_error("naming the applied count"))
}

fn first_name() -> Result<Name, NodeError> {
    Name::new(FIRST_NAME).map_err(store_error("naming the first applied position"))
}

/// A position as the object stored under a count's name.
fn number(n: u64) -> Option<Object> {
    Some(Object::new(n.to_le_bytes().to_vec()))
}

/// The number stored under `name` (0 if none).
async fn read_number(store: &dyn Store, name: &Name, what: &str) -> Result<u64, NodeError> {
    match (store.get_named(name).await).map_err(store_error("reading the applied table"))? {
        None => Ok(0),
        Some(object) => {
            let bytes: [u8; 8] = (object.data().try_into())
                .map_err(|_| corrupt(0, format!("{what} is not 8 bytes")))?;
            Ok(u64::from_le_bytes(bytes))
        }
    }
}

fn encode(command: &Command, receipt: &Receipt) -> Result<Vec<u8>, NodeError> {
    let mut out =
        Vec::with_capacity(RECEIPT + MAX_ENTRY - MAX_COMMAND_BYTES + command.bytes().len());
    out.extend_from_slice(&receipt.to_canonical_bytes());
    Ok(wire::encode_into("applied command", command, out)?)
}

fn decode(bytes: &[u8]) -> Result<(Command, Receipt), String> {
    let (receipt, command) = bytes
        .split_at_checked(RECEIPT)
        .ok_or("shorter than a receipt")?;
    let receipt = Receipt::from_canonical_bytes(receipt).map_err(|e| e.to_string())?;
    let command: Command =
        wire::decode("applied command", command, MAX_ENTRY).map_err(|e| e.to_string())?;
    Ok((command, receipt))
}

fn corrupt(position: u64, why: impl core::fmt::Display) -> NodeError {
    NodeError::Consensus(hologram_consensus::ConsensusError::Log(format!(
        "stored applied command {position}: {why}"
    )))
}

impl AppliedLog {
    /// The table in `store`, keeping the newest `keep` positions (at
    /// least 1).
    pub(crate) async fn open(store: Arc<dyn Store>, keep: u64) -> Result<Self, NodeError> {
        let stored = read_number(&*store, &count_name()?, "the applied count").await?;
        let first = read_number(&*store, &first_name()?, "the first applied position").await?;
        if first > stored {
            return Err(corrupt(first, format!("first of {stored} stored")));
        }
        Ok(Self {
            store,
            keep: keep.max(1),
            first,
            stored,
            pending: Vec::new(),
            pending_bytes: 0,
        })
    }

    /// The position after the last one stored or buffered.
    pub(crate) fn len(&self) -> u64 {
        self.stored + self.pending.len() as u64
    }

    /// The machine was restored from a snapshot with `applied` commands:
    /// if the table ends before that, the commands in between are in no
    /// block this node has, and the table starts over at `applied` (what
    /// it held is deleted, in the same write that moves it).
    pub(crate) async fn restart_at(&mut self, applied: u64) -> Result<(), NodeError> {
        self.flush().await?;
        if applied <= self.stored {
            return Ok(());
        }
        let mut changes = Vec::with_capacity((self.stored - self.first) as usize + 2);
        for position in self.first..self.stored {
            changes.push((name(position)?, None));
        }
        changes.push((count_name()?, number(applied)));
        changes.push((first_name()?, number(applied)));
        (self.store.set_named(changes).await)
            .map_err(store_error("moving the applied table to a snapshot"))?;
        tracing::info!(
            from = self.stored,
            to = applied,
            "the applied table starts over at the restored snapshot"
        );
        self.first = applied;
        self.stored = applied;
        Ok(())
    }

    /// Records what `decision` applied (its `answers`, in batch order, as
    /// [`ReplicatedStateMachine::apply_decision`](hologram_consensus::ReplicatedStateMachine::apply_decision)
    /// returns them; only the commands applied now take a position).
    /// Positions already stored are skipped. Returns whether the buffer is
    /// full: then [`flush`](Self::flush).
    pub(crate) fn record(&mut self, decision: &Decision, answers: &[Answer<Ack>]) -> bool {
        let mut batch = decision.batch.commands().iter();
        for done in answers.iter().filter_map(Answer::applied) {
            let Some(command) = batch.find(|c| c.id() == done.entry.command) else {
                break;
            };
            let position = done.output.position;
            if position < self.len() {
                continue;
            }
            if position > self.len() {
                // Positions come one after another from the state machine:
                // a gap would misplace every later command.
                tracing::warn!(
                    position,
                    expected = self.len(),
                    "applied position out of order"
                );
                break;
            }
            self.pending_bytes += command.bytes().len();
            self.pending.push((command.clone(), done.entry.receipt));
        }
        self.pending.len() >= FLUSH_COMMANDS || self.pending_bytes >= FLUSH_BYTES
    }

    /// Writes the buffered commands and the new count, and deletes the
    /// oldest positions past `keep` (at most [`PRUNE_PER_FLUSH`]), in one
    /// atomic write.
    pub(crate) async fn flush(&mut self) -> Result<(), NodeError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let count = self.len();
        let first = count
            .saturating_sub(self.keep)
            .clamp(self.first, self.first + PRUNE_PER_FLUSH);
        let mut changes =
            Vec::with_capacity(self.pending.len() + (first - self.first) as usize + 2);
        for (i, (command, receipt)) in self.pending.iter().enumerate() {
            let position = self.stored + i as u64;
            if position >= first {
                let object = Object::new(encode(command, receipt)?);
                changes.push((name(position)?, Some(object)));
            }
        }
        for position in self.first..first.min(self.stored) {
            changes.push((name(position)?, None));
        }
        changes.push((count_name()?, number(count)));
        if first != self.first {
            changes.push((first_name()?, number(first)));
        }
        (self.store.set_named(changes).await).map_err(store_error("writing applied commands"))?;
        self.stored = count;
        self.first = first.min(count);
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Positions from `from` (or the first one still stored, if later)
    /// below `limit` that fit in a page: at most `max` commands and
    /// `max_bytes` of payload (at least one if any remain), with their
    /// receipts, and the position of the first. Writes the buffer first.
    pub(crate) async fn page(
        &mut self,
        from: u64,
        limit: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<(u64, Vec<(Command, Receipt)>), NodeError> {
        self.flush().await?;
        let end = limit.min(self.stored);
        let start = from.max(self.first);
        let mut page = Vec::new();
        let mut bytes = 0usize;
        let mut position = start;
        while position < end && page.len() < max {
            let object = (self.store.get_named(&name(position)?).await)
                .map_err(store_error("reading an applied command"))?
                .ok_or_else(|| corrupt(position, "missing"))?;
            let (command, receipt) = decode(object.data()).map_err(|e| corrupt(position, e))?;
            bytes = bytes.saturating_add(command.bytes().len());
            if !page.is_empty() && bytes > max_bytes {
                break;
            }
            page.push((command, receipt));
            position += 1;
        }
        Ok((start, page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use hologram_cam::MemoryStore;
    use hologram_receipt::KeyPair;

    fn command(payload: &[u8]) -> Command {
        let sequence = payload.len() as u64;
        Command::sign(
            &KeyPair::from_seed([0xc1; 32]),
            sequence,
            0,
            payload.to_vec(),
        )
        .expect("small")
    }

    #[test]
    fn an_entry_round_trips_and_garbage_is_an_error() {
        let c = command(b"abc");
        let r = Receipt::from_bytes(b"r");
        let bytes = encode(&c, &r).expect("encode");
        assert_eq!(decode(&bytes), Ok((c.clone(), r)));
        for cut in [0, 10, 72, 100, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn pages_come_from_the_store_and_survive_a_reopen() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut log = block_on(AppliedLog::open(store.clone(), 10)).expect("open");
        let commands: Vec<Command> = [&b"a"[..], b"bb", b"ccc"]
            .iter()
            .map(|p| command(p))
            .collect();
        for (i, c) in commands.iter().enumerate() {
            log.pending
                .push((c.clone(), Receipt::from_bytes(&[i as u8])));
        }
        let (first, page) = block_on(log.page(0, 3, 10, 1 << 20)).expect("page");
        assert_eq!(first, 0);
        let got: Vec<&Command> = page.iter().map(|(c, _)| c).collect();
        assert_eq!(got, commands.iter().collect::<Vec<_>>());
        assert_eq!(page[2].1, Receipt::from_bytes(&[2]));
        // Bounds: the limit, the count, the byte budget (at least one).
        let mut len = |from, limit, max, bytes| {
            block_on(log.page(from, limit, max, bytes))
                .expect("page")
                .1
                .len()
        };
        assert_eq!(len(0, 2, 10, 1 << 20), 2);
        assert_eq!(len(1, 3, 1, 1 << 20), 1);
        assert_eq!(len(0, 3, 10, 3), 2);
        assert_eq!(len(2, 3, 10, 0), 1);
        assert_eq!(len(3, 9, 10, 1 << 20), 0);
        let again = block_on(AppliedLog::open(store, 10)).expect("reopen");
        assert_eq!(again.len(), 3);
    }

    #[test]
    fn recording_takes_the_applied_commands_of_a_decision_once() {
        use hologram_consensus::{Applied, Batch, Certificate, LogEntry, Outcome, Slot, VoteKind};
        let commands: Vec<Command> = [&b"x"[..], b"y", b"z"].iter().map(|p| command(p)).collect();
        let batch = Batch::new(commands.clone()).expect("batch");
        let decision = Decision {
            certificate: Certificate {
                slot: Slot {
                    height: 0,
                    round: 0,
                    kind: VoteKind::Precommit,
                },
                value: batch.receipt(),
                signatures: Vec::new(),
            },
            batch,
        };
        // "y" was applied before (a duplicate): x and z get positions 0 and 1.
        let ack = |position| Ack {
            height: 0,
            position,
            kv: None,
        };
        let applied: Vec<Answer<Ack>> = [(0usize, Some(0u64)), (1, None), (2, Some(1))]
            .iter()
            .map(|&(i, position)| Answer {
                client: commands[i].client(),
                sequence: commands[i].sequence(),
                command: commands[i].id(),
                outcome: match position {
                    Some(p) => Outcome::Applied(Applied {
                        entry: LogEntry {
                            height: 0,
                            command: commands[i].id(),
                            receipt: Receipt::from_bytes(&[i as u8]),
                        },
                        output: ack(p),
                    }),
                    None => Outcome::Duplicate(ack(7)),
                },
            })
            .collect();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut log = block_on(AppliedLog::open(store.clone(), 10)).expect("open");
        assert!(!log.record(&decision, &applied), "far from full");
        assert_eq!(log.len(), 2);
        block_on(log.flush()).expect("flush");
        // A replay after a restart records nothing new.
        let mut again = block_on(AppliedLog::open(store, 10)).expect("reopen");
        again.record(&decision, &applied);
        assert_eq!(again.len(), 2);
        let (_, page) = block_on(again.page(0, 2, 10, 1 << 20)).expect("page");
        assert_eq!(page[0].0, commands[0]);
        assert_eq!(page[1], (commands[2].clone(), Receipt::from_bytes(&[2])));
    }

    /// The entries a store holds under the table's prefix.
    fn stored_positions(store: &dyn Store, upto: u64) -> Vec<u64> {
        (0..upto)
            .filter(|&p| {
                block_on(store.get_named(&name(p).unwrap()))
                    .unwrap()
                    .is_some()
            })
            .collect()
    }

    #[test]
    fn the_table_keeps_the_newest_commands_and_starts_over_at_a_snapshot() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut log = block_on(AppliedLog::open(store.clone(), 3)).expect("open");
        let c = command(b"x");
        for round in 0..4u8 {
            for i in 0..2u8 {
                log.pending
                    .push((c.clone(), Receipt::from_bytes(&[round, i])));
            }
            block_on(log.flush()).expect("flush");
        }
        // 8 written, the newest 3 kept: positions 5, 6 and 7.
        assert_eq!((log.first, log.len()), (5, 8));
        assert_eq!(stored_positions(&*store, 20), [5, 6, 7]);
        let (first, page) = block_on(log.page(0, 8, 10, 1 << 20)).expect("page");
        assert_eq!(
            (first, page.len()),
            (5, 3),
            "a page starts at the first kept"
        );
        assert_eq!(page[2].1, Receipt::from_bytes(&[3, 1]));
        // A buffer larger than what is kept writes only what is kept.
        for i in 0..5u8 {
            log.pending.push((c.clone(), Receipt::from_bytes(&[9, i])));
        }
        block_on(log.flush()).expect("flush");
        assert_eq!(stored_positions(&*store, 20), [10, 11, 12]);
        let reopened = block_on(AppliedLog::open(store.clone(), 3)).expect("reopen");
        assert_eq!((reopened.first, reopened.len()), (10, 13));
        // A snapshot behind the table changes nothing; one past it empties
        // the table, which goes on from the snapshot's count.
        block_on(log.restart_at(12)).expect("restart");
        assert_eq!((log.first, log.len()), (10, 13));
        block_on(log.restart_at(40)).expect("restart");
        assert_eq!((log.first, log.len()), (40, 40));
        assert!(stored_positions(&*store, 50).is_empty());
        log.pending.push((c.clone(), Receipt::from_bytes(b"after")));
        block_on(log.flush()).expect("flush");
        assert_eq!(stored_positions(&*store, 50), [40]);
        let reopened = block_on(AppliedLog::open(store, 3)).expect("reopen");
        assert_eq!((reopened.first, reopened.len()), (40, 41));
    }
}
