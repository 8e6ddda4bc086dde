//! The node's metrics ([`NODE_METRICS`]), the whole documented list
//! ([`all_metrics`]), and installing the Prometheus recorder the node's
//! endpoint serves ([`install_prometheus`]).

use super::error::NodeError;
use hologram_lattice::telemetry::{register, Metric};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// The metrics of the validator node itself.
pub const NODE_METRICS: &[Metric] = &[
    Metric::gauge(
        "hologram_node_applied_commands",
        &[],
        "Commands applied to the node's state machine (the receipt chain's length).",
    ),
    Metric::gauge(
        "hologram_node_health",
        &[],
        "The node's health: 0 ready, 1 lagging (peers report heights well ahead), 2 stalled (no height decided for a while although peers went on or clients wait).",
    ),
    Metric::gauge(
        "hologram_node_data_bytes",
        &[],
        "Bytes in the node's data directory.",
    ),
    Metric::gauge(
        "hologram_node_peer_up",
        &["peer"],
        "1 if the peer answered the node's last status probe in time, else 0 (unreachable).",
    ),
    Metric::gauge(
        "hologram_node_peer_height",
        &["peer"],
        "The next height the peer reported in its last answered probe.",
    ),
    Metric::gauge(
        "hologram_node_peer_stalled",
        &["peer"],
        "1 if the peer's height has not advanced for the stall interval while this node's went past it (stopped, killed or stuck), else 0.",
    ),
    Metric::counter(
        "hologram_node_client_requests_total",
        &["kind"],
        "Client requests answered: submit, status, log.",
    ),
    Metric::counter(
        "hologram_node_snapshots_taken_total",
        &[],
        "Snapshots of the state machine the node took (every snapshot interval of heights).",
    ),
    Metric::counter(
        "hologram_node_snapshots_restored_total",
        &[],
        "Certified snapshots the node fetched from peers and restored (state sync), since it started.",
    ),
    Metric::gauge(
        "hologram_node_snapshot_height",
        &[],
        "The height of the newest snapshot the node took or restored.",
    ),
    Metric::gauge(
        "hologram_node_snapshot_bytes",
        &[],
        "The size of the newest snapshot the node took or restored, in bytes.",
    ),
    Metric::counter(
        "hologram_node_send_queue_skipped_total",
        &["reason"],
        "Messages to a peer not queued: `duplicate` (identical to one already waiting for that peer) or `full` (the peer's send queue is full).",
    ),
];

/// Every metric the node's process records, in one documented list: the
/// node's own, the QUIC transport's, and each library crate's.
pub fn all_metrics() -> Vec<&'static Metric> {
    [
        NODE_METRICS,
        crate::net::METRICS,
        hologram_lattice::telemetry::METRICS,
        hologram_consensus::METRICS,
        hologram_cam::METRICS,
        hologram_txn::METRICS,
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Installs a Prometheus recorder as the process's global `metrics`
/// recorder (once: later calls return the same handle) and registers every
/// metric of [`all_metrics`], so a scrape lists each from the start. The
/// handle renders the text format; the node serves it when
/// [`NodeConfig::metrics`](super::NodeConfig::metrics) is set.
pub fn install_prometheus() -> Result<PrometheusHandle, NodeError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| NodeError::Io {
        doing: "installing the metrics recorder".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    for metric in all_metrics() {
        register(std::slice::from_ref(metric));
    }
    Ok(HANDLE.get_or_init(|| handle).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_lattice::telemetry::check_name;
    use std::collections::HashSet;

    #[test]
    fn the_documented_list_is_unique_conventional_and_in_the_docs() {
        let docs = include_str!("../../docs/observability.md");
        let mut names = HashSet::new();
        for m in all_metrics() {
            assert!(names.insert(m.name), "{} listed twice", m.name);
            check_name(m).unwrap();
            assert!(
                docs.contains(&format!("`{}`", m.name)),
                "{} is not in docs/observability.md",
                m.name
            );
        }
    }

    /// Every metric a source file of the workspace records (a
    /// `counter!`, `gauge!` or `histogram!` of a literal `hologram_` name)
    /// is in the documented list: a metric added without its entry fails
    /// here, not in an operator's dashboard.
    #[test]
    fn every_recorded_metric_is_listed() {
        fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        sources(&root.join("src"), &mut files);
        for krate in [
            "hologram-lattice",
            "hologram-receipt",
            "hologram-cam",
            "hologram-consensus",
            "hologram-txn",
        ] {
            sources(&root.join(krate).join("src"), &mut files);
        }
        let names: HashSet<&str> = all_metrics().iter().map(|m| m.name).collect();
        let mut recorded = 0;
        let mut missing = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            // Library code only: not a file's test module, nor a tests file.
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            if file.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in text.match_indices(macro_name) {
                    let rest = text[at + macro_name.len()..].trim_start();
                    let Some(rest) = rest.strip_prefix("\"hologram_") else {
                        continue;
                    };
                    let name = format!("hologram_{}", rest.split('"').next().unwrap_or_default());
                    if !names.contains(name.as_str()) {
                        missing.push(format!("{name} ({})", file.display()));
                    }
                    recorded += 1;
                }
            }
        }
        assert!(
            missing.is_empty(),
            "recorded but not documented: {missing:#?}"
        );
        assert!(recorded >= 40, "{recorded} recordings found");
    }

    #[test]
    fn the_dashboard_plots_documented_metrics_only() {
        let dashboard = include_str!("../../deploy/grafana-hologram.json");
        let names: HashSet<&str> = all_metrics().iter().map(|m| m.name).collect();
        let mut plotted = 0;
        for (at, _) in dashboard.match_indices("hologram_") {
            let name: String = dashboard[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if name == "hologram_" {
                continue; // the dashboard's own names
            }
            assert!(names.contains(name.as_str()), "the dashboard plots {name}");
            plotted += 1;
        }
        assert!(plotted >= 15, "{plotted} series plotted");
    }
}
