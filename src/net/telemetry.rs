//! The QUIC transport's metrics ([`METRICS`]), recorded through the
//! `metrics` facade, by protocol (a static label) and peer (a label the
//! address book shares: the peer's first 16 hex digits, or `other` for a key
//! the book does not hold, so the series are bounded by the book's size).
//! Conventions: [`hologram_lattice::telemetry`].

use hologram_lattice::telemetry::{LogLimit, Metric};
use hologram_lattice::transport::{Protocol, TransportError};
use metrics::SharedString;

/// The metrics of [`QuicTransport`](super::QuicTransport).
pub const METRICS: &[Metric] = &[
    Metric::counter(
        "hologram_transport_bytes_sent_total",
        &["protocol", "peer"],
        "Payload bytes sent (requests and one-way messages), by protocol and peer.",
    ),
    Metric::counter(
        "hologram_transport_bytes_received_total",
        &["protocol", "peer"],
        "Payload bytes of frames received, by protocol and peer.",
    ),
    Metric::counter(
        "hologram_transport_requests_total",
        &["protocol", "peer"],
        "Requests sent (each awaiting an answer), by protocol and peer.",
    ),
    Metric::counter(
        "hologram_transport_messages_total",
        &["protocol", "peer"],
        "One-way messages sent, by protocol and peer.",
    ),
    Metric::counter(
        "hologram_transport_errors_total",
        &["protocol", "peer"],
        "Requests and messages that failed (unreachable, refused, lost; timeouts counted apart), by protocol and peer.",
    ),
    Metric::counter(
        "hologram_transport_timeouts_total",
        &["protocol", "peer"],
        "Requests not answered within their timeout, by protocol and peer.",
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

/// Updates the counter `$name` of `$protocol` (its static label) and
/// `$peer` (a shared label).
macro_rules! by_protocol {
    ($protocol:expr, $peer:expr, $name:literal, |$m:ident| $update:expr) => {{
        let peer: &SharedString = $peer;
        let $m = match $protocol.0 {
            1 => ::metrics::counter!($name, "protocol" => "discovery", "peer" => peer.clone()),
            2 => ::metrics::counter!($name, "protocol" => "cam", "peer" => peer.clone()),
            3 => ::metrics::counter!($name, "protocol" => "consensus", "peer" => peer.clone()),
            4 => ::metrics::counter!($name, "protocol" => "broadcast", "peer" => peer.clone()),
            5 => ::metrics::counter!($name, "protocol" => "txn", "peer" => peer.clone()),
            6 => ::metrics::counter!($name, "protocol" => "ping", "peer" => peer.clone()),
            7 => ::metrics::counter!($name, "protocol" => "dedup", "peer" => peer.clone()),
            8 => ::metrics::counter!($name, "protocol" => "txn_call", "peer" => peer.clone()),
            10 => ::metrics::counter!($name, "protocol" => "validator", "peer" => peer.clone()),
            256 => ::metrics::counter!($name, "protocol" => "control", "peer" => peer.clone()),
            _ => ::metrics::counter!($name, "protocol" => "other", "peer" => peer.clone()),
        };
        $update
    }};
}

/// A request or message of `bytes` was sent to `peer` under `protocol`.
pub(crate) fn sent(protocol: Protocol, peer: &SharedString, bytes: usize, request: bool) {
    by_protocol!(protocol, peer, "hologram_transport_bytes_sent_total", |m| m
        .increment(bytes as u64));
    if request {
        by_protocol!(protocol, peer, "hologram_transport_requests_total", |m| m
            .increment(1));
    } else {
        by_protocol!(protocol, peer, "hologram_transport_messages_total", |m| m
            .increment(1));
    }
}

/// A frame of `bytes` was received from `peer` under `protocol`.
pub(crate) fn received(protocol: Protocol, peer: &SharedString, bytes: usize) {
    by_protocol!(
        protocol,
        peer,
        "hologram_transport_bytes_received_total",
        |m| m.increment(bytes as u64)
    );
}

/// A request or message to `peer` under `protocol` failed with `e`.
pub(crate) fn failed(protocol: Protocol, peer: &SharedString, e: &TransportError) {
    match e {
        TransportError::TimedOut { .. } => {
            by_protocol!(protocol, peer, "hologram_transport_timeouts_total", |m| m
                .increment(1))
        }
        _ => by_protocol!(protocol, peer, "hologram_transport_errors_total", |m| m
            .increment(1)),
    }
}

/// Logs of dropped frames and refused connections: at most this many a
/// second per process.
pub(crate) static DROPPED_LOG: LogLimit = LogLimit::new(10, 1_000);
