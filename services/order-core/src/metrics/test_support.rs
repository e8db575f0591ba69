//! Reading a service's `GET /metrics` back in the services' integration tests (feature
//! `test-support`, enabled only by their dev-dependencies): the text must parse as the
//! Prometheus text format, and a sample is found by its name and its exact label set.

use prometheus_parse::{Scrape, Value};

/// `text` parsed as the Prometheus text format; panics, showing the text, if it does not parse.
pub fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
        .unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{text}"))
}

/// The value of the counter, gauge or untyped sample `name` with exactly these `labels` (no
/// more, no fewer) in `text`, which must parse (see [`parse`]). A histogram's `_sum` and
/// `_count` are such samples; its buckets are not.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    parse(text).samples.iter().find_map(|s| {
        let same_labels = s.labels.len() == labels.len()
            && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
        if s.metric != name || !same_labels {
            return None;
        }
        match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        }
    })
}
