//! `loadtest matrix`: the original experiment in one command.
//!
//! For each strategy x route x concurrency: wait until the previous step's work has
//! drained (the sale's order count is stable), connect the clients, reset the sale
//! (stock, strategy), run a closed loop of `-r` requests per client with distinct buyers,
//! wait for the store to settle, read `/sale`. One combined report: JSON (every step's
//! full run report, histograms included), a Markdown table shaped like the original's,
//! and SVG plots.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::MatrixOpts;
use crate::compare::markdown_table;
use crate::control::Control;
use crate::engine::{self, Counters, Plan, Stop};
use crate::error::LoadtestError;
use crate::progress::Progress;
use crate::report::{self, Machine, Mode, Report, RunInfo, opt};
use crate::target::Target;
use crate::{control_timeout, preflight, read_store};

/// The combined report of a matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixReport {
    pub schema_version: u32,
    pub label: String,
    pub target: String,
    pub stock: u64,
    pub repetitions: u64,
    pub started_at: String,
    pub machine: Machine,
    pub steps: Vec<Report>,
}

/// The buy URL of a route at an origin.
pub fn route_url(origin: &str, route: &str) -> Result<String, LoadtestError> {
    match route {
        "http" | "mq" => Ok(format!("{origin}/{route}/buy")),
        "default" => Ok(format!("{origin}/buy")),
        other => Err(LoadtestError::BadOptions(format!(
            "unknown route `{other}` in --routes; use http, mq or default"
        ))),
    }
}

/// Runs the matrix and writes `<out>/<label>.json`, `.md`, `-throughput.svg` and
/// `-latency.svg`.
pub async fn run(opts: &MatrixOpts) -> Result<(MatrixReport, Vec<PathBuf>), LoadtestError> {
    let token = opts.admin_token.as_deref().ok_or_else(|| {
        LoadtestError::BadOptions(
            "matrix resets the sale before every step: pass --admin-token or set FLASHSALE_ADMIN_TOKEN".into(),
        )
    })?;
    crate::check_label(&opts.label)?;
    if opts.concurrency.is_empty() || opts.concurrency.contains(&0) {
        return Err(LoadtestError::BadOptions(
            "--concurrency needs levels of at least 1".into(),
        ));
    }
    let origin = Target::parse(&opts.target, false)?.origin;
    let urls = opts
        .routes
        .iter()
        .map(|r| Ok((r.clone(), Target::parse(&route_url(&origin, r)?, true)?)))
        .collect::<Result<Vec<_>, LoadtestError>>()?;
    report::ensure_writable(&opts.out)?;
    let addr = preflight(&urls[0].1).await?;
    let control = Control::new(&origin, control_timeout(opts.timeout_ms))?;
    let drain = crate::drain(opts.drain_interval_ms, opts.drain_timeout_ms);
    let started_at = report::rfc3339(std::time::SystemTime::now());

    let mut steps = Vec::new();
    for strategy in &opts.strategies {
        for (route, target) in &urls {
            for &c in &opts.concurrency {
                let label = format!("{}-{strategy}-{route}-c{c}", opts.label);
                // Requests that timed out may still be in a queue: let them land before
                // the reset, or they would count as the next step's orders.
                read_store(&control, drain).await;
                let plan = Plan {
                    target: target.clone(),
                    addr,
                    concurrency: c,
                    stop: Stop::Repetitions(opts.repetitions),
                    rate: None,
                    timeout: Duration::from_millis(opts.timeout_ms),
                    user_start: opts.user_start,
                    warmup: None,
                    threads: opts.threads,
                    engine: opts.engine,
                };
                let counters = Arc::new(Counters::default());
                let progress =
                    Progress::start(&label, counters.clone(), plan.total_requests(), opts.quiet);
                let result = engine::run(&plan, counters, || {
                    control.reset_sale(token, opts.stock, strategy)
                })
                .await;
                progress.finish();
                let result = result?;
                let sale = read_store(&control, drain).await;
                let info = RunInfo {
                    label,
                    route: route.clone(),
                    target: target.url.clone(),
                    mode: Mode::Closed,
                    concurrency: c as u64,
                    repetitions: Some(opts.repetitions),
                    rate_rps: None,
                    duration_s: None,
                    timeout_ms: opts.timeout_ms,
                    user_start: Some(opts.user_start),
                    strategy: Some(strategy.clone()),
                    engine: opts.engine,
                };
                let step = Report::new(info, &result, sale.as_ref())?;
                if !opts.quiet {
                    eprintln!(
                        "loadtest: {}: {:.2} trans/sec, longest {:.3} s, orders {} (stock {}), errors {}",
                        step.label,
                        step.throughput_rps,
                        step.latency_ms.max / 1000.0,
                        opt(&step.orders_in_store),
                        opts.stock,
                        step.errors
                    );
                }
                steps.push(step);
            }
        }
    }

    let matrix = MatrixReport {
        schema_version: report::SCHEMA_VERSION,
        label: opts.label.clone(),
        target: origin,
        stock: opts.stock,
        repetitions: opts.repetitions,
        started_at,
        machine: Machine::this(),
        steps,
    };
    let files = matrix.write(&opts.out)?;
    Ok((matrix, files))
}

