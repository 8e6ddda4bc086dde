//! The metrics of this crate ([`METRICS`]), recorded through the `metrics`
//! facade. Conventions: [`hologram_lattice::telemetry`].

use hologram_lattice::telemetry::Metric;

/// The metrics `hologram-txn` records.
pub const METRICS: &[Metric] = &[
    Metric::counter(
        "hologram_txn_committed_total",
        &[],
        "Transactions a coordinator finished committed.",
    ),
    Metric::counter(
        "hologram_txn_aborted_total",
        &[],
        "Transactions a coordinator finished aborted (or failed).",
    ),
    Metric::counter(
        "hologram_txn_in_doubt_total",
        &[],
        "Prepared transactions a participant recovered without a decision (in doubt: held, locks kept, until the coordinator decides).",
    ),
];
