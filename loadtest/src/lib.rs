//! `loadtest`: the flash-sale service's load generator and report tool.
//!
//! - [`engine`] drives the target: keep-alive HTTP/1.1 connections (the own client of
//!   [`http1`], or hyper), closed or open loop, one HDR histogram and timeline per thread;
//! - [`control`] resets, sells out and reads the sale through the target's origin
//!   (reqwest); [`metrics`] scrapes Prometheus endpoints around a run;
//! - [`report`] turns a run into the JSON and Markdown report; [`check`] judges it
//!   (`--check`); [`timeline`] places markers on it; [`plot`] draws SVGs;
//! - [`compare`], [`merge`], [`matrix`] and [`repeats`] build on reports;
//! - [`cli`] holds the options, and [`execute`] runs one command. `main` only prints and
//!   picks the exit code.

pub mod buyers;
pub mod check;
pub mod cli;
pub mod compare;
pub mod control;
pub mod engine;
pub mod error;
pub mod http1;
pub mod matrix;
pub mod merge;
pub mod metrics;
pub mod outcome;
pub mod plot;
pub mod progress;
pub mod repeats;
pub mod report;
pub mod target;
pub mod timeline;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use error::LoadtestError;

use cli::{Command, CompareOpts, MergeOpts, Opts, RunOpts};
use control::{Control, Sale};
use engine::{Counters, Plan, Stop};
use matrix::MatrixReport;
use progress::Progress;
use report::{Mode, Report, RunInfo};
use target::Target;

/// What a command produced; `Display` is what the binary prints on stdout.
#[derive(Debug)]
pub enum Output {
    Run {
        report: Box<Report>,
        files: Vec<PathBuf>,
    },
    Compare {
        table: String,
        files: Vec<PathBuf>,
    },
    Merge {
        report: Box<Report>,
        files: Vec<PathBuf>,
    },
    Matrix {
        report: Box<MatrixReport>,
        files: Vec<PathBuf>,
    },
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (text, files) = match self {
            Output::Run { report, files } | Output::Merge { report, files } => {
                (report.markdown(), files)
            }
            Output::Compare { table, files } => (table.clone(), files),
            Output::Matrix { report, files } => (report.markdown(), files),
        };
        writeln!(f, "{text}")?;
        for file in files {
            writeln!(f, "wrote {}", file.display())?;
        }
        Ok(())
    }
}

impl Output {
    /// Whether every `--check` passed (true for commands without checks).
    pub fn checks_pass(&self) -> bool {
        match self {
            Output::Run { report, .. } => report.checks_pass(),
            Output::Matrix { report, .. } => report.checks_pass(),
            Output::Compare { .. } | Output::Merge { .. } => true,
        }
    }
}

/// Runs one command.
pub async fn execute(opts: Opts) -> Result<Output, LoadtestError> {
    match opts.command {
        Command::Run(o) => {
            let (report, files) = run(&o).await?;
            Ok(Output::Run {
                report: Box::new(report),
                files,
            })
        }
        Command::Compare(o) => compare(&o),
        Command::Merge(o) => merge(&o),
        Command::Matrix(o) => {
            let (report, files) = matrix::run(&o).await?;
            Ok(Output::Matrix {
                report: Box::new(report),
                files,
            })
        }
    }
}

