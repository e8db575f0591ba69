//! `loadtest matrix`: the original experiment in one command, and the stack's settings as
//! further dimensions.
//!
//! For each combination of the stack dimensions in use (`--batch`, `--gate`, `--workers`,
//! `--queue-type`): run `--reconfigure` with the combination in its environment and wait
//! for `TARGET/healthz`; then, `--repeat` times, for each strategy x route x concurrency:
//! wait until the previous step's work has drained (the sale's order count is stable),
//! connect the clients, reset the sale (stock, strategy; with `--sold-out-first`, sell it
//! out), run a closed loop (`-r` requests per client, or `-t`) with distinct buyers, wait
//! for the store to settle, read `/sale`, evaluate the checks. The repeats of one row are
//! interleaved with the other rows, so slow drifts of a busy machine spread over all rows
//! rather than landing on one. One combined report: JSON (every run's full report,
//! histograms included, and per row the median and min-max spread), a Markdown table
//! shaped like the original's with a column per dimension in use, and SVG plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cli::MatrixOpts;
use crate::compare::markdown_table;
use crate::control::Control;
use crate::engine::{Plan, Stop};
use crate::error::LoadtestError;
use crate::metrics::Scraper;
use crate::repeats::{self, Row, cell};
use crate::report::{self, Machine, Mode, Report, RunInfo, describe_scenario, opt};
use crate::target::Target;
use crate::{Prepare, check, control_timeout, measure, preflight, read_store};

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
    /// `queue_type`).
    #[serde(default)]
    pub dimensions: Vec<String>,
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

/// A stack dimension: its report name, its option, the variable `--reconfigure` gets.
struct Dimension {
    name: &'static str,
    option: &'static str,
    env: &'static str,
}

const DIMENSIONS: [Dimension; 4] = [
    Dimension {
        name: "batch",
        option: "--batch",
        env: "FLASHSALE_BATCH",
    },
    Dimension {
        name: "gate",
        option: "--gate",
        env: "FLASHSALE_SOLD_OUT_GATE",
    },
    Dimension {
        name: "workers",
        option: "--workers",
        env: "FLASHSALE_WORKERS",
    },
    Dimension {
        name: "queue_type",
        option: "--queue-type",
        env: "FLASHSALE_QUEUE_TYPE",
    },
];

/// Short label parts, so row labels stay readable: `b64-gon-w2-quorum`.
fn label_part(name: &str, value: &str) -> String {
    match name {
        "batch" => format!("b{value}"),
        "gate" => format!("g{value}"),
        "workers" => format!("w{value}"),
        _ => value.to_string(),
    }
}

fn validate_dimension(d: &Dimension, values: &[String]) -> Result<(), LoadtestError> {
    for v in values {
        let ok = match d.name {
            "batch" | "workers" => v.parse::<u32>().is_ok_and(|n| n > 0),
            "gate" => matches!(v.as_str(), "on" | "off"),
            _ => matches!(v.as_str(), "classic" | "quorum"),
        };
        if !ok {
            let expected = match d.name {
                "batch" | "workers" => "positive integers",
                "gate" => "on or off",
                _ => "classic or quorum",
            };
            return Err(LoadtestError::Usage(format!(
                "{} takes {expected}, not `{v}`",
                d.option
            )));
        }
    }
    Ok(())
}

