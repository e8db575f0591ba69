//! The run report, split by job: this module holds its shape (every field of the JSON,
//! whose contract is `schema/report.schema.json`); [`build`] makes one from a measured run,
//! [`markdown`] renders its summary, [`files`] reads and writes report files.
//!
//! Latencies are in milliseconds in the summary fields and in microseconds inside the
//! histogram. `throughput_rps` counts answered requests (any status) per second of
//! `elapsed_s`, as siege's transaction rate does. The run's settings are held once, in
//! [`Settings`], and appear flattened at the top level of the JSON.

pub mod build;
pub mod files;
pub mod markdown;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Cursor;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, new_histogram};
use crate::error::LoadtestError;
use crate::fairness::Fairness;
use crate::marks::Mark;
use crate::metrics::ServerMetrics;
use crate::outcome::Outcomes;
use crate::stages::Stage;

/// Version of the report layout; bumped when a field changes meaning (added fields do
/// not change it: readers default them).
pub const SCHEMA_VERSION: u32 = 1;

/// How the histogram is stored in the JSON.
pub const HISTOGRAM_ENCODING: &str = "hdrhistogram-v2-deflate-base64";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Closed,
    Open,
}

/// How a run was set up: what was asked, not what was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub label: String,
    pub route: String,
    /// The strategy the store reported after the run (or the one reset to).
    pub strategy: Option<String>,
    pub target: String,
    pub mode: Mode,
    pub concurrency: u64,
    pub repetitions: Option<u64>,
    pub rate_rps: Option<f64>,
    pub duration_s: Option<f64>,
    pub timeout_ms: u64,
    /// First user id sent; `None` when requests carried no user id.
    pub user_start: Option<u64>,
    /// The HTTP engine that drove the run (reports written before there was a choice
    /// were driven by hyper).
    #[serde(default = "legacy_engine")]
    pub engine: Engine,
    /// The stack's settings this run measured (matrix dimensions such as `batch`, `gate`,
    /// `workers`, `queue_type`, `store`); empty when not set by the load tester.
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// The open loop's rate stages (`--stages`); empty for a fixed rate or a closed loop.
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// Whether every connection was warm and the first buys released at one instant.
    #[serde(default)]
    pub start_together: bool,
}

fn legacy_engine() -> Engine {
    Engine::Hyper
}

/// Latency summary in milliseconds, over answered requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| round3(us as f64 / 1000.0);
        Self {
            min: ms(h.min()),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: round3(h.mean() / 1000.0),
        }
    }
}

/// The machine the load ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub cores: u64,
    pub os: String,
    pub arch: String,
    #[serde(default)]
    pub cpu: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
}

impl Machine {
    pub fn this() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let pretty = fs::read_to_string("/etc/os-release").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        });
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_string());
        let os = match (pretty, kernel) {
            (Some(p), Some(k)) => format!("{p}, kernel {k}"),
            (Some(p), None) => p,
            (None, Some(k)) => format!("{}, kernel {k}", std::env::consts::OS),
            (None, None) => std::env::consts::OS.to_string(),
        };
        let cpu = fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        });
        let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string());
        Self {
            cores,
            os,
            arch: std::env::consts::ARCH.to_string(),
            cpu,
            hostname,
        }
    }

    pub fn describe(&self) -> String {
        let cpu = self.cpu.as_deref().unwrap_or("unknown CPU");
        format!("{} cores ({cpu}), {} {}", self.cores, self.os, self.arch)
    }
}

/// The serialized HDR histogram of latencies (microseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerializedHistogram {
    pub encoding: String,
    pub unit: String,
    pub data: String,
}

impl SerializedHistogram {
    pub fn encode(h: &Histogram<u64>) -> Result<Self, LoadtestError> {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(h, &mut bytes)
            .map_err(|e| LoadtestError::Histogram(format!("cannot serialize: {e:?}")))?;
        Ok(Self {
            encoding: HISTOGRAM_ENCODING.to_string(),
            unit: "us".to_string(),
            data: BASE64.encode(bytes),
        })
    }

    pub fn decode(&self) -> Result<Histogram<u64>, LoadtestError> {
        if self.encoding != HISTOGRAM_ENCODING || self.unit != "us" {
            return Err(LoadtestError::Histogram(format!(
                "unknown encoding `{}` in `{}`",
                self.encoding, self.unit
            )));
        }
        let bytes = BASE64
            .decode(&self.data)
            .map_err(|e| LoadtestError::Histogram(format!("bad base64: {e}")))?;
        let decoded: Histogram<u64> = Deserializer::new()
            .deserialize(&mut Cursor::new(bytes))
            .map_err(|e| LoadtestError::Histogram(format!("cannot deserialize: {e:?}")))?;
        // Re-home into the standard bounds so histograms from any report add up.
        let mut h = new_histogram();
        h.add(&decoded)
            .map_err(|e| LoadtestError::Histogram(format!("out of range: {e:?}")))?;
        Ok(h)
    }
}

/// One check's verdict, as stored in the JSON report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub expr: String,
    /// The measured value, in the expression's unit; null when it was not measured.
    pub value: Option<f64>,
    /// `us`, `ms`, `s`, `%`, or empty for a plain number.
    pub unit: String,
    pub pass: bool,
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.pass { "pass" } else { "FAIL" };
        match self.value {
            Some(v) => write!(
                f,
                "check {}: {verdict} (measured {}{})",
                self.expr,
                trim_number(v),
                self.unit
            ),
            None => write!(f, "check {}: {verdict} (not measured)", self.expr),
        }
    }
}

fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// One run's report. Field names are the JSON contract (see `schema/report.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    #[serde(flatten)]
    pub settings: Settings,
    /// What was measured: `contended` (a reset sale with fewer units than requests),
    /// `every-buy-writes` (stock at least the requests sent), `after-sell-out` (the stock
    /// was sold before the clock started), or `no-reset` (the sale was not reset).
    #[serde(default)]
    pub scenario: String,
    pub requests: u64,
    pub responses: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub throughput_rps: f64,
    pub latency_ms: Latency,
    /// Latency of the answers that were not an error status (the buys served), and of the
    /// 4xx/5xx answers (e.g. an overloaded server's fast 503s); `None` when there were none,
    /// or in a merged report (these histograms are not kept).
    #[serde(default)]
    pub latency_accepted_ms: Option<Latency>,
    #[serde(default)]
    pub latency_refused_ms: Option<Latency>,
    /// Open loop: how late the generator sent each request after its intended time (every
    /// connection busy, or its thread behind); it is part of every latency above. `None`
    /// in a closed loop and in a merged report.
    #[serde(default)]
    pub send_lag_ms: Option<Latency>,
    pub outcomes: Outcomes,
    /// Whether `/sale` was read after the run; when false the store fields are null.
    pub store_read: bool,
    pub stock: Option<u64>,
    pub orders_in_store: Option<u64>,
    pub oversold: Option<u64>,
    pub ordered_responses: u64,
    /// Distinct user ids answered `ordered`.
    pub ordered_users: u64,
    pub lost_orders: Option<u64>,
    /// Whether `lost_orders` was checked buyer by buyer against the store's list of buyers
    /// (exact), or only bounded from the counts (a lower bound: an order committed for a
    /// request that timed out can hide an acknowledged order that is missing).
    #[serde(default)]
    pub lost_orders_exact: bool,
    /// Did the first buyers win (see [`crate::fairness`])? Null without per-buyer sends
    /// (no user ids) and in a merged report (the load machines' clocks do not agree).
    #[serde(default)]
    pub fairness: Option<Fairness>,
    /// Milliseconds between the first and the last client's first send: how together the
    /// sale really opened. Null in a merged report.
    #[serde(default)]
    pub first_send_spread_ms: Option<f64>,
    pub machine: Machine,
    pub started_at: String,
    /// Labels of the reports this one merges (empty for a single run).
    #[serde(default)]
    pub merged_from: Vec<String>,
    /// What ended (and what was sent) in each second of the run.
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    /// Markers on the timeline (`--mark`, `--marks-file`), in seconds from the start.
    #[serde(default)]
    pub marks: Vec<Mark>,
    /// `--check` verdicts.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// Per `--metrics` URL: counter increases and gauge values over the run.
    #[serde(default)]
    pub server_metrics: BTreeMap<String, ServerMetrics>,
    pub histogram: SerializedHistogram,
}

/// Scenario names (see `Report::scenario`).
pub const SCENARIO_CONTENDED: &str = "contended";
pub const SCENARIO_EVERY_BUY_WRITES: &str = "every-buy-writes";
pub const SCENARIO_AFTER_SELL_OUT: &str = "after-sell-out";
pub const SCENARIO_NO_RESET: &str = "no-reset";

/// One line saying what a scenario is, for the Markdown.
pub fn describe_scenario(scenario: &str) -> &'static str {
    match scenario {
        SCENARIO_CONTENDED => "contended sale: fewer units than buyers",
        SCENARIO_EVERY_BUY_WRITES => "every buy writes: stock at least the requests sent",
        SCENARIO_AFTER_SELL_OUT => {
            "after sell-out: the whole stock was sold before the clock started"
        }
        SCENARIO_NO_RESET => "the sale was not reset by the load tester",
        _ => "unknown",
    }
}

/// Errors in one second of the timeline, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineErrors {
    pub http_4xx: u64,
    pub http_5xx: u64,
    pub timeout: u64,
    pub connect_error: u64,
    pub io_error: u64,
}

/// One second of the run: the requests that ended in `[t_s, t_s + 1)` s after the start,
/// and how many were sent in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub t_s: u64,
    /// Requests sent in this second (by when they really went out).
    #[serde(default)]
    pub sent: u64,
    pub requests: u64,
    pub ordered: u64,
    pub sold_out: u64,
    pub already_ordered: u64,
    pub other: u64,
    pub errors: TimelineErrors,
    /// Latency of the answers that ended in this second; null when none did.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl TimelineEntry {
    /// An empty second.
    pub fn empty(t_s: u64) -> Self {
        Self {
            t_s,
            sent: 0,
            requests: 0,
            ordered: 0,
            sold_out: 0,
            already_ordered: 0,
            other: 0,
            errors: TimelineErrors::default(),
            p50_ms: None,
            p99_ms: None,
        }
    }

    pub fn error_count(&self) -> u64 {
        let e = &self.errors;
        e.http_4xx + e.http_5xx + e.timeout + e.connect_error + e.io_error
    }
}

impl Report {
    pub fn label(&self) -> &str {
        &self.settings.label
    }

    pub fn decode_histogram(&self) -> Result<Histogram<u64>, LoadtestError> {
        self.histogram.decode()
    }

    /// Whether every check passed (true without checks).
    pub fn checks_pass(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }
}

pub fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        round3(count as f64 / seconds)
    } else {
        0.0
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A wall-clock time as RFC 3339 UTC.
pub fn rfc3339(at: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".to_string())
}
