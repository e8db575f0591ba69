//! The Markdown summary of one run (or merge): what was run, the measures, the outcome
//! counts, fairness, markers and checks.

use std::fmt::Write as _;

use super::{Mode, Report, describe_scenario};
use crate::markdown::{self, opt, ratio};

impl Report {
    /// A short Markdown summary of the run.
    pub fn markdown(&self) -> String {
        let s = &self.settings;
        let mut md = String::new();
        let _ = writeln!(md, "# Load test `{}`\n", s.label);
        let _ = writeln!(
            md,
            "{} loop, {} against `{}`, started {} on {}.\n",
            match s.mode {
                Mode::Closed => "Closed",
                Mode::Open => "Open",
            },
            self.shape(),
            s.target,
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
            s.engine.name()
        );
        if !s.dimensions.is_empty() {
            let dims: Vec<String> = s
                .dimensions
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(md, "Stack: {}.\n", dims.join(", "));
        }
        if !self.merged_from.is_empty() {
            let _ = writeln!(
                md,
                "Merged from: {}. Fairness is not merged: each load machine ranks its own \
                 buyers on its own clock, and the clocks of several machines do not agree \
                 (see each part's report).\n",
                self.merged_from.join(", ")
            );
        }
        let rows: Vec<Vec<String>> = self
            .measures()
            .into_iter()
            .map(|(k, v)| vec![k.to_string(), v])
            .collect();
        md.push_str(&markdown::table(&["metric", "value"], rows));
        if !self.store_read {
            let _ = writeln!(
                md,
                "\nThe store was not read (the target has no `/sale`): oversell is unknown."
            );
        }
        let (names, counts): (Vec<&str>, Vec<String>) = self
            .outcomes
            .by_name()
            .into_iter()
            .map(|(name, n)| (name, n.to_string()))
            .unzip();
        md.push('\n');
        md.push_str(&markdown::table(&names, vec![counts]));
        if let Some(f) = &self.fairness {
            let _ = writeln!(
                md,
                "\nFairness ({} buyers, {} winners from the {}): `fcfs_precision` {} (share \
                 of the winners among the first senders; 1 = first come, first served), \
                 `inversions` {} (share of winner-loser pairs where the loser sent first; \
                 0.5 = a lottery), winners' median send rank {}.",
                f.buyers,
                f.winners,
                f.winners_from,
                ratio(f.fcfs_precision),
                ratio(f.inversions),
                opt(&f.winners_median_send_rank),
            );
        }
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

    /// The run's measures as (name, value) rows, as the Markdown and HTML tables show them.
    pub fn measures(&self) -> Vec<(&'static str, String)> {
        let l = &self.latency_ms;
        let mut rows = vec![
            ("route", self.settings.route.clone()),
            ("strategy", opt(&self.settings.strategy)),
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
        if let Some(lag) = &self.send_lag_ms {
            rows.push((
                "sent behind schedule p50 / p99 (ms)",
                format!("{:.3} / {:.3}", lag.p50, lag.p99),
            ));
        }
        if let Some(f) = &self.fairness {
            rows.push(("fcfs_precision", ratio(f.fcfs_precision)));
            rows.push(("inversions", ratio(f.inversions)));
        }
        if let Some(spread) = self.first_send_spread_ms {
            rows.push(("first sends spread (ms)", format!("{spread:.3}")));
        }
        rows
    }

    /// `-c 100 -r 10`-style description of the load.
    pub fn shape(&self) -> String {
        let s = &self.settings;
        let mut out = format!("-c {}", s.concurrency);
        if let Some(r) = s.repetitions {
            let _ = write!(out, " -r {r}");
        }
        if let Some(rate) = s.rate_rps {
            let _ = write!(out, " --rate {rate}");
        }
        if !s.stages.is_empty() {
            let points: Vec<String> = s
                .stages
                .iter()
                .map(|p| format!("{}s:{}", p.t_s, p.rate))
                .collect();
            let _ = write!(out, " --stages {}", points.join(","));
        } else if let Some(d) = s.duration_s {
            let _ = write!(out, " -t {d}s");
        }
        if s.repetitions.is_none() && s.duration_s.is_none() && s.stages.is_empty() {
            let _ = write!(out, " -n {}", self.requests);
        }
        if s.start_together {
            out.push_str(" --start-together");
        }
        out
    }
}