/// Every combination of the stack dimensions in use, first dimension outermost.
fn combinations(opts: &MatrixOpts) -> Result<Vec<BTreeMap<String, String>>, LoadtestError> {
    let lists = [&opts.batch, &opts.gate, &opts.workers, &opts.queue_type];
    let mut combos = vec![BTreeMap::new()];
    for (d, values) in DIMENSIONS.iter().zip(lists) {
        if values.is_empty() {
            continue;
        }
        validate_dimension(d, values)?;
        let mut distinct = values.clone();
        distinct.dedup();
        if distinct.len() > 1 && opts.reconfigure.is_none() {
            return Err(LoadtestError::Usage(format!(
                "{} has {} values, but the load tester cannot change the stack by itself: \
                 pass --reconfigure CMD (run before each combination with {} set), or give one value",
                d.option,
                distinct.len(),
                d.env
            )));
        }
        combos = combos
            .into_iter()
            .flat_map(|combo| {
                distinct.iter().map(move |v| {
                    let mut c = combo.clone();
                    c.insert(d.name.to_string(), v.clone());
                    c
                })
            })
            .collect();
    }
    Ok(combos)
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

/// Runs `--reconfigure` for one combination, then waits for the target to be healthy.
async fn reconfigure(
    command: &str,
    combo: &BTreeMap<String, String>,
    control: &Control,
    ready_timeout: Duration,
) -> Result<(), LoadtestError> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(command);
    for d in &DIMENSIONS {
        match combo.get(d.name) {
            Some(v) => cmd.env(d.env, v),
            None => cmd.env_remove(d.env),
        };
    }
    // The command's output goes to stderr: stdout carries the report.
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let status = cmd
        .stdout(stdout)
        .stdin(Stdio::null())
        .status()
        .await
        .map_err(|e| LoadtestError::Reconfigure(format!("cannot run `sh -c {command}`: {e}")))?;
    if !status.success() {
        return Err(LoadtestError::Reconfigure(format!(
            "`{command}` exited with {status} for {}; the matrix stops here",
            describe_combo(combo)
        )));
    }
    let deadline = Instant::now() + ready_timeout;
    let url = format!("{}/healthz", control.origin());
    loop {
        if control.healthy().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LoadtestError::Reconfigure(format!(
                "{url} did not answer 200 within {} s after `{command}` ({})",
                ready_timeout.as_secs(),
                describe_combo(combo)
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn describe_combo(combo: &BTreeMap<String, String>) -> String {
    if combo.is_empty() {
        return "the stack as it is".into();
    }
    combo
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
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
    if opts.repeat == 0 {
        return Err(LoadtestError::Usage("--repeat must be at least 1".into()));
    }
    let combos = combinations(opts)?;
    let dimensions: Vec<String> = combos
        .first()
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default();
    let dimension_order: Vec<String> = DIMENSIONS
        .iter()
        .map(|d| d.name.to_string())
        .filter(|n| dimensions.contains(n))
        .collect();
    let origin = Target::parse(&opts.target, false)?.origin;
    let urls = opts
        .routes
        .iter()
        .map(|r| Ok((r.clone(), Target::parse(&route_url(&origin, r)?, true)?)))
        .collect::<Result<Vec<_>, LoadtestError>>()?;
    report::ensure_writable(&opts.out)?;
    let control = Control::new(&origin, control_timeout(opts.timeout_ms))?;
    let scraper = Scraper::new(control_timeout(opts.timeout_ms))?;
    let drain = crate::drain(opts.drain_interval_ms, opts.drain_timeout_ms);
    let started_at = report::rfc3339(std::time::SystemTime::now());
    let stop = match opts.duration {
        Some(d) => Stop::Duration(d),
        None => Stop::Repetitions(opts.repetitions.unwrap_or(10)),
    };

    let mut steps = Vec::new();
    for combo in &combos {
        if let Some(command) = &opts.reconfigure {
            if !opts.quiet {
                eprintln!("loadtest: reconfiguring for {}", describe_combo(combo));
            }
            reconfigure(
                command,
                combo,
                &control,
                Duration::from_secs(opts.ready_timeout_s),
            )
            .await?;
        }
        let addr = preflight(&urls[0].1).await?;
        // A wrong --metrics URL fails here, before this combination's load.
        scraper.scrape_all(&opts.metrics).await?;
        let dims_label: String = dimension_order
            .iter()
            .map(|n| format!("-{}", label_part(n, &combo[n])))
            .collect();
        for k in 0..opts.repeat {
            for strategy in &opts.strategies {
                for (route, target) in &urls {
                    for &c in &opts.concurrency {
                        let mut label =
                            format!("{}{dims_label}-{strategy}-{route}-c{c}", opts.label);
                        if opts.repeat > 1 {
                            let _ = write!(label, "-run{}", k + 1);
                        }
                        // Requests that timed out may still be in a queue: let them land
                        // before the reset, or they would count as the next step's orders.
                        read_store(&control, drain).await;
                        let plan = Plan {
                            target: target.clone(),
                            addr,
                            concurrency: c,
                            stop,
                            rate: None,
                            timeout: Duration::from_millis(opts.timeout_ms),
                            user_start: opts.user_start,
                            warmup: None,
                            threads: opts.threads,
                            engine: opts.engine,
                            keep_order_ids: false,
                        };
                        let prepare = Prepare {
                            control: &control,
                            target,
                            reset: Some((token, opts.stock, strategy.as_str())),
                            sold_out_first: opts.sold_out_first,
                            scraper: &scraper,
                            metrics: &opts.metrics,
                        };
                        let (result, before) = measure(&plan, &label, opts.quiet, &prepare).await?;
                        let sale = read_store(&control, drain).await;
                        let info = RunInfo {
                            label,
                            route: route.clone(),
                            target: target.url.clone(),
                            mode: Mode::Closed,
                            concurrency: c as u64,
                            repetitions: match stop {
                                Stop::Repetitions(r) => Some(r),
                                _ => None,
                            },
                            rate_rps: None,
                            duration_s: opts.duration.map(|d| d.as_secs_f64()),
                            timeout_ms: opts.timeout_ms,
                            user_start: Some(opts.user_start),
                            strategy: Some(strategy.clone()),
                            engine: opts.engine,
                            sold_out_first: opts.sold_out_first,
                            reset_stock: Some(opts.stock),
                            dimensions: combo.clone(),
                        };
                        let mut step = Report::new(info, &result, sale.as_ref())?;
                        step.server_metrics = scraper.deltas(&opts.metrics, &before).await;
                        step.checks = check::evaluate(&opts.checks, &step);
                        if !opts.quiet {
                            eprintln!(
                                "loadtest: {}: {:.2} trans/sec, longest {:.3} s, orders {} (stock {}), errors {}{}",
                                step.label,
                                step.throughput_rps,
                                step.latency_ms.max / 1000.0,
                                opt(&step.orders_in_store),
                                opts.stock,
                                step.errors,
                                if step.checks_pass() {
                                    ""
                                } else {
                                    ", a check FAILED"
                                }
                            );
                        }
                        steps.push(step);
                    }
                }
            }
        }
    }

    let rows = repeats::rows(&steps, |r| row_label(&r.label, opts.repeat));
    let matrix = MatrixReport {
        schema_version: report::SCHEMA_VERSION,
        label: opts.label.clone(),
        target: origin,
        stock: opts.stock,
        repetitions: match stop {
            Stop::Repetitions(r) => Some(r),
            _ => None,
        },
        duration_s: opts.duration.map(|d| d.as_secs_f64()),
        repeat: opts.repeat,
        dimensions: dimension_order,
        started_at,
        machine: Machine::this(),
        steps,
        rows,
    };
    let files = matrix.write(&opts.out)?;
    Ok((matrix, files))
}

/// A row's label: its runs' label without the `-runK` suffix.
fn row_label(run_label: &str, repeat: u32) -> String {
    if repeat > 1
        && let Some((row, k)) = run_label.rsplit_once("-run")
        && k.parse::<u32>().is_ok()
    {
        return row.to_string();
    }
    run_label.to_string()
}

impl MatrixReport {
    /// The rows, computed from the steps for reports written before rows were stored.
    pub fn rows(&self) -> Vec<Row> {
        if self.rows.is_empty() {
            repeats::rows(&self.steps, |r| row_label(&r.label, self.repeat))
        } else {
            self.rows.clone()
        }
    }

    /// Whether every check of every run passed (true without checks).
    pub fn checks_pass(&self) -> bool {
        self.steps.iter().all(Report::checks_pass)
    }

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
            &self.rows(),
        )?;
        let latency = dir.join(format!("{}-latency.svg", self.label));
        crate::plot::latency_panels(&latency, "Latency by percentile", &self.steps, self.repeat)?;
        files.extend([throughput, latency]);
        Ok(files)
    }

    /// The table shaped like the original experiment's, plus p50/p99, oversold and lost;
    /// a column per stack dimension in use; with repeats, each measure as median
    /// (min-max).
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Flash-sale matrix `{}`\n", self.label);
        let load = match (self.repetitions, self.duration_s) {
            (Some(r), _) => format!("-r {r} per client"),
            (None, Some(d)) => format!("-t {d}s per row"),
            (None, None) => "?".into(),
        };
        let _ = writeln!(
            md,
            "Target `{}`, started {} on {}. Closed loop, {load}, stock {}, every request a \
             distinct buyer; the sale is reset before each run.\n",
            self.target,
            self.started_at,
            self.machine.describe(),
            self.stock
        );
        let rows = self.rows();
        let mut scenarios: Vec<&str> = rows.iter().map(|r| r.scenario.as_str()).collect();
        scenarios.sort_unstable();
        scenarios.dedup();
        for s in scenarios {
            let _ = writeln!(md, "Scenario `{s}`: {}.\n", describe_scenario(s));
        }
        if self.repeat > 1 {
            let _ = writeln!(
                md,
                "Every row ran {} times (interleaved with the other rows); each cell is the \
                 median (min-max).\n",
                self.repeat
            );
        }
        let stock_header = format!("orders in DB (stock {})", self.stock);
        let mut headers: Vec<&str> = self.dimensions.iter().map(String::as_str).collect();
        headers.extend([
            "route",
            "strategy",
            "c",
            "trans/sec",
            "longest (s)",
            "p50 (ms)",
            "p99 (ms)",
            &stock_header,
            "oversold",
            "lost",
            "errors",
        ]);
        let any_checks = self.steps.iter().any(|s| !s.checks.is_empty());
        if any_checks {
            headers.push("checks");
        }
        let table_rows = rows
            .iter()
            .map(|r| {
                let mut cells: Vec<String> = self
                    .dimensions
                    .iter()
                    .map(|d| r.dimensions.get(d).cloned().unwrap_or_default())
                    .collect();
                let max_s = repeats::Spread {
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
                if any_checks {
                    cells.push(if r.checks_pass { "pass" } else { "FAIL" }.into());
                }
                cells
            })
            .collect();
        md.push_str(&markdown_table(&headers, table_rows));
        let _ = writeln!(
            md,
            "\n`lost`: buyers answered `ordered` whose order the store does not hold, checked \
             buyer by buyer against `/sale/orders` (`>= n` where the target only gave counts). \
             With repeats, `oversold` and `lost` are the worst run's."
        );
        if any_checks {
            let _ = writeln!(md, "\nChecks, per run:\n");
            for s in &self.steps {
                for c in &s.checks {
                    let _ = writeln!(md, "- {}: {c}", s.label);
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn matrix_opts(args: &[&str]) -> MatrixOpts {
        let argv = ["loadtest", "matrix", "http://h:1"].iter().chain(args);
        match crate::cli::Opts::parse_from(argv).command {
            crate::cli::Command::Matrix(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn stack_dimensions_combine_first_outermost_and_only_when_given() {
        let combos = combinations(&matrix_opts(&[
            "--batch",
            "1,64",
            "--gate",
            "off,on",
            "--reconfigure",
            "true",
        ]))
        .unwrap();
        let seen: Vec<String> = combos.iter().map(describe_combo).collect();
        assert_eq!(
            seen,
            [
                "batch=1, gate=off",
                "batch=1, gate=on",
                "batch=64, gate=off",
                "batch=64, gate=on"
            ]
        );
        assert_eq!(
            combinations(&matrix_opts(&[])).unwrap(),
            vec![BTreeMap::new()]
        );
    }

    #[test]
    fn several_values_of_a_stack_dimension_need_reconfigure() {
        let err = combinations(&matrix_opts(&["--workers", "1,2,4"])).unwrap_err();
        assert!(matches!(err, LoadtestError::Usage(_)), "{err}");
        assert!(err.to_string().contains("--reconfigure"), "{err}");
        // One value describes the stack as it is: no reconfigure needed.
        assert_eq!(
            combinations(&matrix_opts(&["--workers", "2"]))
                .unwrap()
                .len(),
            1
        );
        let bad = combinations(&matrix_opts(&["--gate", "maybe"])).unwrap_err();
        assert!(bad.to_string().contains("on or off"), "{bad}");
    }

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
