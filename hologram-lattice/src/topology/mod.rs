//! The adaptive topology: per-peer latency percentiles in bounded memory and
//! the chapter's `optimize_topology`.

mod adaptive;
mod latency;

pub use adaptive::{AdaptiveTopology, TopologyChange, TopologyConfig};
pub use latency::LatencyHistogram;

#[cfg(test)]
mod tests;
