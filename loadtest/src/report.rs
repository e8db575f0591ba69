//! The run report: JSON (every field of the design, plus the HDR histogram so reports can
//! be merged) and a Markdown summary.
//!
//! Latencies are in milliseconds in the summary fields and in microseconds inside the
//! histogram. `throughput_rps` counts answered requests (any status) per second of
//! `elapsed_s`, as siege's transaction rate does. `lost_orders` is the number of distinct
//! buyers answered `ordered` that the store's order count cannot account for (a lower
//! bound: the store only reports a count); it must be 0.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::check::CheckResult;
use crate::control::Sale;
use crate::engine::{Engine, RunResult, Second, new_histogram};
use crate::error::LoadtestError;
use crate::metrics::ServerMetrics;
use crate::outcome::Outcomes;
use crate::timeline::Mark;

/// Version of the report layout; bumped when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// How the histogram is stored in the JSON.
pub const HISTOGRAM_ENCODING: &str = "hdrhistogram-v2-deflate-base64";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Closed,
    Open,
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

/// One run's report. Field names are the JSON contract (see `schema/report.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
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
    /// What was measured: `contended` (a reset sale with fewer units than requests),
    /// `every-buy-writes` (stock at least the requests sent), `after-sell-out` (the stock
    /// was sold before the clock started), or `no-reset` (the sale was not reset).
    #[serde(default)]
    pub scenario: String,
    /// The stack's settings this run measured (matrix dimensions such as `batch`, `gate`,
    /// `workers`, `queue_type`); empty when not set by the load tester.
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
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
    pub machine: Machine,
    pub started_at: String,
    /// Labels of the reports this one merges (empty for a single run).
    #[serde(default)]
    pub merged_from: Vec<String>,
    /// What ended in each second of the run (by the time the request ended).
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

/// Names what a run measured, from how it was set up and how many requests it sent.
pub fn scenario(reset: bool, sold_out_first: bool, stock: u64, requests: u64) -> String {
    match (reset, sold_out_first) {
        (false, _) => SCENARIO_NO_RESET,
        (true, true) => SCENARIO_AFTER_SELL_OUT,
        (true, false) if stock >= requests => SCENARIO_EVERY_BUY_WRITES,
        (true, false) => SCENARIO_CONTENDED,
    }
    .to_string()
}

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

fn legacy_engine() -> Engine {
    Engine::Hyper
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

/// One second of the run: the requests that ended in `[t_s, t_s + 1)` s after the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub t_s: u64,
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
    pub fn from_seconds(seconds: &[Second]) -> Vec<Self> {
        seconds
            .iter()
            .enumerate()
            .map(|(t, s)| {
                let o = &s.outcomes;
                let at = |q: f64| {
                    (!s.latency.is_empty())
                        .then(|| round3(s.latency.value_at_quantile(q) as f64 / 1000.0))
                };
                Self {
                    t_s: t as u64,
                    requests: o.total(),
                    ordered: o.ordered,
                    sold_out: o.sold_out,
                    already_ordered: o.already_ordered,
                    other: o.other,
                    errors: TimelineErrors {
                        http_4xx: o.http_4xx,
                        http_5xx: o.http_5xx,
                        timeout: o.timeout,
                        connect_error: o.connect_error,
                        io_error: o.io_error,
                    },
                    p50_ms: at(0.50),
                    p99_ms: at(0.99),
                }
            })
            .collect()
    }

    pub fn error_count(&self) -> u64 {
        let e = &self.errors;
        e.http_4xx + e.http_5xx + e.timeout + e.connect_error + e.io_error
    }
}

/// How a run was configured, for the report.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub label: String,
    pub route: String,
    pub target: String,
    pub mode: Mode,
    pub concurrency: u64,
    pub repetitions: Option<u64>,
    pub rate_rps: Option<f64>,
    pub duration_s: Option<f64>,
    pub timeout_ms: u64,
    pub user_start: Option<u64>,
    pub strategy: Option<String>,
    pub engine: Engine,
    /// Whether the stock was sold out before the clock started (`--sold-out-first`).
    pub sold_out_first: bool,
    /// The stock the sale was reset to (with a reset).
    pub reset_stock: Option<u64>,
    pub dimensions: BTreeMap<String, String>,
}

