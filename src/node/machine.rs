//! The node's replicated state machine as the consensus driver runs it
//! ([`ReplicaDriver::with_machine`](hologram_consensus::ReplicaDriver::with_machine)):
//! the driver applies each decided height, snapshots the machine every
//! [`NodeConfig::snapshot_every`](super::NodeConfig::snapshot_every)
//! heights (the checkpoint it binds into consensus, the compaction of the
//! durable log), serves the certified snapshot to peers and restores one
//! fetched from them. The node task reads the same machine (the session
//! table for retries, the status) and is told, in order, what the driver
//! did with it ([`Event`]): the answers of each applied height, and each
//! restore.

use super::state::{Ack, CommandList};
use hologram_consensus::{
    Answer, Checkpoint, ConsensusError, Decision, Executor, Membership, ReplicatedStateMachine,
    ValidatorSet,
};
use hologram_receipt::ReceiptChain;
use metrics::{Counter, Gauge};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::mpsc;

/// The replicated state machine a node runs.
pub(crate) type NodeRsm = ReplicatedStateMachine<CommandList>;

/// Where the machine is: the heights it applied and the chain over the
/// commands they applied (what a node's status reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Point {
    /// Heights decided and applied (the machine's next height).
    pub(crate) heights: u64,
    /// The chain over the applied commands' transition receipts.
    pub(crate) chain: ReceiptChain,
}

impl Point {
    /// Where `rsm` is now.
    pub(crate) fn of(rsm: &NodeRsm) -> Point {
        Point {
            heights: rsm.next_height(),
            chain: *rsm.receipt_chain(),
        }
    }
}

/// What the driver did with the machine, in the order it did it; each
/// event with where the machine was right after it.
#[derive(Debug)]
pub(crate) enum Event {
    /// A decided height was applied: what became of each of its commands.
    Applied(Box<Decision>, Vec<Answer<Ack>>, Point),
    /// The state was replaced by a certified snapshot: the machine is now
    /// at the snapshot's height (the point's heights).
    Restored(Point),
}

/// The machine, shared by the driver (which changes it) and the node task
/// (which reads it). Each holds the lock only for one call.
#[derive(Clone)]
pub(crate) struct SharedMachine {
    rsm: Arc<Mutex<NodeRsm>>,
    /// The height of the newest snapshot taken or restored (0: none).
    snapshot: Arc<AtomicU64>,
}

