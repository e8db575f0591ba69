//! `loadtest matrix`: the original experiment in one command, and the stack's settings as
//! further dimensions. This module holds the combined report (its shape and its Markdown);
//! [`run`] runs the matrix.
//!
//! The report: JSON (every run's full report, histograms included, and per row the median
//! and min-max spread), and a Markdown table shaped like the original's with a column per
//! dimension in use.

pub mod run;

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::markdown::{self, opt};
use crate::repeats::{self, Row, Spread, cell};
use crate::report::{Machine, Report, describe_scenario};

/// The combined report of a matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixReport {
    pub schema_version: u32,
    pub label: String,
    pub target: String,
    pub stock: u64,
    /// Requests per client of every run (`-r`); null when the runs were timed (`-t`).
    pub repetitions: Option<u64>,
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// Runs per row (`--repeat`).
    #[serde(default = "one")]
    pub repeat: u32,
    /// The stack dimensions in use, in column order (`batch`, `gate`, `workers`,
    /// `queue_type`, `store`).
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// The `--skip` rules that left rows out.
    #[serde(default)]
    pub skipped: Vec<String>,
    /// Whether every run opened the sale at once (`--start-together`).
    #[serde(default)]
    pub start_together: bool,
    pub started_at: String,
    pub machine: Machine,
    /// Every run, in the order run.
    pub steps: Vec<Report>,
    /// Per row (dimensions, strategy, route, concurrency): its runs summed up.
    #[serde(default)]
    pub rows: Vec<Row>,
}

fn one() -> u32 {
    1
}

/// A row's label: its runs' label without the `-runK` suffix.
pub fn row_label(run_label: &str, repeat: u32) -> String {
    if repeat > 1
        && let Some((row, k)) = run_label.rsplit_once("-run")
        && k.parse::<u32>().is_ok()
    {
        return row.to_string();
    }
    run_label.to_string()
}

/// How a route is called in tables and plots.
pub fn route_title(route: &str) -> &str {
    match route {
        "http" => "HTTP",
        "mq" => "RabbitMQ RPC",
        other => other,
    }
}

/// A row's fairness cell: the median (min-max) of the runs that measured it.
pub fn fairness_cell(s: &Option<Spread>, runs: u32) -> String {
    s.as_ref()
        .map_or_else(|| "n/a".into(), |s| cell(s, runs, 2))
}

impl MatrixReport {
    /// The rows, computed from the steps for reports written before rows were stored.
    pub fn rows(&self) -> Vec<Row> {
        if self.rows.is_empty() {
            repeats::rows(&self.steps, |r| row_label(r.label(), self.repeat))
        } else {
            self.rows.clone()
        }
    }

    /// Whether every check of every run passed (true without checks).
    pub fn checks_pass(&self) -> bool {
        self.steps.iter().all(Report::checks_pass)
    }

    /// The table's columns and rows, as the Markdown and HTML show them.
    pub fn table(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let rows = self.rows();
        let any_checks = self.steps.iter().any(|s| !s.checks.is_empty());
        let any_fairness = rows.iter().any(|r| r.fcfs_precision.is_some());
        let mut headers: Vec<String> = self.dimensions.clone();
        headers.extend(
            [
                "route",
                "strategy",
                "c",
                "trans/sec",
                "longest (s)",
                "p50 (ms)",
                "p99 (ms)",
                &format!("orders in DB (stock {})", self.stock),
                "oversold",
                "lost",
                "errors",
            ]
            .map(String::from),
        );
        if any_fairness {
            headers.extend(["fcfs_precision", "inversions"].map(String::from));
        }
        if any_checks {
            headers.push("checks".into());
        }
        let cells = rows
            .iter()
            .map(|r| {
                let mut cells: Vec<String> = self
                    .dimensions
                    .iter()
                    .map(|d| r.dimensions.get(d).cloned().unwrap_or_default())
                    .collect();
                let max_s = Spread {
                    median: r.max_ms.median / 1000.0,
                    min: r.max_ms.min / 1000.0,
                    max: r.max_ms.max / 1000.0,
                };
                cells.extend([
                    route_title(&r.route).to_string(),
                    opt(&r.strategy),
                    r.concurrency.to_string(),
                    cell(&r.throughput_rps, r.runs, 2),
                    cell(&max_s, r.runs, 3),
                    cell(&r.p50_ms, r.runs, 2),
                    cell(&r.p99_ms, r.runs, 2),
                    cell(&r.orders_in_store, r.runs, 0),
                    opt(&r.oversold),
                    match (r.lost_orders, r.lost_orders_exact) {
                        (Some(lost), false) => format!(">= {lost}"),
                        (lost, _) => opt(&lost),
                    },
                    cell(&r.errors, r.runs, 0),
                ]);
                if any_fairness {
                    cells.push(fairness_cell(&r.fcfs_precision, r.runs));
                    cells.push(fairness_cell(&r.inversions, r.runs));
                }
                if any_checks {
                    cells.push(if r.checks_pass { "pass" } else { "FAIL" }.into());
                }
                cells
            })
            .collect();
        (headers, cells)
    }