impl Report {
    pub fn new(
        info: RunInfo,
        result: &RunResult,
        sale: Option<&Sale>,
    ) -> Result<Self, LoadtestError> {
        let elapsed_s = result.elapsed.as_secs_f64();
        let responses = result.outcomes.answered();
        let ordered_users = result.ordered_users.len() as u64;
        let mut report = Self {
            schema_version: SCHEMA_VERSION,
            label: info.label,
            route: info.route,
            strategy: sale.and_then(|s| s.strategy.clone()).or(info.strategy),
            target: info.target,
            mode: info.mode,
            concurrency: info.concurrency,
            repetitions: info.repetitions,
            rate_rps: info.rate_rps,
            duration_s: info.duration_s,
            timeout_ms: info.timeout_ms,
            user_start: info.user_start,
            engine: info.engine,
            scenario: scenario(
                info.reset_stock.is_some(),
                info.sold_out_first,
                info.reset_stock.unwrap_or(0),
                result.requests,
            ),
            dimensions: info.dimensions,
            requests: result.requests,
            responses,
            errors: result.outcomes.errors(),
            elapsed_s: round3(elapsed_s),
            throughput_rps: rate(responses, elapsed_s),
            latency_ms: Latency::from_histogram(&result.histogram),
            latency_accepted_ms: (!result.accepted.is_empty())
                .then(|| Latency::from_histogram(&result.accepted)),
            latency_refused_ms: (!result.refused.is_empty())
                .then(|| Latency::from_histogram(&result.refused)),
            outcomes: result.outcomes,
            store_read: false,
            stock: None,
            orders_in_store: None,
            oversold: None,
            ordered_responses: result.outcomes.ordered,
            ordered_users,
            lost_orders: None,
            lost_orders_exact: false,
            machine: Machine::this(),
            started_at: rfc3339(result.started_at),
            merged_from: Vec::new(),
            timeline: TimelineEntry::from_seconds(&result.timeline),
            marks: Vec::new(),
            checks: Vec::new(),
            server_metrics: BTreeMap::new(),
            histogram: SerializedHistogram::encode(&result.histogram)?,
        };
        report.set_store(sale);
        if let Some(held) = sale.and_then(|s| s.held_users.as_deref()) {
            // Both lists are sorted: count the ordered buyers the store does not hold.
            let missing = result
                .ordered_users
                .iter()
                .filter(|user| held.binary_search(user).is_err())
                .count();
            report.lost_orders = Some(missing as u64);
            report.lost_orders_exact = true;
        }
        Ok(report)
    }

    /// Fills the store fields from a `/sale` read (or marks the store as not read).
    pub fn set_store(&mut self, sale: Option<&Sale>) {
        self.store_read = sale.is_some();
        self.stock = sale.map(|s| s.stock);
        self.orders_in_store = sale.map(|s| s.orders);
        self.oversold = sale.map(Sale::oversold);
        self.lost_orders = sale.map(|s| self.ordered_users.saturating_sub(s.orders));
        self.lost_orders_exact = false;
    }

    pub fn decode_histogram(&self) -> Result<Histogram<u64>, LoadtestError> {
        self.histogram.decode()
    }