impl SharedMachine {
    /// The initial state, accepting decisions certified by `validators`.
    pub(crate) fn new(validators: ValidatorSet) -> Self {
        Self {
            rsm: Arc::new(Mutex::new(NodeRsm::new(CommandList::new(), validators))),
            snapshot: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The height of the newest snapshot taken or restored (0: none).
    pub(crate) fn snapshot_height(&self) -> u64 {
        self.snapshot.load(Ordering::Relaxed)
    }

    /// The machine, for one read (never held across an await).
    pub(crate) fn lock(&self) -> MutexGuard<'_, NodeRsm> {
        // A panic while holding it leaves a whole machine (every change is
        // one call), so a poisoned lock is taken as is.
        self.rsm.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The factory [`ReplicaDriver::with_machine`](hologram_consensus::ReplicaDriver::with_machine)
    /// takes: each call puts the machine back in its initial state and
    /// returns the executor the driver runs it through, which reports to
    /// `events`.
    pub(crate) fn factory(
        &self,
        validators: ValidatorSet,
        events: mpsc::UnboundedSender<Event>,
    ) -> impl Fn() -> Box<dyn Executor> + Send + Sync + 'static {
        let shared = self.clone();
        move || {
            *shared.lock() = NodeRsm::new(CommandList::new(), validators.clone());
            Box::new(Driven {
                shared: shared.clone(),
                events: events.clone(),
                taken: metrics::counter!("hologram_node_snapshots_taken_total"),
                height: metrics::gauge!("hologram_node_snapshot_height"),
                bytes: metrics::gauge!("hologram_node_snapshot_bytes"),
            })
        }
    }
}

/// The machine as the driver runs it.
struct Driven {
    shared: SharedMachine,
    events: mpsc::UnboundedSender<Event>,
    taken: Counter,
    height: Gauge,
    bytes: Gauge,
}

impl Driven {
    /// Tells the node task (gone only when the node stops: then nobody
    /// needs to know).
    fn report(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

impl Executor for Driven {
    fn execute(&mut self, decision: &Decision) -> Result<(), ConsensusError> {
        let (answers, point) = {
            let mut rsm = self.shared.lock();
            let answers = rsm.apply_decision(decision)?;
            (answers, Point::of(&rsm))
        };
        self.report(Event::Applied(Box::new(decision.clone()), answers, point));
        Ok(())
    }

    fn next_height(&self) -> u64 {
        self.shared.lock().next_height()
    }

    fn chain(&self) -> ReceiptChain {
        *self.shared.lock().receipt_chain()
    }

    fn snapshot(&self) -> Result<Vec<u8>, ConsensusError> {
        let (bytes, height) = {
            let rsm = self.shared.lock();
            (rsm.snapshot()?, rsm.next_height())
        };
        self.taken.increment(1);
        self.shared.snapshot.store(height, Ordering::Relaxed);
        self.height.set(height as f64);
        self.bytes.set(bytes.len() as f64);
        tracing::debug!(height, bytes = bytes.len(), "snapshot taken");
        Ok(bytes)
    }

    fn membership(&self) -> Membership {
        self.shared.lock().membership().clone()
    }

    fn restore(&mut self, bytes: &[u8], checkpoint: &Checkpoint) -> Result<(), ConsensusError> {
        let point = {
            let mut rsm = self.shared.lock();
            rsm.restore(bytes, Some(checkpoint))?;
            Point::of(&rsm)
        };
        (self.shared.snapshot).store(checkpoint.height, Ordering::Relaxed);
        self.height.set(checkpoint.height as f64);
        self.bytes.set(bytes.len() as f64);
        self.report(Event::Restored(point));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_cam::ChunkParams;
    use hologram_consensus::{
        Batch, Certificate, Command, Slot, SnapshotParts, ValidatorSet, Vote, VoteKind,
    };
    use hologram_receipt::KeyPair;

    fn decided(keys: &KeyPair, height: u64, commands: Vec<Command>) -> Decision {
        let batch = Batch::new(commands).unwrap();
        let slot = Slot {
            height,
            round: 0,
            kind: VoteKind::Precommit,
        };
        let vote = Vote::sign(keys, slot, Some(batch.receipt()));
        Decision {
            certificate: Certificate {
                slot,
                value: batch.receipt(),
                signatures: vec![(vote.voter, vote.signature)],
            },
            batch,
        }
    }

    #[test]
    fn the_driver_applies_snapshots_and_restores_the_one_machine_the_task_reads() {
        let validator = KeyPair::from_seed([1; 32]);
        let set = ValidatorSet::new(vec![validator.node_id()]).unwrap();
        let client = KeyPair::from_seed([2; 32]);
        let (tx, mut events) = mpsc::unbounded_channel();
        let shared = SharedMachine::new(set.clone());
        let factory = shared.factory(set.clone(), tx.clone());
        let mut exec = factory();
        let d = decided(
            &validator,
            0,
            vec![Command::sign(&client, 0, 0, b"a".to_vec()).unwrap()],
        );
        exec.execute(&d).unwrap();
        assert_eq!(shared.lock().applied_count(), 1, "the task sees it");
        match events.try_recv().unwrap() {
            Event::Applied(got, answers, point) => {
                assert_eq!(*got, d);
                assert_eq!(answers[0].output().unwrap().position, 0);
                // Where the machine was right after this height.
                assert_eq!(point, Point::of(&shared.lock()));
                assert_eq!((point.heights, point.chain.len()), (1, 1));
            }
            other => panic!("{other:?}"),
        }
        // A height that does not follow is refused and reports nothing.
        assert!(exec.execute(&decided(&validator, 5, vec![])).is_err());
        assert!(events.try_recv().is_err());
        let bytes = exec.snapshot().unwrap();
        let parts = SnapshotParts::split(&bytes, ChunkParams::default()).unwrap();
        let checkpoint = Checkpoint {
            height: 1,
            snapshot: parts.address(),
            chain_head: exec.chain().head(),
        };
        // Another factory call starts over (the driver's restart); the
        // snapshot brings the state back, and the task is told.
        let mut again = shared.factory(set, tx)();
        assert_eq!(shared.lock().applied_count(), 0);
        let wrong = Checkpoint {
            height: 2,
            ..checkpoint
        };
        assert!(again.restore(&bytes, &wrong).is_err(), "not that snapshot");
        again.restore(&bytes, &checkpoint).unwrap();
        assert_eq!(shared.lock().applied_count(), 1);
        assert_eq!(again.next_height(), 1);
        assert_eq!(shared.snapshot_height(), 1);
        match events.try_recv().unwrap() {
            Event::Restored(point) => {
                assert_eq!((point.heights, point.chain.len()), (1, 1));
                assert_eq!(point.chain.head(), checkpoint.chain_head);
            }
            other => panic!("{other:?}"),
        }
    }
}
