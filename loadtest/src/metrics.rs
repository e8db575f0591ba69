//! Server-side metrics around a run (`--metrics URL`): each Prometheus text endpoint is
//! scraped before and after the run, and the report keeps, per series, the increase of
//! every counter (histogram buckets, `_sum` and `_count` included) and the after-value of
//! every gauge (and summary quantile).
//!
//! The parser is a small one for the text exposition format (version 0.0.4): `# TYPE`
//! lines give each family's type; a sample is `name{label="value",...} value
//! [timestamp]`, with `\\`, `\"` and `\n` escapes in label values. A series is named
//! `name{a="1",b="2"}` with its labels sorted, so the same series matches across scrapes
//! whatever order the server prints labels in. A counter that went down (the server
//! restarted in between) counts from zero: its increase is its after-value.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::LoadtestError;

/// What one endpoint's metrics did during the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerMetrics {
    /// Increase of each counter series during the run.
    pub counters: BTreeMap<String, f64>,
    /// Value of each gauge series after the run.
    pub gauges: BTreeMap<String, f64>,
    /// Why the after-run scrape failed, if it did (the counters are then empty).
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// One scrape: series name -> (kind, value).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    series: BTreeMap<String, (Kind, f64)>,
}

/// Parses the Prometheus text format.
pub fn parse(text: &str) -> Result<Scrape, String> {
    let mut types: HashMap<&str, &str> = HashMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE")
                && let (Some(name), Some(kind)) = (words.next(), words.next())
            {
                types.insert(name, kind);
            }
            continue;
        }
        let sample = parse_sample(line).map_err(|e| format!("line {}: {e}: `{line}`", n + 1))?;
        samples.push(sample);
    }
    let mut scrape = Scrape::default();
    for (name, labels, value) in samples {
        let kind = kind_of(&name, &labels, &types);
        scrape
            .series
            .insert(series_key(&name, labels), (kind, value));
    }
    Ok(scrape)
}

fn kind_of(name: &str, labels: &[(String, String)], types: &HashMap<&str, &str>) -> Kind {
    if let Some(t) = types.get(name) {
        return match *t {
            "counter" => Kind::Counter,
            "histogram" => Kind::Counter,
            _ if name.ends_with("_total") && *t == "untyped" => Kind::Counter,
            _ => Kind::Gauge,
        };
    }
    for suffix in ["_bucket", "_sum", "_count", "_total", "_created"] {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some(t) = types.get(base)
        {
            return match (*t, suffix) {
                ("counter", "_total") => Kind::Counter,
                ("histogram", "_bucket" | "_sum" | "_count") => Kind::Counter,
                ("summary", "_sum" | "_count") => Kind::Counter,
                _ => Kind::Gauge,
            };
        }
    }
    // No type line: a `_total` series is a counter by convention; a summary quantile or
    // anything else is read as a gauge.
    if name.ends_with("_total") && !labels.iter().any(|(k, _)| k == "quantile") {
        Kind::Counter
    } else {
        Kind::Gauge
    }
}

fn series_key(name: &str, mut labels: Vec<(String, String)>) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    labels.sort();
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

type Sample = (String, Vec<(String, String)>, f64);

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            // Skip spaces and commas between labels.
            while let Some((_, c)) = chars.peek() {
                if *c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let Some(&(start, c)) = chars.peek() else {
                return Err("unclosed labels".into());
            };
            if c == '}' {
                chars.next();
                rest = &inner[start + 1..];
                break;
            }
            let mut key_end = start;
            while let Some(&(i, c)) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    key_end = i + c.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let key = inner[start..key_end].to_string();
            if key.is_empty() {
                return Err("bad label name".into());
            }
            while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('=') {
                return Err(format!("label `{key}` has no `=`"));
            }
            while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label `{key}` has no quoted value"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("unfinished escape".into()),
                    },
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label `{key}` value is not closed")),
                }
            }
            labels.push((key, value));
        }
    }
    let mut words = rest.split_whitespace();
    let value = words.next().ok_or("no value")?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("`{v}` is not a number"))?,
    };
    Ok((name.to_string(), labels, value))
}

/// The run's view of an endpoint: counter increases and gauge values.
pub fn delta(before: &Scrape, after: &Scrape) -> ServerMetrics {
    let mut out = ServerMetrics::default();
    for (key, (kind, value)) in &after.series {
        match kind {
            Kind::Counter if !value.is_finite() => {}
            Kind::Counter => {
                let increase = match before.series.get(key) {
                    Some((_, old)) if value >= old => value - old,
                    // New series, or a counter reset: it counted from zero.
                    _ => *value,
                };
                out.counters.insert(key.clone(), increase);
            }
            Kind::Gauge => {
                if value.is_finite() {
                    out.gauges.insert(key.clone(), *value);
                }
            }
        }
    }
    out
}

/// Scrapes endpoints with one HTTP client.
#[derive(Debug, Clone)]
pub struct Scraper {
    client: reqwest::Client,
}

