//! The replicated state machine a [`SimReplica`] runs: it applies what the
//! replica delivers, snapshots itself on the configured interval, tells the
//! replica its checkpoints, compacts the log once one is certified, serves
//! the certified snapshot's parts and restores a fetched one.

use super::SimReplica;
use crate::message::Decision;
use crate::persist::Recovered;
use crate::replica::{Outputs, Replica};
use crate::snapshot::{Checkpoint, Executor, SnapshotConfig, SnapshotParts};
use crate::ConsensusError;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How many snapshots taken and not yet certified a node keeps.
const UNCERTIFIED: usize = 4;

/// Makes a machine in its initial state (every replica's).
pub(crate) type Factory = Arc<dyn Fn() -> Box<dyn Executor> + Send + Sync>;

/// A node's machine and its snapshots.
pub(crate) struct Machine {
    exec: Box<dyn Executor>,
    factory: Factory,
    config: SnapshotConfig,
    /// Snapshots taken and not yet certified, by height.
    taken: BTreeMap<u64, SnapshotParts>,
    /// The newest certified snapshot this node holds, with the decision
    /// naming it: what the log was compacted to.
    certified: Option<(Decision, SnapshotParts)>,
    /// How many snapshots were fetched and restored (kept across restarts).
    restores: u64,
    /// Under a driver: the certified snapshot the durable log is to be
    /// compacted (or moved) to when the round is persisted.
    pending: Option<(Decision, SnapshotParts)>,
}

impl Machine {
    /// Applies `d`; snapshots when due (then returns its checkpoint).
    fn execute(&mut self, d: &Decision) -> Result<Option<Checkpoint>, ConsensusError> {
        self.exec.execute(d)?;
        let next = self.exec.next_height();
        if !self.config.due(next) {
            return Ok(None);
        }
        let parts = SnapshotParts::split(&self.exec.snapshot()?, self.config.chunks)?;
        let checkpoint = Checkpoint {
            height: next,
            snapshot: parts.address(),
            chain_head: self.exec.chain().head(),
        };
        self.taken.insert(next, parts);
        while self.taken.len() > UNCERTIFIED {
            self.taken.pop_first();
        }
        Ok(Some(checkpoint))
    }

    /// `d` was delivered: if it certifies a snapshot this node took, that
    /// one becomes the certified snapshot; returns the height the log may
    /// be compacted to.
    fn certify(&mut self, d: &Decision) -> Option<u64> {
        let c = d.batch.checkpoint()?;
        let parts = self.taken.get(&c.height)?;
        if parts.address() != c.snapshot {
            // Honest validators certified another state than this node's:
            // its machine is not deterministic, or differs.
            tracing::error!(
                height = c.height,
                "the certified snapshot differs from this node's"
            );
            return None;
        }
        let parts = self.taken.remove(&c.height)?;
        self.taken = self.taken.split_off(&c.height);
        self.certified = Some((d.clone(), parts));
        Some(c.height)
    }

    /// The machine of a node restarted from its durable state: made by
    /// `factory`, the certified snapshot restored, the log after it
    /// applied again (the snapshots due on the way taken again and told to
    /// `replica`, which learns the certified snapshot too).
    pub(crate) fn rebuild(
        factory: Factory,
        config: SnapshotConfig,
        certified: Option<(Decision, SnapshotParts)>,
        log: &[Decision],
        replica: &mut Replica,
    ) -> Result<Machine, ConsensusError> {
        let mut m = Machine {
            exec: factory(),
            factory,
            config,
            taken: BTreeMap::new(),
            certified,
            restores: 0,
            pending: None,
        };
        replica.enable_snapshots();
        if let Some((d, parts)) = &m.certified {
            let c = d.batch.checkpoint().ok_or_else(|| {
                ConsensusError::Log("a certified snapshot without a checkpoint".into())
            })?;
            m.exec.restore(&parts.bytes(), c)?;
            replica.remember_certified(d.clone(), *c);
        }
        let mut out = Outputs::default();
        for d in log {
            if let Some(c) = m.execute(d)? {
                replica.note_checkpoint(0, c, &mut out);
            }
        }
        Ok(m)
    }

    /// This machine after a restart of its node in the simulator.
    pub(super) fn recover(&self, replica: &mut Replica, log: &[Decision]) -> Machine {
        let certified = self.certified.clone();
        match Self::rebuild(self.factory.clone(), self.config, certified, log, replica) {
            Ok(mut m) => {
                m.restores = self.restores;
                m
            }
            Err(e) => {
                // Only a bug can get here (the state was in memory): the
                // tests' invariants see the machine start over.
                tracing::error!(error = %e, "the durable state does not rebuild the machine");
                let factory = self.factory.clone();
                Self::rebuild(factory, self.config, None, &[], replica)
                    .unwrap_or_else(|_| unreachable!("an empty log applies"))
            }
        }
    }

    /// Whether a snapshot waits for the durable log to move to it.
    pub(super) fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The snapshot the durable log must be moved to (under a driver).
    pub(super) fn take_pending(&mut self) -> Option<(Decision, SnapshotParts)> {
        self.pending.take()
    }

    /// The executor (tests compare machines through it).
    pub(super) fn executor(&self) -> &dyn Executor {
        &*self.exec
    }
}