/// `loadtest run`: reset (with a token), drive, read the store, write the report.
pub async fn run(opts: &RunOpts) -> Result<(Report, Vec<PathBuf>), LoadtestError> {
    if opts.sold_out_first && opts.admin_token.is_none() {
        return Err(LoadtestError::Usage(
            "--sold-out-first resets the sale and sells it out first: pass --admin-token".into(),
        ));
    }
    let target = Target::parse(&opts.url, !opts.no_user_ids)?;
    let stop = match (opts.repetitions, opts.requests, opts.duration) {
        (_, Some(n), _) => Stop::Requests(n),
        (_, _, Some(d)) => Stop::Duration(d),
        (r, None, None) => Stop::Repetitions(r.unwrap_or(10)),
    };
    let route = opts.route.clone().unwrap_or_else(|| target.route_name());
    let label = match &opts.label {
        Some(label) => label.clone(),
        None => {
            let name = route.trim_matches('/').replace('/', "-");
            let name = if name.is_empty() {
                "root"
            } else {
                name.as_str()
            };
            format!("{name}-c{}", opts.concurrency)
        }
    };
    check_label(&label)?;
    report::ensure_writable(&opts.out)?;
    let buyers_file = opts.buyers_out.as_deref().map(buyers::create).transpose()?;
    let addr = preflight(&target).await?;
    let control = Control::new(&target.origin, control_timeout(opts.timeout_ms))?;
    let scraper = metrics::Scraper::new(control_timeout(opts.timeout_ms))?;
    // A wrong --metrics URL fails here, before any load.
    scraper.scrape_all(&opts.metrics).await?;

    let plan = Plan {
        target: target.clone(),
        addr,
        concurrency: opts.concurrency,
        stop,
        rate: opts.rate,
        timeout: Duration::from_millis(opts.timeout_ms),
        user_start: opts.user_start,
        warmup: opts.warmup,
        threads: opts.threads,
        engine: opts.engine,
        keep_order_ids: opts.buyers_out.is_some(),
    };
    let prepare = Prepare {
        control: &control,
        target: &target,
        reset: opts
            .admin_token
            .as_deref()
            .map(|token| (token, opts.stock, opts.strategy.as_str())),
        sold_out_first: opts.sold_out_first,
        scraper: &scraper,
        metrics: &opts.metrics,
    };
    let (result, before) = measure(&plan, &label, opts.quiet, &prepare).await?;

    let sale = read_store(
        &control,
        drain(opts.drain_interval_ms, opts.drain_timeout_ms),
    )
    .await;
    let info = RunInfo {
        label,
        route,
        target: target.url.clone(),
        mode: if opts.rate.is_some() {
            Mode::Open
        } else {
            Mode::Closed
        },
        concurrency: opts.concurrency as u64,
        repetitions: match stop {
            Stop::Repetitions(r) => Some(r),
            _ => None,
        },
        rate_rps: opts.rate,
        duration_s: opts.duration.map(|d| d.as_secs_f64()),
        timeout_ms: opts.timeout_ms,
        user_start: target.with_user_ids().then_some(opts.user_start),
        strategy: opts.admin_token.as_ref().map(|_| opts.strategy.clone()),
        engine: opts.engine,
        sold_out_first: opts.sold_out_first,
        reset_stock: opts.admin_token.as_ref().map(|_| opts.stock),
        dimensions: Default::default(),
    };
    let mut report = Report::new(info, &result, sale.as_ref())?;
    report.marks = timeline::collect_marks(
        &opts.marks,
        opts.marks_file.as_deref(),
        result.started_at,
        result.elapsed,
    );
    report.server_metrics = scraper.deltas(&opts.metrics, &before).await;
    report.checks = check::evaluate(&opts.checks, &report);
    let mut files = report.write(&opts.out)?;
    if let (Some(file), Some(path)) = (buyers_file, &opts.buyers_out) {
        buyers::write(file, path, &result.buyers)?;
        files.push(path.clone());
    }
    let svg = opts.out.join(format!("{}-latency.svg", report.label));
    plot::latency_percentiles(
        &svg,
        &format!("{}: latency by percentile", report.label),
        std::slice::from_ref(&report),
    )?;
    files.push(svg);
    let svg = opts.out.join(format!("{}-timeline.svg", report.label));
    plot::timeline(&svg, &report)?;
    files.push(svg);
    Ok((report, files))
}

/// What happens between connecting and starting the clock.
pub struct Prepare<'a> {
    pub control: &'a Control,
    pub target: &'a Target,
    /// Reset the sale to (token, stock, strategy).
    pub reset: Option<(&'a str, u64, &'a str)>,
    pub sold_out_first: bool,
    pub scraper: &'a metrics::Scraper,
    pub metrics: &'a [String],
}

