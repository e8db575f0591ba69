//! Metrics plumbing every service shares: one Prometheus registry per service instance (no
//! global recorder, so several services in one test process keep their counts apart), the
//! bucket layouts, the text rendering for `GET /metrics`, and the store's operation timings.
//!
//! Metric handles with fixed labels are resolved once, at start-up, so the hot paths only
//! touch atomics. [`test_support`] (feature `test-support`) reads the text back in tests.

use std::sync::Arc;

pub use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::store::OperationTimings;

#[cfg(feature = "test-support")]
pub mod test_support;

/// Latency buckets, in seconds: 0.5 ms to 20 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
];

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything registered in `registry`, in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("encoding metrics into memory cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}

// Metric names and labels are constants of this code base: a failure to register one is a
// programming error (a duplicate or an invalid name), found by the first test that runs it.

pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(counter.clone()))
        .expect("metric registered once");
    counter
}

pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(counter.clone()))
        .expect("metric registered once");
    counter
}

pub fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let gauge = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(gauge.clone()))
        .expect("metric registered once");
    gauge
}

pub fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let gauge = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(gauge.clone()))
        .expect("metric registered once");
    gauge
}

pub fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let histogram = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("valid metric");
    registry
        .register(Box::new(histogram.clone()))
        .expect("metric registered once");
    histogram
}

pub fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let histogram = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric");
    registry
        .register(Box::new(histogram.clone()))
        .expect("metric registered once");
    histogram
}

/// Counts one unit in a gauge (e.g. a request in flight) for as long as it lives, however
/// the work it guards ends (finished, failed or cancelled).
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    pub fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `flashsale_store_operation_seconds{op}` in `registry`, as the store's timing hook.
pub fn store_timings(registry: &Registry) -> OperationTimings {
    let seconds = histogram_vec(
        registry,
        "flashsale_store_operation_seconds",
        "Duration of store calls (a batch is one transaction), by operation.",
        &["op"],
        LATENCY_BUCKETS,
    );
    Arc::new(move |op, took| seconds.with_label_values(&[op]).observe(took.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_renders_its_metrics_in_the_text_format() {
        let registry = Registry::new();
        let buys = counter_vec(&registry, "test_buys_total", "Buys.", &["outcome"]);
        buys.with_label_values(&["ordered"]).inc_by(3);
        let timings = store_timings(&registry);
        timings("claim", std::time::Duration::from_millis(2));

        let text = render(&registry);
        assert!(
            text.contains("test_buys_total{outcome=\"ordered\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("flashsale_store_operation_seconds_count{op=\"claim\"} 1"),
            "{text}"
        );
    }
}