impl SimReplica {
    /// This node runs a replicated state machine, made by `factory` in its
    /// initial state (again on every restart, then restored from the
    /// certified snapshot and the log after it), snapshotted as `config`
    /// says: the replica is told each checkpoint (leaders propose them,
    /// validators check them), the log is compacted once one is certified,
    /// peers asking for compacted heights are offered the snapshot, and a
    /// replica behind a peer's compacted log fetches and restores it.
    pub fn with_machine(
        mut self,
        factory: impl Fn() -> Box<dyn Executor> + Send + Sync + 'static,
        config: SnapshotConfig,
    ) -> Self {
        let factory: Factory = Arc::new(factory);
        self.replica.enable_snapshots();
        self.machine = Some(Machine {
            exec: factory(),
            factory,
            config,
            taken: BTreeMap::new(),
            certified: None,
            restores: 0,
            pending: None,
        });
        self
    }

    /// A driver's node: the machine rebuilt from what its durable log
    /// recovered (see [`ReplicaDriver::with_machine`](crate::ReplicaDriver::with_machine)).
    pub(crate) fn attach_machine(
        &mut self,
        factory: Factory,
        config: SnapshotConfig,
        recovered: &Recovered,
    ) -> Result<(), ConsensusError> {
        let start = recovered
            .snapshot
            .as_ref()
            .and_then(|(d, _)| d.batch.checkpoint())
            .map_or(0, |c| c.height);
        if recovered.first != start {
            return Err(ConsensusError::InvalidConfig(format!(
                "the machine needs every decision after the snapshot at {start}; the recovered ones start at {}",
                recovered.first
            )));
        }
        let certified = recovered.snapshot.clone();
        let m = Machine::rebuild(
            factory,
            config,
            certified,
            &recovered.decisions,
            &mut self.replica,
        )?;
        self.replica.compacted(start);
        self.replica.restore_membership(m.exec.membership())?;
        self.machine = Some(m);
        Ok(())
    }

    /// The machine this node runs, if any.
    pub fn machine(&self) -> Option<&dyn Executor> {
        self.machine.as_ref().map(Machine::executor)
    }

    /// How many snapshots this node fetched from peers and restored (across
    /// restarts).
    pub fn restores(&self) -> u64 {
        self.machine.as_ref().map_or(0, |m| m.restores)
    }

    /// The certified snapshot this node holds, with the decision naming it.
    pub fn certified_snapshot(&self) -> Option<(&Decision, &SnapshotParts)> {
        let (d, parts) = self.machine.as_ref()?.certified.as_ref()?;
        Some((d, parts))
    }

    /// Runs the machine on what the replica's step produced: applies the
    /// decisions delivered (telling the replica the checkpoints due,
    /// which may deliver more), compacts the log to a certified snapshot,
    /// answers snapshot part reads and restores a fetched snapshot.
    pub(super) fn run_machine(&mut self, now: u64) {
        let Some(m) = self.machine.as_mut() else {
            return;
        };
        let out = &mut self.outputs;
        // Applying may tell the replica a checkpoint, which may deliver
        // more decisions: until none is left.
        while !out.decisions.is_empty() {
            for d in std::mem::take(&mut out.decisions) {
                match m.execute(&d) {
                    Ok(Some(c)) => self.replica.note_checkpoint(now, c, out),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(height = d.height(), error = %e, "a decision does not apply")
                    }
                }
                let certified = m.certify(&d);
                self.log.push(d);
                // Under a driver the durable log is compacted when persisted.
                if certified.is_some() && self.driven.is_some() {
                    m.pending = m.certified.clone();
                }
                if let Some(height) = certified.filter(|_| self.driven.is_none()) {
                    self.replica.compacted(height);
                    let drop = height
                        .saturating_sub(self.log_first)
                        .min(self.log.len() as u64);
                    self.log.drain(..drop as usize);
                    self.log_first += drop;
                }
            }
        }
        for read in std::mem::take(&mut out.snapshot_reads) {
            let part = m
                .certified
                .as_ref()
                .filter(|(_, p)| p.address() == read.snapshot)
                .and_then(|(_, p)| p.part(read.part))
                .map(|o| o.data().to_vec());
            self.replica.serve_snapshot_part(read, part, out);
        }
        // A snapshot the replica has passed meanwhile (through catch-up) is
        // not restored.
        let restore =
            (out.restore.take()).filter(|r| r.checkpoint.height > self.replica.next_height());
        if let Some(r) = restore {
            match m.exec.restore(&r.bytes, &r.checkpoint) {
                Ok(()) => {
                    match SnapshotParts::split(&r.bytes, m.config.chunks) {
                        Ok(parts) if parts.address() == r.checkpoint.snapshot => {
                            m.certified = Some((r.decision.clone(), parts));
                        }
                        _ => tracing::warn!("a restored snapshot cut in this node's chunks has another address: not served"),
                    }
                    m.taken.clear();
                    m.restores += 1;
                    if self.driven.is_some() {
                        m.pending = m.certified.clone();
                    }
                    self.log.clear();
                    self.log_first = r.checkpoint.height;
                    tracing::debug!(
                        height = r.checkpoint.height,
                        "restored from a certified snapshot"
                    );
                    self.replica.install_snapshot(now, r.decision, out);
                    // The snapshot's validator sets (the changes decided
                    // before it included) are the replica's from there.
                    if let Err(e) = self.replica.restore_membership(m.exec.membership()) {
                        tracing::error!(error = %e, "a restored snapshot's validator sets do not fit");
                    }
                }
                Err(e) => tracing::error!(error = %e, "a certified snapshot does not restore"),
            }
        }
    }
}
