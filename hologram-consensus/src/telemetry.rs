//! The metrics of this crate ([`METRICS`]), recorded through the `metrics`
//! facade, and the helpers that record them. Every label value is a static
//! string: an update allocates nothing. Conventions:
//! [`hologram_lattice::telemetry`].

use crate::detector::Offence;
use hologram_lattice::telemetry::{LogLimit, Metric};
use hologram_lattice::NodeId;

/// The metrics `hologram-consensus` records.
pub const METRICS: &[Metric] = &[
    Metric::gauge(
        "hologram_consensus_height",
        &[],
        "The next height to decide: heights decided and delivered in order.",
    ),
    Metric::gauge(
        "hologram_consensus_round",
        &[],
        "The round the lowest height in flight is in (0 unless rounds failed).",
    ),
    Metric::counter(
        "hologram_consensus_round_changes_total",
        &["cause"],
        "Rounds entered after the first: `timeout` (a precommit timeout expired) or `skip` (f+1 validators were seen in a later round).",
    ),
    Metric::counter(
        "hologram_consensus_decisions_total",
        &[],
        "Heights decided by this replica (by its own votes or a peer's certified decision).",
    ),
    Metric::histogram(
        "hologram_consensus_commit_latency_seconds",
        &[],
        "From a height's start on this replica to its decision.",
    ),
    Metric::gauge(
        "hologram_consensus_mempool_commands",
        &[],
        "Commands waiting in the mempool.",
    ),
    Metric::counter(
        "hologram_consensus_mempool_rejected_total",
        &["reason"],
        "Submitted commands refused: `full` (the mempool is full) or `invalid` (a signature that does not verify).",
    ),
    Metric::counter(
        "hologram_consensus_messages_received_total",
        &["kind"],
        "Consensus messages handled, by kind: proposal, vote, decision, sync_request, commands.",
    ),
    Metric::counter(
        "hologram_consensus_messages_refused_total",
        &["kind", "reason"],
        "Votes and proposals refused, by reason (the offence, or `gate`: dropped unverified by the vote gate).",
    ),
    Metric::counter(
        "hologram_consensus_equivocations_total",
        &[],
        "Equivocations proven: two different votes (or proposals) signed by one validator for one slot.",
    ),
    Metric::counter(
        "hologram_consensus_catchup_heights_total",
        &[],
        "Heights decided from a peer's certified decision (catch-up) rather than by voting.",
    ),
    Metric::counter(
        "hologram_consensus_sync_requests_total",
        &[],
        "Catch-up requests sent (asking a peer for decisions from a height on).",
    ),
    Metric::counter(
        "hologram_broadcast_deliveries_total",
        &[],
        "Messages the epidemic broadcast delivered to its application.",
    ),
    Metric::counter(
        "hologram_broadcast_certificates_total",
        &[],
        "Delivery certificates the broadcast formed.",
    ),
];

/// The static label of an offence (no allocation).
pub(crate) fn offence_label(offence: &Offence) -> &'static str {
    match offence {
        Offence::InvalidSignature(_) => "invalid_signature",
        Offence::NotAValidator => "not_a_validator",
        Offence::InvalidReceipt(_) => "invalid",
        Offence::Equivocation(_) => "equivocation",
        Offence::ConflictingProposals(_) => "conflicting_proposals",
        Offence::ImpossibleBudget(_) => "impossible_budget",
        Offence::Anomalous { .. } => "anomalous",
    }
}

/// Logs of refused consensus input: at most this many a second.
static REFUSED_LOG: LogLimit = LogLimit::new(10, 1_000);

/// Counts a vote or proposal (`kind`) refused from `from` for `reason`, and
/// logs it at debug, rate-limited.
pub(crate) fn refused(kind: &'static str, reason: &'static str, from: NodeId) {
    // One arm per (kind, reason): static labels, so a flood of refused
    // input allocates nothing here.
    macro_rules! count {
        ($kind:literal, [$($reason:literal),*]) => {
            match reason {
                $($reason => ::metrics::counter!(
                    "hologram_consensus_messages_refused_total", "kind" => $kind, "reason" => $reason
                ),)*
                _ => ::metrics::counter!(
                    "hologram_consensus_messages_refused_total", "kind" => $kind, "reason" => "other"
                ),
            }
        };
    }
    let counter = match kind {
        "vote" => count!(
            "vote",
            [
                "sender_not_a_validator",
                "not_a_validator",
                "gate",
                "invalid_signature",
                "equivocation",
                "impossible_budget",
                "anomalous",
                "invalid",
                "conflicting_proposals"
            ]
        ),
        _ => count!(
            "proposal",
            [
                "not_the_leader",
                "invalid",
                "unverified_commands",
                "not_a_validator",
                "invalid_signature",
                "conflicting_proposals",
                "impossible_budget",
                "equivocation",
                "anomalous"
            ]
        ),
    };
    counter.increment(1);
    if let Some(suppressed) = REFUSED_LOG.allow() {
        tracing::debug!(peer = %from, kind, reason, suppressed, "consensus input refused");
    }
}