/// Runs one measured step: connect (and warm up), then reset the sale, sell it out if
/// asked, scrape the metrics endpoints, and start the clock. Returns the result and the
/// before-run scrapes.
pub async fn measure(
    plan: &Plan,
    label: &str,
    quiet: bool,
    prepare: &Prepare<'_>,
) -> Result<(engine::RunResult, Vec<metrics::Scrape>), LoadtestError> {
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(label, counters.clone(), plan.total_requests(), quiet);
    let mut before = Vec::new();
    let result = engine::run(plan, counters, || async {
        if let Some((token, stock, strategy)) = prepare.reset {
            prepare.control.reset_sale(token, stock, strategy).await?;
            if prepare.sold_out_first {
                prepare.control.sell_out(prepare.target).await?;
            }
        }
        before = prepare.scraper.scrape_all(prepare.metrics).await?;
        Ok(())
    })
    .await;
    progress.finish();
    Ok((result?, before))
}

fn compare(opts: &CompareOpts) -> Result<Output, LoadtestError> {
    let loaded = compare::load(&opts.reports)?;
    let table = compare::table(&loaded);
    let mut files = Vec::new();
    if let Some(path) = &opts.markdown {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            LoadtestError::BadOptions(format!("--markdown {} is not a file name", path.display()))
        })?;
        files.push(report::write_file(dir, name, &table)?);
    }
    Ok(Output::Compare { table, files })
}

fn merge(opts: &MergeOpts) -> Result<Output, LoadtestError> {
    check_label(&opts.label)?;
    report::ensure_writable(&opts.out)?;
    let reports = compare::load_reports(&opts.reports)?;
    let merged = merge::merge(&reports, &opts.label)?;
    let files = merged.write(&opts.out)?;
    Ok(Output::Merge {
        report: Box::new(merged),
        files,
    })
}

/// A label names files: keep it to one plain file name.
pub fn check_label(label: &str) -> Result<(), LoadtestError> {
    if label.is_empty() || label.contains(['/', '\\']) || label.starts_with('.') {
        return Err(LoadtestError::BadOptions(format!(
            "--label `{label}` must be a plain file name (no slashes, not starting with a dot)"
        )));
    }
    Ok(())
}

/// Resolves the target and opens one connection, so an unreachable target fails with
/// one clear line before any load is planned.
pub async fn preflight(target: &Target) -> Result<std::net::SocketAddr, LoadtestError> {
    let addr = target.resolve().await?;
    let unreachable = |reason: String| LoadtestError::Unreachable {
        target: target.origin.clone(),
        reason,
    };
    match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(addr),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable("connect timed out after 5 s".into())),
    }
}

/// Control calls get at least 10 s: a sale reset on a busy store is not instant.
pub fn control_timeout(timeout_ms: u64) -> Duration {
    Duration::from_millis(timeout_ms.max(10_000))
}

/// How to wait for the store to settle: read interval and longest wait.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    pub interval: Duration,
    pub max: Duration,
}

pub fn drain(interval_ms: u64, max_ms: u64) -> Drain {
    Drain {
        interval: Duration::from_millis(interval_ms.max(1)),
        max: Duration::from_millis(max_ms),
    }
}

/// Waits for the store to settle and reads it, with the list of buyers it holds where the
/// target serves one; a failed read leaves the store unread (with a warning) rather than
/// losing the run's measurements.
pub async fn read_store(control: &Control, drain: Drain) -> Option<Sale> {
    let read = async {
        let Some(mut sale) = control
            .wait_until_drained(drain.interval, drain.max)
            .await?
        else {
            return Ok(None);
        };
        sale.held_users = control.read_held_users().await?;
        Ok::<_, LoadtestError>(Some(sale))
    };
    match read.await {
        Ok(sale) => sale,
        Err(e) => {
            eprintln!("loadtest: warning: the store was not read: {e}");
            None
        }
    }
}
