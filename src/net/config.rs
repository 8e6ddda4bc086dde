//! The limits of a [`QuicTransport`](super::QuicTransport).

use hologram_lattice::transport::DEFAULT_MAX_FRAME;
use hologram_lattice::PeerId;
use std::collections::HashSet;
use std::time::Duration;

/// The limits and policy of a [`QuicTransport`](super::QuicTransport);
/// `QuicConfig::default()` has sane ones.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QuicConfig {
    /// The largest payload carried, request, message or answer (default
    /// [`DEFAULT_MAX_FRAME`], 4 MiB; at most `u32::MAX`).
    pub max_frame: usize,
    /// How long `send` waits to connect (default 5 s); `request` connects
    /// within its own timeout.
    pub connect_timeout: Duration,
    /// How long `send` waits for its frame to be written (default 10 s).
    pub write_timeout: Duration,
    /// An inbound frame must arrive whole within this long of its stream's
    /// opening, and an answer be written within it, or the stream is
    /// dropped (default 10 s).
    pub frame_deadline: Duration,
    /// A connection without traffic for this long is closed (default 60 s).
    pub idle_timeout: Duration,
    /// The most inbound connections kept (default 256), one per peer key.
    pub max_connections: usize,
    /// The most requests one peer may have in flight on its connection
    /// (default 64); further ones wait in its QUIC stack for credit.
    pub max_requests_per_peer: u32,
    /// The most one-way messages one peer may have open on its connection
    /// (default 64).
    pub max_messages_per_peer: u32,
    /// The most frame bytes read from one peer's connection and not yet
    /// handled (default 8 MiB; raised to `max_frame` if smaller).
    pub peer_buffer: usize,
    /// The most frame bytes read from all peers and not yet handled
    /// (default 128 MiB; raised to `max_frame` if smaller).
    pub total_buffer: usize,
    /// The kernel's send and receive buffer of the endpoint's UDP socket,
    /// in bytes (default 4 MiB; the kernel caps it, on Linux at
    /// `net.core.rmem_max` and `wmem_max`). The kernel's default, about
    /// 200 KiB on Linux, drops datagrams when a large answer arrives faster
    /// than the endpoint reads them, and QUIC then backs off as if the path
    /// were congested.
    pub socket_buffer: usize,
    /// The largest UDP payload the endpoint accepts, and the largest that
    /// MTU discovery searches up to (default 1472, which fits a 1500-byte
    /// Ethernet MTU; at least 1200, at most 65527). Connections start at
    /// 1200 bytes and probe upward, so a higher value is safe on any path,
    /// but pays only where the path carries larger datagrams: loopback
    /// (MTU 65,536) or jumbo frames (9000). Fewer, larger datagrams cost
    /// less CPU per byte. Above 6,500 the endpoint sends without
    /// segmentation offload (GSO: quinn batches up to 10 datagrams in one
    /// send, and the kernel takes at most 64 KiB at once), which costs more
    /// than the larger datagrams save (on loopback: 0.56 GB/s at 65527
    /// against 1.29 at 6,500). quinn's receive buffers grow in proportion:
    /// 64 segments of this size for each of 32 datagrams read at once,
    /// 3 MiB at the default and 13 MiB at 6,500, allocated once and mostly
    /// never touched.
    pub max_udp_payload: u16,
    /// The keys allowed to connect: `None` (the default) accepts any valid
    /// key, `Some` only these (the node's own key is always allowed).
    pub allowed: Option<HashSet<PeerId>>,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            max_frame: DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            frame_deadline: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 256,
            max_requests_per_peer: 64,
            max_messages_per_peer: 64,
            peer_buffer: 8 << 20,
            total_buffer: 128 << 20,
            socket_buffer: 4 << 20,
            max_udp_payload: 1472,
            allowed: None,
        }
    }
}
