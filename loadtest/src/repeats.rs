//! Repeated runs of one row (`matrix --repeat K`): the median and the min-max spread of
//! each measure, and whether a difference between two rows stands out from the noise.
//!
//! A row is the set of runs with the same stack dimensions, strategy, route and
//! concurrency. A difference between two rows is called real only when it is larger than
//! the spread (max - min) of both rows; otherwise it is "within noise". With fewer than two
//! runs on a side the spread of that side is unknown, and the verdict says so instead of
//! guessing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::report::{CheckResult, Report};

/// Median and range of one measure over a row's runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The median (mean of the middle two for an even count) and range of `values`.
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self {
                median: 0.0,
                min: 0.0,
                max: 0.0,
            };
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    pub fn width(&self) -> f64 {
        self.max - self.min
    }
}

/// One row of a matrix: its runs summed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The row's label (the runs' labels without the repeat suffix).
    pub label: String,
    pub route: String,
    pub strategy: Option<String>,
    pub concurrency: u64,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    #[serde(default)]
    pub scenario: String,
    pub runs: u32,
    pub throughput_rps: Spread,
    pub p50_ms: Spread,
    pub p99_ms: Spread,
    pub max_ms: Spread,
    pub errors: Spread,
    /// The worst run's oversold and lost counts (null when a store was not read).
    pub oversold: Option<u64>,
    pub lost_orders: Option<u64>,
    pub lost_orders_exact: bool,
    pub orders_in_store: Spread,
    /// Fairness over the runs that measured it (null when none did).
    #[serde(default)]
    pub fcfs_precision: Option<Spread>,
    #[serde(default)]
    pub inversions: Option<Spread>,
    #[serde(default)]
    pub winners_median_send_rank: Option<Spread>,
    /// How spread the first sends were (ms), over the runs.
    #[serde(default)]
    pub first_send_spread_ms: Option<Spread>,
    /// Whether every check of every run passed (true without checks).
    pub checks_pass: bool,
    /// Per check: the median of the runs' measured values, and pass only when every run
    /// passed.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
}

impl Row {
    /// Key that identifies the same row in two reports.
    pub fn key(&self) -> String {
        key_of(
            &self.dimensions,
            self.strategy.as_deref(),
            &self.route,
            self.concurrency,
        )
    }

    /// Sums up the runs of one row (all with the same key).
    pub fn from_runs(label: &str, runs: &[&Report]) -> Self {
        let first = runs[0];
        let values =
            |f: fn(&Report) -> f64| Spread::of(&runs.iter().map(|r| f(r)).collect::<Vec<_>>());
        let measured = |f: fn(&Report) -> Option<f64>| {
            let v: Vec<f64> = runs.iter().filter_map(|r| f(r)).collect();
            (!v.is_empty()).then(|| Spread::of(&v))
        };
        let worst = |f: fn(&Report) -> Option<u64>| {
            runs.iter()
                .map(|r| f(r))
                .collect::<Option<Vec<u64>>>()
                .and_then(|v| v.into_iter().max())
        };
        let s = &first.settings;
        Self {
            label: label.to_string(),
            route: s.route.clone(),
            strategy: s.strategy.clone(),
            concurrency: s.concurrency,
            dimensions: s.dimensions.clone(),
            scenario: first.scenario.clone(),
            runs: runs.len() as u32,
            throughput_rps: values(|r| r.throughput_rps),
            p50_ms: values(|r| r.latency_ms.p50),
            p99_ms: values(|r| r.latency_ms.p99),
            max_ms: values(|r| r.latency_ms.max),
            errors: values(|r| r.errors as f64),
            oversold: worst(|r| r.oversold),
            lost_orders: worst(|r| r.lost_orders),
            lost_orders_exact: runs.iter().all(|r| r.lost_orders_exact),
            orders_in_store: values(|r| r.orders_in_store.unwrap_or(0) as f64),
            fcfs_precision: measured(|r| r.fairness.as_ref()?.fcfs_precision),
            inversions: measured(|r| r.fairness.as_ref()?.inversions),
            winners_median_send_rank: measured(|r| r.fairness.as_ref()?.winners_median_send_rank),
            first_send_spread_ms: measured(|r| r.first_send_spread_ms),
            checks_pass: runs.iter().all(|r| r.checks_pass()),
            checks: row_checks(runs),
        }
    }
}

