//! The metrics of this crate ([`METRICS`]), recorded through the `metrics`
//! facade with static labels (an update allocates nothing). Conventions:
//! [`hologram_lattice::telemetry`].

use crate::CamError;
use hologram_lattice::telemetry::Metric;
use std::time::Instant;

/// The metrics `hologram-cam` records.
pub const METRICS: &[Metric] = &[
    Metric::histogram(
        "hologram_store_operation_seconds",
        &["op"],
        "How long a durable store (RedbStore) operation took, by operation: get, put, contains, remove, scan, get_named, set_named.",
    ),
    Metric::counter(
        "hologram_store_errors_total",
        &["op"],
        "Durable store operations that failed, by operation.",
    ),
    Metric::counter(
        "hologram_dedup_puts_total",
        &[],
        "Objects a deduplication holder was asked to store (each with a reference, or a repair).",
    ),
    Metric::counter(
        "hologram_dedup_duplicates_total",
        &[],
        "Puts of an object the holder already had: stored once, referenced again.",
    ),
    Metric::counter(
        "hologram_dedup_gets_total",
        &[],
        "Objects a deduplication holder was asked for.",
    ),
    Metric::counter(
        "hologram_dedup_repairs_total",
        &[],
        "Owners a quorum read found missing or corrupt and sent the object again (read repair).",
    ),
    Metric::counter(
        "hologram_dedup_handoffs_total",
        &[],
        "Objects copied to new owners when the ring changed (hand-off).",
    ),
    Metric::counter(
        "hologram_dedup_corrupt_total",
        &[],
        "Held copies found rotten (by a get or the scrub) and dropped, to be repaired from a replica.",
    ),
    Metric::counter(
        "hologram_dedup_scrubbed_total",
        &[],
        "Held objects read back by the holder's scrub.",
    ),
    Metric::counter(
        "hologram_dedup_anti_entropy_fetched_total",
        &[],
        "Objects anti-entropy fetched from a ring neighbour and adopted (verified against their address).",
    ),
    Metric::counter(
        "hologram_dedup_anti_entropy_merged_total",
        &[],
        "Objects both neighbours held whose reference sets differed: fetched again and the neighbour's set merged.",
    ),
    Metric::counter(
        "hologram_dedup_anti_entropy_refused_total",
        &[],
        "Objects a neighbour sent in anti-entropy whose bytes did not match their address: refused, nothing stored.",
    ),
    Metric::counter(
        "hologram_dedup_rotten_reference_sets_total",
        &[],
        "Reference sets that no longer decoded (rot): forgotten, the object then counting unknown references (never freed).",
    ),
];

/// Runs a durable store operation `op`, timing it and counting (and
/// logging) its failure.
pub(crate) fn timed<T>(
    op: &'static str,
    f: impl FnOnce() -> Result<T, CamError>,
) -> Result<T, CamError> {
    let start = Instant::now();
    let result = f();
    let seconds = start.elapsed().as_secs_f64();
    // One arm per operation: static labels.
    let (histogram, errors) = match op {
        "get" => (
            ::metrics::histogram!("hologram_store_operation_seconds", "op" => "get"),
            ::metrics::counter!("hologram_store_errors_total", "op" => "get"),
        ),
        "put" => (
            ::metrics::histogram!("hologram_store_operation_seconds", "op" => "put"),
            ::metrics::counter!("hologram_store_errors_total", "op" => "put"),
        ),
        "contains" => (
            ::metrics::histogram!("hologram_store_operation_seconds", "op" => "contains"),
            ::metrics::counter!("hologram_store_errors_total", "op" => "contains"),
        ),
        "remove" => (
            ::metrics::histogram!("hologram_store_operation_seconds", "op" => "remove"),
            ::metrics::counter!("hologram_store_errors_total", "op" => "remove"),
        ),
        "scan" => (
            ::metrics::histogram!("hologram_store_operation_seconds", "op" => "scan"),
            ::metrics::counter!("hologram_store_errors_total", "op" => "scan"),
        ),
        "get_named" => (
            ::metrics::histogram!("hologram_store_operation_seconds", "op" => "get_named"),
            ::metrics::counter!("hologram_store_errors_total", "op" => "get_named"),
        ),
        _ => (
            ::metrics::histogram!("hologram_store_operation_seconds", "op" => "set_named"),
            ::metrics::counter!("hologram_store_errors_total", "op" => "set_named"),
        ),
    };
    histogram.record(seconds);
    if let Err(e) = &result {
        errors.increment(1);
        tracing::error!(op, error = %e, "store operation failed");
    }
    result
}