    /// What was run, in sentences (the Markdown's and HTML's introduction).
    pub fn introduction(&self) -> Vec<String> {
        let load = match (self.repetitions, self.duration_s) {
            (Some(r), _) => format!("-r {r} per client"),
            (None, Some(d)) => format!("-t {d}s per row"),
            (None, None) => "?".into(),
        };
        let mut lines = vec![format!(
            "Target `{}`, started {} on {}. Closed loop, {load}, stock {}, every request a \
             distinct buyer; the sale is reset before each run.",
            self.target,
            self.started_at,
            self.machine.describe(),
            self.stock
        )];
        if self.start_together {
            lines.push(
                "Every run opened the sale at once (`--start-together`): every connection \
                 warm before the clock started, every client's first buy released together."
                    .into(),
            );
        }
        let rows = self.rows();
        let mut scenarios: Vec<&str> = rows.iter().map(|r| r.scenario.as_str()).collect();
        scenarios.sort_unstable();
        scenarios.dedup();
        for s in scenarios {
            lines.push(format!("Scenario `{s}`: {}.", describe_scenario(s)));
        }
        if self.repeat > 1 {
            lines.push(format!(
                "Every row ran {} times (interleaved with the other rows); each cell is the \
                 median (min-max).",
                self.repeat
            ));
        }
        for skip in &self.skipped {
            lines.push(format!("Rows matching `{skip}` were skipped (`--skip`)."));
        }
        lines
    }

    /// The table shaped like the original experiment's, plus p50/p99, oversold, lost and
    /// fairness; a column per stack dimension in use; with repeats, each measure as median
    /// (min-max).
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Flash-sale matrix `{}`\n", self.label);
        for line in self.introduction() {
            let _ = writeln!(md, "{line}\n");
        }
        let (headers, rows) = self.table();
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        md.push_str(&markdown::table(&headers, rows));
        let _ = writeln!(
            md,
            "\n`lost`: buyers answered `ordered` whose order the store does not hold, checked \
             buyer by buyer against `/sale/orders` (`>= n` where the target only gave counts). \
             With repeats, `oversold` and `lost` are the worst run's."
        );
        if headers.contains(&"fcfs_precision") {
            let _ = writeln!(
                md,
                "\n`fcfs_precision`: the share of the winners among the buyers who sent first \
                 (1 = first come, first served); `inversions`: the share of winner-loser pairs \
                 in which the loser sent first (0.5 = a lottery). Send order is the load \
                 generator's clock, not the server's arrival order."
            );
        }
        if self.steps.iter().any(|s| !s.checks.is_empty()) {
            let _ = writeln!(md, "\nChecks, per run:\n");
            for s in &self.steps {
                for c in &s.checks {
                    let _ = writeln!(md, "- {}: {c}", s.label());
                }
            }
        }
        let _ = writeln!(
            md,
            "\n![throughput]({0}-throughput.svg)\n\n![latency percentiles]({0}-latency.svg)",
            self.label
        );
        if headers.contains(&"fcfs_precision") {
            let _ = writeln!(md, "\n![fairness]({}-fairness.svg)", self.label);
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_label_drops_the_run_suffix() {
        assert_eq!(
            row_label("m-conditional-http-c100-run2", 3),
            "m-conditional-http-c100"
        );
        assert_eq!(
            row_label("m-conditional-http-c100", 1),
            "m-conditional-http-c100"
        );
    }
}
