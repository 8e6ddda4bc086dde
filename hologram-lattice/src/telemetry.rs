//! Observability shared by the hologram crates: the [`Metric`] catalogue
//! entry each crate lists its metrics with, [`register`] to describe them to
//! the installed recorder, and [`LogLimit`], the rate limit on logs of
//! refused input.
//!
//! Every crate records through the [`metrics`] facade only (an application
//! installs a recorder, e.g. a Prometheus exporter; without one a metric
//! update is an atomic load) and logs through [`tracing`]. The conventions
//! (names, labels, levels) are written down in `docs/observability.md`:
//!
//! - names follow Prometheus: `hologram_<crate area>_<what>`, counters end in
//!   `_total`, durations are histograms in `_seconds`; label values are
//!   static strings (no allocation when a metric is updated);
//! - `error`: the process cannot go on as asked (a store that failed);
//!   `warn`: an operator should look (a validator proven to equivocate, a
//!   peer unreachable, stored data not used); `info`: a change of state an
//!   operator follows (start, recovery, catch-up finished, 2PC recovered);
//!   `debug`: what each protocol step decided (decisions, round changes,
//!   refused input with its reason, rate-limited); `trace`: per message.

use crate::driver::unix_millis;
use std::sync::atomic::{AtomicU64, Ordering};

/// What kind of series a [`Metric`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (`_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution (durations in seconds).
    Histogram,
}

/// One documented metric: its name, kind, the labels it carries and what it
/// measures. Each crate lists its own in a `METRICS` constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The Prometheus name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The label names its series carry (empty: one series).
    pub labels: &'static [&'static str],
    /// What it measures.
    pub help: &'static str,
}

impl Metric {
    /// A counter.
    pub const fn counter(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Metric {
            name,
            kind: MetricKind::Counter,
            labels,
            help,
        }
    }

    /// A gauge.
    pub const fn gauge(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Metric {
            name,
            kind: MetricKind::Gauge,
            labels,
            help,
        }
    }

    /// A histogram.
    pub const fn histogram(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Metric {
            name,
            kind: MetricKind::Histogram,
            labels,
            help,
        }
    }
}

/// The metrics of this crate (the driver's inbox and the frames it refuses).
pub const METRICS: &[Metric] = &[
    Metric::counter(
        "hologram_driver_frames_refused_total",
        &["protocol", "reason"],
        "Inbound frames a driver refused before its core saw them (malformed, or a full inbox).",
    ),
    Metric::counter(
        "hologram_driver_send_failures_total",
        &["protocol"],
        "Messages a driver's transport failed to send (each a lost message the core resends).",
    ),
];

/// Checks `metric` against the naming conventions: a `hologram_` prefix,
/// `_total` on counters and only on them, `_seconds` on histograms.
pub fn check_name(metric: &Metric) -> Result<(), String> {
    let name = metric.name;
    let counter = metric.kind == MetricKind::Counter;
    if !name.starts_with("hologram_") {
        return Err(format!("{name}: not named hologram_*"));
    }
    if counter != name.ends_with("_total") {
        return Err(format!(
            "{name}: _total is for counters, and every counter's"
        ));
    }
    if metric.kind == MetricKind::Histogram && !name.ends_with("_seconds") {
        return Err(format!("{name}: a histogram of durations ends in _seconds"));
    }
    Ok(())
}

/// Describes `metrics` to the installed recorder and registers each one
/// with no value recorded (counters and gauges at zero), so that a scrape
/// lists every documented metric from the start, not only those already
/// touched. Call once, after installing the recorder.
pub fn register(metrics: &[Metric]) {
    for m in metrics {
        match m.kind {
            MetricKind::Counter => {
                ::metrics::describe_counter!(m.name, m.help);
                ::metrics::counter!(m.name).increment(0);
            }
            MetricKind::Gauge => {
                ::metrics::describe_gauge!(m.name, m.help);
                ::metrics::gauge!(m.name).increment(0.0);
            }
            MetricKind::Histogram => {
                ::metrics::describe_histogram!(m.name, ::metrics::Unit::Seconds, m.help);
                let _ = ::metrics::histogram!(m.name);
            }
        }
    }
}

/// A rate limit on a log site: at most `burst` events per `window_ms`
/// milliseconds pass, the rest are counted and the count is handed to the
/// next event that passes. A `static` per site, so that a flood of garbage
/// cannot flood the log:
///
/// ```
/// use hologram_lattice::telemetry::LogLimit;
/// static REFUSED: LogLimit = LogLimit::new(10, 1_000);
/// let passed = (0..10_000).filter(|_| REFUSED.allow().is_some()).count();
/// assert!(passed <= 20); // 10 in this second, 10 more if a second began
/// ```
#[derive(Debug)]
pub struct LogLimit {
    burst: u64,
    window_ms: u64,
    /// The window's start, in ms since the Unix epoch.
    window: AtomicU64,
    /// Events in the window.
    count: AtomicU64,
    /// Events refused since the last one that passed.
    suppressed: AtomicU64,
}

impl LogLimit {
    /// At most `burst` events per `window_ms`.
    pub const fn new(burst: u64, window_ms: u64) -> Self {
        LogLimit {
            burst,
            window_ms,
            window: AtomicU64::new(0),
            count: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed)` if an event may be logged now (with how many were
    /// not since the last that was), `None` if it is over the limit.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(unix_millis())
    }

    /// [`allow`](Self::allow) at time `now_ms`.
    pub fn allow_at(&self, now_ms: u64) -> Option<u64> {
        let start = self.window.load(Ordering::Relaxed);
        if now_ms >= start.saturating_add(self.window_ms)
            && self
                .window
                .compare_exchange(start, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.count.store(0, Ordering::Relaxed);
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < self.burst {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_limit_passes_its_burst_per_window_and_counts_the_rest() {
        let limit = LogLimit::new(3, 1_000);
        let passed: Vec<Option<u64>> = (0..10).map(|_| limit.allow_at(5_000)).collect();
        assert_eq!(passed.iter().filter(|p| p.is_some()).count(), 3);
        assert_eq!(limit.allow_at(5_999), None);
        // The next window: the first event carries the 8 suppressed.
        assert_eq!(limit.allow_at(6_000), Some(8));
        assert_eq!(limit.allow_at(6_001), Some(0));
    }

    #[test]
    fn every_listed_metric_follows_the_naming_conventions() {
        for m in METRICS {
            check_name(m).unwrap();
        }
        let bad = Metric::gauge("hologram_x_total", &[], "a gauge named as a counter");
        assert!(check_name(&bad).is_err());
    }
}
