//! The QUIC transport's metrics ([`METRICS`]), recorded through the
//! `metrics` facade with static labels: a message sent or received updates
//! its counters without allocating. Conventions:
//! [`hologram_lattice::telemetry`].

use hologram_lattice::telemetry::{LogLimit, Metric};
use hologram_lattice::transport::{Protocol, TransportError};

/// The metrics of [`QuicTransport`](super::QuicTransport).
pub const METRICS: &[Metric] = &[
    Metric::counter(
        "hologram_transport_bytes_sent_total",
        &["protocol"],
        "Payload bytes sent (requests and one-way messages), by protocol.",
    ),
    Metric::counter(
        "hologram_transport_bytes_received_total",
        &["protocol"],
        "Payload bytes of frames received, by protocol.",
    ),
    Metric::counter(
        "hologram_transport_requests_total",
        &["protocol"],
        "Requests sent (each awaiting an answer), by protocol.",
    ),
    Metric::counter(
        "hologram_transport_messages_total",
        &["protocol"],
        "One-way messages sent, by protocol.",
    ),
    Metric::counter(
        "hologram_transport_errors_total",
        &["protocol"],
        "Requests and messages that failed (unreachable, refused, lost; timeouts counted apart), by protocol.",
    ),
    Metric::counter(
        "hologram_transport_timeouts_total",
        &["protocol"],
        "Requests not answered within their timeout, by protocol.",
    ),
    Metric::counter(
        "hologram_transport_connections_total",
        &["direction"],
        "Connections established: `in` (accepted) or `out` (dialed).",
    ),
    Metric::counter(
        "hologram_transport_frames_refused_total",
        &[],
        "Inbound frames dropped before a handler saw them (too large, late, malformed header).",
    ),
];

/// Updates the `$kind` metric `$name` for `$protocol`'s static label.
macro_rules! by_protocol {
    ($protocol:expr, $name:literal, |$m:ident| $update:expr) => {{
        let $m = match $protocol.0 {
            1 => ::metrics::counter!($name, "protocol" => "discovery"),
            2 => ::metrics::counter!($name, "protocol" => "cam"),
            3 => ::metrics::counter!($name, "protocol" => "consensus"),
            4 => ::metrics::counter!($name, "protocol" => "broadcast"),
            5 => ::metrics::counter!($name, "protocol" => "txn"),
            6 => ::metrics::counter!($name, "protocol" => "ping"),
            7 => ::metrics::counter!($name, "protocol" => "dedup"),
            8 => ::metrics::counter!($name, "protocol" => "txn_call"),
            10 => ::metrics::counter!($name, "protocol" => "validator"),
            256 => ::metrics::counter!($name, "protocol" => "control"),
            _ => ::metrics::counter!($name, "protocol" => "other"),
        };
        $update
    }};
}

/// A request or message of `bytes` was sent under `protocol`.
pub(crate) fn sent(protocol: Protocol, bytes: usize, request: bool) {
    by_protocol!(protocol, "hologram_transport_bytes_sent_total", |m| m
        .increment(bytes as u64));
    if request {
        by_protocol!(protocol, "hologram_transport_requests_total", |m| m
            .increment(1));
    } else {
        by_protocol!(protocol, "hologram_transport_messages_total", |m| m
            .increment(1));
    }
}

/// A frame of `bytes` was received under `protocol`.
pub(crate) fn received(protocol: Protocol, bytes: usize) {
    by_protocol!(protocol, "hologram_transport_bytes_received_total", |m| m
        .increment(bytes as u64));
}

/// A request or message under `protocol` failed with `e`.
pub(crate) fn failed(protocol: Protocol, e: &TransportError) {
    match e {
        TransportError::TimedOut { .. } => {
            by_protocol!(protocol, "hologram_transport_timeouts_total", |m| m
                .increment(1))
        }
        _ => by_protocol!(protocol, "hologram_transport_errors_total", |m| m
            .increment(1)),
    }
}

/// Logs of dropped frames: at most this many a second per process.
pub(crate) static DROPPED_LOG: LogLimit = LogLimit::new(10, 1_000);