impl MatrixReport {
    /// Writes the JSON, the Markdown and both plots; returns their paths.
    pub fn write(&self, dir: &std::path::Path) -> Result<Vec<PathBuf>, LoadtestError> {
        let json = serde_json::to_string_pretty(self).expect("a report always serializes");
        let mut files = vec![
            report::write_file(dir, &format!("{}.json", self.label), &json)?,
            report::write_file(dir, &format!("{}.md", self.label), &self.markdown())?,
        ];
        let throughput = dir.join(format!("{}-throughput.svg", self.label));
        crate::plot::throughput(
            &throughput,
            "Throughput by route and concurrency",
            &self.steps,
        )?;
        let latency = dir.join(format!("{}-latency.svg", self.label));
        crate::plot::latency_percentiles(&latency, "Latency by percentile, per run", &self.steps)?;
        files.extend([throughput, latency]);
        Ok(files)
    }

    /// The table shaped like the original experiment's, plus p50/p99, oversold and lost.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Flash-sale matrix `{}`\n", self.label);
        let _ = writeln!(
            md,
            "Target `{}`, started {} on {}. Closed loop, -r {} per client, stock {}, \
             every request a distinct buyer; the sale is reset before each row.\n",
            self.target,
            self.started_at,
            self.machine.describe(),
            self.repetitions,
            self.stock
        );
        let headers = [
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
        ];
        let rows = self
            .steps
            .iter()
            .map(|s| {
                vec![
                    route_title(&s.route).to_string(),
                    opt(&s.strategy),
                    s.concurrency.to_string(),
                    format!("{:.2}", s.throughput_rps),
                    format!("{:.3}", s.latency_ms.max / 1000.0),
                    format!("{:.2}", s.latency_ms.p50),
                    format!("{:.2}", s.latency_ms.p99),
                    opt(&s.orders_in_store),
                    opt(&s.oversold),
                    match (s.lost_orders, s.lost_orders_exact) {
                        (Some(lost), false) => format!(">= {lost}"),
                        (lost, _) => opt(&lost),
                    },
                    s.errors.to_string(),
                ]
            })
            .collect();
        md.push_str(&markdown_table(&headers, rows));
        let _ = writeln!(
            md,
            "\n`lost`: buyers answered `ordered` whose order the store does not hold, checked \
             buyer by buyer against `/sale/orders` (`>= n` where the target only gave counts)."
        );
        let _ = writeln!(
            md,
            "\n![throughput]({0}-throughput.svg)\n\n![latency percentiles]({0}-latency.svg)",
            self.label
        );
        md
    }
}

fn route_title(route: &str) -> &str {
    match route {
        "http" => "HTTP",
        "mq" => "RabbitMQ RPC",
        other => other,
    }
}