impl Scraper {
    pub fn new(timeout: Duration) -> Result<Self, LoadtestError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| LoadtestError::Control {
                url: "--metrics".into(),
                reason: format!("cannot build HTTP client: {e}"),
            })?;
        Ok(Self { client })
    }

    /// Fetches and parses one endpoint.
    pub async fn scrape(&self, url: &str) -> Result<Scrape, LoadtestError> {
        let fail = |reason: String| LoadtestError::Metrics {
            url: url.to_string(),
            reason,
        };
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status().as_u16())));
        }
        let text = response.text().await.map_err(|e| fail(e.to_string()))?;
        parse(&text).map_err(fail)
    }

    /// Scrapes every endpoint; the first failure stops (used before the run, so a wrong
    /// URL is reported before any load is sent).
    pub async fn scrape_all(&self, urls: &[String]) -> Result<Vec<Scrape>, LoadtestError> {
        let mut out = Vec::with_capacity(urls.len());
        for url in urls {
            out.push(self.scrape(url).await?);
        }
        Ok(out)
    }

    /// Scrapes every endpoint again and returns the deltas, keyed by URL; a failed
    /// scrape after the run is recorded in the report rather than losing the run.
    pub async fn deltas(
        &self,
        urls: &[String],
        before: &[Scrape],
    ) -> BTreeMap<String, ServerMetrics> {
        let mut out = BTreeMap::new();
        for (url, before) in urls.iter().zip(before) {
            let metrics = match self.scrape(url).await {
                Ok(after) => delta(before, &after),
                Err(e) => {
                    eprintln!("loadtest: warning: {e}");
                    ServerMetrics {
                        error: Some(e.to_string()),
                        ..ServerMetrics::default()
                    }
                }
            };
            out.insert(url.clone(), metrics);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"
# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{route="/buy",outcome="ordered"} 10
http_requests_total{outcome="sold_out",route="/buy"} 5
# TYPE in_flight gauge
in_flight 3
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 4
latency_seconds_bucket{le="+Inf"} 15
latency_seconds_sum 1.5
latency_seconds_count 15
# TYPE rpc summary
rpc{quantile="0.99"} 0.2
rpc_sum 3
rpc_count 30
restarts_total 7
"#;

    const AFTER: &str = r#"
# TYPE http_requests_total counter
http_requests_total{outcome="ordered",route="/buy"} 110 1700000000000
http_requests_total{route="/buy",outcome="sold_out"} 905
http_requests_total{route="/buy",outcome="already_ordered"} 2
# TYPE in_flight gauge
in_flight 0
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 900
latency_seconds_bucket{le="+Inf"} 1017
latency_seconds_sum 20.5
latency_seconds_count 1017
# TYPE rpc summary
rpc{quantile="0.99"} 0.4
rpc_sum 5
rpc_count 31
restarts_total 2
"#;

    #[test]
    fn counters_give_increases_and_gauges_their_after_value() {
        let d = delta(&parse(BEFORE).unwrap(), &parse(AFTER).unwrap());
        let c = |k: &str| d.counters.get(k).copied();
        assert_eq!(
            c(r#"http_requests_total{outcome="ordered",route="/buy"}"#),
            Some(100.0)
        );
        assert_eq!(
            c(r#"http_requests_total{outcome="sold_out",route="/buy"}"#),
            Some(900.0)
        );
        // A series that appeared during the run counted from zero.
        assert_eq!(
            c(r#"http_requests_total{outcome="already_ordered",route="/buy"}"#),
            Some(2.0)
        );
        assert_eq!(c(r#"latency_seconds_bucket{le="0.1"}"#), Some(896.0));
        assert_eq!(c("latency_seconds_sum"), Some(19.0));
        assert_eq!(c("latency_seconds_count"), Some(1002.0));
        assert_eq!(c("rpc_count"), Some(1.0));
        // A counter that went down was reset: it counted from zero.
        assert_eq!(c("restarts_total"), Some(2.0));
        assert_eq!(d.gauges.get("in_flight"), Some(&0.0));
        assert_eq!(d.gauges.get(r#"rpc{quantile="0.99"}"#), Some(&0.4));
        assert!(!d.gauges.contains_key("latency_seconds_sum"));
    }

    #[test]
    fn label_values_keep_their_escapes_and_spaces() {
        let s = parse("m{a=\"x \\\"y\\\" \\\\ z\", b = \"1,2\" ,} 4.5e1\n").unwrap();
        let (key, (_, value)) = s.series.iter().next().unwrap();
        assert_eq!(key, r#"m{a="x \"y\" \\ z",b="1,2"}"#);
        assert_eq!(*value, 45.0);
    }

    #[test]
    fn broken_lines_are_reported_with_their_number() {
        for text in [
            "ok 1\nm{a=\"1\" 2\n",
            "ok 1\nm abc\n",
            "ok 1\n{a=\"1\"} 2\n",
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with("line 2:"), "{text}: {err}");
        }
    }
}