    /// Reads a report written by `write`.
    pub fn load(path: &Path) -> Result<Self, LoadtestError> {
        let text = fs::read_to_string(path).map_err(|e| LoadtestError::ReadReport {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| LoadtestError::ReadReport {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Writes `<dir>/<label>.json` and `<dir>/<label>.md`; returns their paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, LoadtestError> {
        let json = serde_json::to_string_pretty(self).expect("a report always serializes");
        let json_path = write_file(dir, &format!("{}.json", self.label), &json)?;
        let md_path = write_file(dir, &format!("{}.md", self.label), &self.markdown())?;
        Ok(vec![json_path, md_path])
    }

    /// A short Markdown summary of the run.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Load test `{}`\n", self.label);
        let _ = writeln!(
            md,
            "{} loop, {} against `{}`, started {} on {}.\n",
            match self.mode {
                Mode::Closed => "Closed",
                Mode::Open => "Open",
            },
            self.shape(),
            self.target,
            self.started_at,
            self.machine.describe()
        );
        let _ = writeln!(
            md,
            "Scenario: {} ({}). Engine: {}.\n",
            if self.scenario.is_empty() {
                "unknown"
            } else {
                &self.scenario
            },
            describe_scenario(&self.scenario),
            self.engine.name()
        );
        if !self.dimensions.is_empty() {
            let dims: Vec<String> = self
                .dimensions
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(md, "Stack: {}.\n", dims.join(", "));
        }
        if !self.merged_from.is_empty() {
            let _ = writeln!(md, "Merged from: {}.\n", self.merged_from.join(", "));
        }
        let l = &self.latency_ms;
        let _ = writeln!(md, "| metric | value |\n|---|---|");
        let rows: Vec<(&str, String)> = vec![
            ("route", self.route.clone()),
            ("strategy", opt(&self.strategy)),
            ("requests", self.requests.to_string()),
            ("elapsed (s)", format!("{:.3}", self.elapsed_s)),
            ("trans/sec", format!("{:.2}", self.throughput_rps)),
            (
                "latency min / mean (ms)",
                format!("{:.3} / {:.3}", l.min, l.mean),
            ),
            (
                "latency p50 / p90 (ms)",
                format!("{:.3} / {:.3}", l.p50, l.p90),
            ),
            (
                "latency p99 / p99.9 (ms)",
                format!("{:.3} / {:.3}", l.p99, l.p999),
            ),
            ("longest (s)", format!("{:.3}", l.max / 1000.0)),
            (
                "accepted answers p50 / p99 (ms)",
                self.latency_accepted_ms
                    .as_ref()
                    .map_or("-".into(), |a| format!("{:.3} / {:.3}", a.p50, a.p99)),
            ),
            (
                "refused (4xx, 5xx) p50 / p99 (ms)",
                self.latency_refused_ms
                    .as_ref()
                    .map_or("-".into(), |r| format!("{:.3} / {:.3}", r.p50, r.p99)),
            ),
            ("ordered responses", self.ordered_responses.to_string()),
            ("stock", opt(&self.stock)),
            ("orders in store", opt(&self.orders_in_store)),
            ("oversold", opt(&self.oversold)),
            (
                "lost orders",
                match (self.lost_orders, self.lost_orders_exact) {
                    (Some(lost), true) => {
                        format!("{lost} (every ordered buyer checked in the store)")
                    }
                    (Some(lost), false) => format!("at least {lost} (from counts only)"),
                    (None, _) => "-".to_string(),
                },
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(md, "| {k} | {v} |");
        }
        if !self.store_read {
            let _ = writeln!(
                md,
                "\nThe store was not read (the target has no `/sale`): oversell is unknown."
            );
        }
        let o = &self.outcomes;
        let _ = writeln!(
            md,
            "\n| ordered | sold_out | already_ordered | other | 4xx | 5xx | timeout | connect error | io error |\n|---|---|---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            o.ordered,
            o.sold_out,
            o.already_ordered,
            o.other,
            o.http_4xx,
            o.http_5xx,
            o.timeout,
            o.connect_error,
            o.io_error
        );
        if !self.marks.is_empty() {
            let _ = writeln!(md, "\nMarkers:\n");
            for m in &self.marks {
                let _ = writeln!(md, "- {:.3} s: {}", m.t_s, m.text);
            }
        }
        if !self.server_metrics.is_empty() {
            let _ = writeln!(
                md,
                "\nServer metrics ({} endpoint(s), counters as increases during the run) are in the JSON report under `server_metrics`.",
                self.server_metrics.len()
            );
        }
        if !self.checks.is_empty() {
            let _ = writeln!(md, "\nChecks:\n");
            for c in &self.checks {
                let _ = writeln!(md, "- {c}");
            }
        }
        md
    }

    /// Whether every check passed (true without checks).
    pub fn checks_pass(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }

    /// `-c 100 -r 10`-style description of the load.
    pub fn shape(&self) -> String {
        let mut s = format!("-c {}", self.concurrency);
        if let Some(r) = self.repetitions {
            let _ = write!(s, " -r {r}");
        }
        if let Some(rate) = self.rate_rps {
            let _ = write!(s, " --rate {rate}");
        }
        if let Some(d) = self.duration_s {
            let _ = write!(s, " -t {d}s");
        }
        if self.repetitions.is_none() && self.duration_s.is_none() {
            let _ = write!(s, " -n {}", self.requests);
        }
        s
    }
}

/// Makes sure `dir` exists and is writable before any load is sent.
pub fn ensure_writable(dir: &Path) -> Result<(), LoadtestError> {
    let fail = |cause| LoadtestError::OutputDir {
        path: dir.to_path_buf(),
        cause,
    };
    fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".loadtest-probe-{}", std::process::id()));
    fs::write(&probe, b"").map_err(fail)?;
    let _ = fs::remove_file(probe);
    Ok(())
}

/// Writes one file into `dir`, mapping failures to the output-directory error.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> Result<PathBuf, LoadtestError> {
    let fail = |cause| LoadtestError::OutputDir {
        path: dir.to_path_buf(),
        cause,
    };
    fs::create_dir_all(dir).map_err(fail)?;
    let path = dir.join(name);
    fs::write(&path, contents).map_err(fail)?;
    Ok(path)
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

pub fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "n/a".to_string(), T::to_string)
}

/// A wall-clock time as RFC 3339 UTC.
pub fn rfc3339(at: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".to_string())
}
