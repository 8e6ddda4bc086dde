//! A holder's background upkeep: [`Upkeep`], paced by an [`UpkeepPlan`].

use super::anti_entropy::AntiEntropy;
use super::holder::DedupHandler;
use super::references::ReferenceStore;
use crate::Store;
use futures::future::{select, Either};
use hologram_lattice::telemetry::LogLimit;
use hologram_lattice::transport::Transport;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

/// Logs of upkeep errors: at most this many a second per process.
static ERROR_LOG: LogLimit = LogLimit::new(5, 1_000);

/// How a holder's upkeep is paced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpkeepPlan {
    /// Time between ticks (100 ms by default).
    pub tick: Duration,
    /// Objects the scrub reads back a tick, at least one (1,000 by
    /// default: 10,000 a second at the default tick).
    pub scrub_per_tick: usize,
    /// An anti-entropy round with every ring neighbour runs every this many
    /// ticks (600 by default: a minute), and on the tick after a scrub step
    /// dropped a rotten copy. 0: only after a scrub found rot.
    pub anti_entropy_every: u64,
    /// Each anti-entropy request's timeout (5 s by default).
    pub request_timeout: Duration,
}

impl Default for UpkeepPlan {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(100),
            scrub_per_tick: 1_000,
            anti_entropy_every: 600,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// What a holder's upkeep has done since it began.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpkeepReport {
    /// Ticks run.
    pub ticks: u64,
    /// Objects the scrub read back.
    pub scrubbed: u64,
    /// Rotten copies the scrub found and dropped.
    pub rotten: u64,
    /// Whole scrub passes over the holder's objects.
    pub passes: u64,
    /// Anti-entropy rounds run.
    pub rounds: u64,
    /// What those rounds did, added up (`fetched`: copies restored).
    pub anti_entropy: AntiEntropy,
    /// Scrub steps and rounds that failed on the holder's own disk.
    pub errors: u64,
}

/// A holder's background upkeep: its scrub at a set rate and
/// anti-entropy with its ring neighbours, in one loop the application
/// spawns on whatever runtime it uses.
///
/// Each tick scrubs the next [`scrub_per_tick`](UpkeepPlan::scrub_per_tick)
/// objects from the cursor the holder keeps in its store (so a restarted
/// holder resumes where it stopped, and the scrub's rate is the plan's).
/// A rotten copy the scrub finds is dropped ([`DedupHandler::scrub`]), and
/// the next tick runs an anti-entropy round with every ring neighbour
/// ([`DedupHandler::anti_entropy_round`]), which fetches it back from a
/// replica, verified against its address. A round also runs every
/// [`anti_entropy_every`](UpkeepPlan::anti_entropy_every) ticks, which
/// restores the replication factor after a holder is lost for good.
///
/// Errors (the holder's own disk failing a read or a write) are counted and
/// logged at a bounded rate; the loop goes on at its next tick, as a disk
/// that fills up may be emptied. The work of a tick is bounded: one scrub
/// step and at most one anti-entropy round (itself bounded, see
/// [`PASS_RANGES`](super::PASS_RANGES)).
///
/// ```
/// use hologram_cam::dedup::{Upkeep, UpkeepPlan};
/// use hologram_cam::{DedupHandler, HashRing, MemoryStore};
/// use hologram_lattice::transport::MemoryNetwork;
/// use hologram_lattice::NodeId;
/// use std::sync::{Arc, RwLock};
///
/// let network = MemoryNetwork::new(1);
/// let me = NodeId::from_bytes([1; 32]);
/// let ring = Arc::new(RwLock::new(HashRing::new()));
/// ring.write().unwrap().add(me);
/// let holder = Arc::new(DedupHandler::new(Arc::new(MemoryStore::new())).with_ring(me, ring, 3));
/// let transport = network.join(me, holder.clone() as _);
/// let mut upkeep = Upkeep::new(UpkeepPlan::default());
/// // A real holder runs `upkeep.run(...)` with its runtime's sleep; here,
/// // three ticks by hand.
/// for _ in 0..3 {
///     futures::executor::block_on(upkeep.tick(&holder, &transport));
/// }
/// assert_eq!(upkeep.report().ticks, 3);
/// ```
#[derive(Debug, Clone)]
pub struct Upkeep {
    plan: UpkeepPlan,
    report: UpkeepReport,
    /// A scrub step dropped a copy: fetch it back on the next tick.
    repair_due: bool,
}

impl Upkeep {
    /// Upkeep paced by `plan`.
    pub fn new(plan: UpkeepPlan) -> Self {
        Self {
            plan,
            report: UpkeepReport::default(),
            repair_due: false,
        }
    }

    /// What it has done so far.
    pub fn report(&self) -> &UpkeepReport {
        &self.report
    }

    /// One tick: a round of anti-entropy if one is due (periodic, or a
    /// scrub step dropped a copy), then one scrub step.
    pub async fn tick<S: Store, R: ReferenceStore, T: Transport + ?Sized>(
        &mut self,
        holder: &DedupHandler<S, R>,
        transport: &T,
    ) {
        self.report.ticks += 1;
        let every = self.plan.anti_entropy_every;
        let periodic = every > 0 && self.report.ticks.is_multiple_of(every);
        if self.repair_due || periodic {
            match holder
                .anti_entropy_round(transport, self.plan.request_timeout)
                .await
            {
                Ok(done) => {
                    self.repair_due = done.failed > 0 && self.repair_due;
                    self.report.rounds += 1;
                    self.report.anti_entropy.absorb(done);
                }
                Err(e) => self.failed("anti-entropy", &e),
            }
        }
        match holder.scrub(self.plan.scrub_per_tick).await {
            Ok(step) => {
                self.report.scrubbed += step.checked as u64;
                self.report.rotten += step.corrupt.len() as u64;
                self.report.passes += u64::from(step.finished_pass);
                self.repair_due |= !step.corrupt.is_empty();
            }
            Err(e) => self.failed("scrub", &e),
        }
    }

    /// Ticks every [`tick`](UpkeepPlan::tick), sleeping with `sleep` (the
    /// runtime's, or [`Timer::sleep`](hologram_lattice::transport::Timer)),
    /// until `stop` completes (it is polled first, so a stop that is ready
    /// ends the loop before another tick); returns what it did.
    pub async fn run<S, R, T, F, Z>(
        mut self,
        holder: &DedupHandler<S, R>,
        transport: &T,
        mut sleep: impl FnMut(Duration) -> Z,
        stop: F,
    ) -> UpkeepReport
    where
        S: Store,
        R: ReferenceStore,
        T: Transport + ?Sized,
        F: Future<Output = ()>,
        Z: Future<Output = ()>,
    {
        let mut stop = pin!(stop);
        loop {
            let stopped = {
                let tick = pin!(async {
                    sleep(self.plan.tick).await;
                    self.tick(holder, transport).await;
                });
                matches!(select(stop.as_mut(), tick).await, Either::Left(_))
            };
            if stopped {
                return self.report;
            }
        }
    }

    fn failed(&mut self, what: &str, e: &crate::CamError) {
        self.report.errors += 1;
        if let Some(dropped) = ERROR_LOG.allow() {
            tracing::warn!(what, error = %e, dropped, "dedup upkeep: the holder's disk failed; retrying next tick");
        }
    }
}