/// The row's verdict on each check its runs carry (matched by expression).
fn row_checks(runs: &[&Report]) -> Vec<CheckResult> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .checks
        .iter()
        .map(|c| {
            let same: Vec<&CheckResult> = runs
                .iter()
                .filter_map(|r| r.checks.iter().find(|x| x.expr == c.expr))
                .collect();
            let values: Option<Vec<f64>> = same.iter().map(|x| x.value).collect();
            CheckResult {
                expr: c.expr.clone(),
                value: values.map(|v| Spread::of(&v).median),
                unit: c.unit.clone(),
                pass: same.len() == runs.len() && same.iter().all(|x| x.pass),
            }
        })
        .collect()
}

/// Groups runs into rows by key, in the order rows first appear; `label` names a row from
/// its first run.
pub fn rows(runs: &[Report], label: impl Fn(&Report) -> String) -> Vec<Row> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<&Report>> = BTreeMap::new();
    for run in runs {
        let key = row_key(run);
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(run);
    }
    order
        .iter()
        .map(|key| {
            let runs = &groups[key];
            Row::from_runs(&label(runs[0]), runs)
        })
        .collect()
}

/// The row key of one run (see [`Row::key`]).
pub fn row_key(r: &Report) -> String {
    let s = &r.settings;
    key_of(
        &s.dimensions,
        s.strategy.as_deref(),
        &s.route,
        s.concurrency,
    )
}

fn key_of(
    dimensions: &BTreeMap<String, String>,
    strategy: Option<&str>,
    route: &str,
    concurrency: u64,
) -> String {
    let dims: Vec<String> = dimensions.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{} {} {route} c{concurrency}",
        dims.join(","),
        strategy.unwrap_or("-")
    )
}

/// Whether a difference between two rows' measures stands out from their noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Larger than both sides' spread.
    Real,
    /// Not larger than at least one side's spread.
    WithinNoise,
    /// A side has a single run: its spread is unknown.
    Unknown,
}

impl Verdict {
    pub fn of(a: &Spread, a_runs: u32, b: &Spread, b_runs: u32) -> Self {
        if a_runs < 2 || b_runs < 2 {
            return Verdict::Unknown;
        }
        let diff = (b.median - a.median).abs();
        if diff > a.width() && diff > b.width() {
            Verdict::Real
        } else {
            Verdict::WithinNoise
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Verdict::Real => "real",
            Verdict::WithinNoise => "within noise",
            Verdict::Unknown => "unknown (a single run: repeat to tell)",
        }
    }
}

/// `median (min-max)`, or the plain value for a single run.
pub fn cell(s: &Spread, runs: u32, decimals: usize) -> String {
    if runs < 2 {
        format!("{:.decimals$}", s.median)
    } else {
        format!(
            "{:.decimals$} ({:.decimals$}-{:.decimals$})",
            s.median, s.min, s.max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread_of_known_values() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.width()), (2.0, 1.0, 3.0, 2.0));
        let even = Spread::of(&[4.0, 1.0, 3.0, 10.0]);
        assert_eq!((even.median, even.min, even.max), (3.5, 1.0, 10.0));
        assert_eq!(Spread::of(&[7.0]).width(), 0.0);
    }

    #[test]
    fn a_difference_is_real_only_beyond_both_spreads() {
        let a = Spread::of(&[100.0, 110.0, 90.0]);
        let same = Spread::of(&[105.0, 95.0, 101.0]);
        let faster = Spread::of(&[200.0, 210.0, 190.0]);
        let wide = Spread::of(&[60.0, 230.0, 150.0]);
        assert_eq!(Verdict::of(&a, 3, &same, 3), Verdict::WithinNoise);
        assert_eq!(Verdict::of(&a, 3, &faster, 3), Verdict::Real);
        // 50 apart, more than a's spread (20) but not more than wide's (170).
        assert_eq!(Verdict::of(&a, 3, &wide, 3), Verdict::WithinNoise);
        assert_eq!(Verdict::of(&a, 3, &faster, 1), Verdict::Unknown);
    }

    #[test]
    fn cells_show_the_spread_only_for_repeated_rows() {
        let s = Spread::of(&[1.0, 2.0, 4.0]);
        assert_eq!(cell(&s, 3, 1), "2.0 (1.0-4.0)");
        assert_eq!(cell(&s, 1, 2), "2.00");
    }
}
