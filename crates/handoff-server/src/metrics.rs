//! Prometheus metrics (`GET /metrics`): pings accepted per wire format, rejected per reason,
//! reports of known devices dropped (answered 2xx, not stored) per wire format and reason,
//! ingest latency per wire format, live SSE clients. Dropped reports per device are in the
//! device listing instead: a device label would make one series per phone.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FormatLabel {
    pub format: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DroppedLabel {
    pub format: &'static str,
    pub reason: &'static str,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~3.3 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub accepted: Family<FormatLabel, Counter>,
    pub duplicates: Family<FormatLabel, Counter>,
    pub rejected: Family<ReasonLabel, Counter>,
    pub dropped: Family<DroppedLabel, Counter>,
    pub latency: Family<FormatLabel, Histogram, fn() -> Histogram>,
    pub sse_clients: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let accepted = Family::<FormatLabel, Counter>::default();
        let duplicates = Family::<FormatLabel, Counter>::default();
        let rejected = Family::<ReasonLabel, Counter>::default();
        let dropped = Family::<DroppedLabel, Counter>::default();
        let latency = Family::<FormatLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let sse_clients = Gauge::default();
        registry.register(
            "handoff_pings_accepted",
            "Pings stored, by wire format",
            accepted.clone(),
        );
        registry.register(
            "handoff_pings_duplicate",
            "Pings already stored (resent), by wire format",
            duplicates.clone(),
        );
        registry.register(
            "handoff_pings_rejected",
            "Pings or requests refused, by reason",
            rejected.clone(),
        );
        registry.register(
            "handoff_reports_dropped",
            "Reports of known devices answered 2xx but not stored (no position, out of range, \
             future time, ...), by wire format and reason",
            dropped.clone(),
        );
        registry.register(
            "handoff_ingest_latency_seconds",
            "Time to answer an ingest request, by wire format",
            latency.clone(),
        );
        registry.register(
            "handoff_sse_clients",
            "Open live streams",
            sse_clients.clone(),
        );
        Self {
            registry,
            accepted,
            duplicates,
            rejected,
            dropped,
            latency,
            sse_clients,
        }
    }
}

/// The wire formats pings arrive in: every value of the `format` label.
pub const FORMATS: [&str; 3] = ["batch", "osmand", "owntracks"];

impl Metrics {
    /// Pings stored since the server started, over every wire format.
    #[must_use]
    pub fn accepted_total(&self) -> u64 {
        FORMATS
            .iter()
            .filter_map(|&format| self.accepted.get(&FormatLabel { format }).map(|c| c.get()))
            .sum()
    }

    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
