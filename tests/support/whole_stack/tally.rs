//! What a whole-stack run injected and checked, per seed and in total.

use hologram_lattice::sim::Stats;
use std::fmt;

/// What the nemesis and the Byzantine nodes injected, and what was checked.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub seeds: u64,
    pub fault_changes: u64,
    pub partitions: u64,
    pub heals: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub cut_by_partition: u64,
    pub to_down_node: u64,
    pub forged_broadcasts: u64,
    pub forged_decisions: u64,
    pub substituted_answers: u64,
    pub byzantine_validators: u64,
    pub commits: u64,
    pub broadcasts_certified: u64,
    pub transfers_committed: u64,
    pub objects_acked: u64,
    pub objects_failed: u64,
    pub reads_checked: u64,
    pub checks: u64,
    pub indexed: u64,
    pub index_reads: u64,
    pub routes_checked: u64,
    pub group_transfers_committed: u64,
    pub group_transfers_aborted: u64,
    pub group_one_phase: u64,
    pub coordinator_stops: u64,
    pub settled_after_stop: u64,
    pub member_crashes: u64,
    pub member_restarts: u64,
    pub group_forgeries_refused: u64,
    pub group_calls_cut: u64,
    pub group_calls_retried: u64,
    pub group_heights: u64,
}

impl Tally {
    /// Adds a simulated network's counts.
    pub fn network(&mut self, s: &Stats) {
        self.lost += s.lost;
        self.duplicated += s.duplicated;
        self.corrupted += s.corrupted;
        self.cut_by_partition += s.partitioned;
        self.to_down_node += s.to_down_node;
    }

    /// Adds another run's counts.
    pub fn add(&mut self, o: &Tally) {
        macro_rules! sum {
            ($($f:ident),*) => { $(self.$f += o.$f;)* };
        }
        sum!(
            seeds,
            fault_changes,
            partitions,
            heals,
            crashes,
            restarts,
            lost,
            duplicated,
            corrupted,
            cut_by_partition,
            to_down_node,
            forged_broadcasts,
            forged_decisions,
            substituted_answers,
            byzantine_validators,
            commits,
            broadcasts_certified,
            transfers_committed,
            objects_acked,
            objects_failed,
            reads_checked,
            checks,
            indexed,
            index_reads,
            routes_checked,
            group_transfers_committed,
            group_transfers_aborted,
            group_one_phase,
            coordinator_stops,
            settled_after_stop,
            member_crashes,
            member_restarts,
            group_forgeries_refused,
            group_calls_cut,
            group_calls_retried,
            group_heights
        );
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} seeds; injected: {} fault-rate changes, {} partitions ({} heals), {} crashes ({} restarts); \
             simulated network: {} lost, {} duplicated, {} corrupted, {} cut by partitions, {} to down nodes; \
             byzantine: {} validators, {} forged broadcasts/acks, {} forged transfer decisions, {} substituted dedup answers; \
             checked: {} cross-layer check rounds (besides every simulator step), {} consensus heights, {} broadcast certificates, {} transfers committed, \
             {} dedup writes acknowledged ({} indexed through consensus, {} read back from the replicated index), {} failed (under W acknowledgements), \
             {} reads verified, {} lattice routes checked; \
             replicated shard groups: {} transfers committed and {} aborted ({} one-phase), {} coordinators stopped mid-transfer and {} transfers settled after, \
             {} member crashes ({} recovered from their durable logs), {} coordinator calls cut or lost by the nemesis, {} coordinator calls retried, \
             {} forged group decisions refused, {} group heights",
            self.seeds, self.fault_changes, self.partitions, self.heals, self.crashes, self.restarts,
            self.lost, self.duplicated, self.corrupted, self.cut_by_partition, self.to_down_node,
            self.byzantine_validators, self.forged_broadcasts, self.forged_decisions,
            self.substituted_answers, self.checks, self.commits, self.broadcasts_certified,
            self.transfers_committed, self.objects_acked, self.indexed, self.index_reads,
            self.objects_failed, self.reads_checked,
            self.routes_checked,
            self.group_transfers_committed, self.group_transfers_aborted, self.group_one_phase,
            self.coordinator_stops, self.settled_after_stop, self.member_crashes,
            self.member_restarts, self.group_calls_cut, self.group_calls_retried,
            self.group_forgeries_refused, self.group_heights
        )
    }
}
