//! `loadtest`: the flash-sale service's load generator and report tool.
//!
//! Imports run one way, from the commands down to small leaves:
//! - commands: [`execute`] here; [`matrix::run`]; [`step`] (one measured run, the same
//!   for `run` and every matrix row); [`output`] (which files a report makes);
//! - presentation: [`html`], [`plot`], [`compare`], [`merge`];
//! - reports: [`matrix`] (the combined report), [`repeats`] (rows of repeated runs),
//!   [`check`] (`--check`), [`report`] (the run report: shape, building, Markdown, files),
//!   [`fairness`], [`buyers`];
//! - measuring: [`engine`] (the hot loop: keep-alive HTTP/1.1 connections through the
//!   own client of [`http1`] or hyper, closed or open loop), [`control`] (reset, sell out,
//!   read the sale), [`metrics`] (Prometheus scrapes), [`progress`];
//! - leaves: [`cli`] (the options), [`dimensions`], [`stages`], [`marks`], [`duration`],
//!   [`markdown`], [`target`], [`outcome`], [`error`].
//!
//! `main` only prints and picks the exit code.

pub mod buyers;
pub mod check;
pub mod cli;
pub mod compare;
pub mod control;
pub mod dimensions;
pub mod duration;
pub mod engine;
pub mod error;
pub mod fairness;
pub mod html;
pub mod http1;
pub mod markdown;
pub mod marks;
pub mod matrix;
pub mod merge;
pub mod metrics;
pub mod outcome;
pub mod output;
pub mod plot;
pub mod progress;
pub mod repeats;
pub mod report;
pub mod stages;
pub mod step;
pub mod target;

use std::fmt;
use std::path::PathBuf;

pub use error::LoadtestError;

use cli::{Command, CompareOpts, MergeOpts, Opts, RunOpts};
use engine::{Pace, Stop};
use matrix::MatrixReport;
use report::Report;
use step::{Load, Session, Step};
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
            let report = matrix::run::run(&o).await?;
            let files = output::write_matrix(&o.common.out, &report)?;
            Ok(Output::Matrix {
                report: Box::new(report),
                files,
            })
        }
    }
}

/// `loadtest run`: reset (with a token), drive, read the store, write the report (and the
/// buyers file).
pub async fn run(opts: &RunOpts) -> Result<(Report, Vec<PathBuf>), LoadtestError> {
    let common = &opts.common;
    if common.sold_out_first && common.admin_token.is_none() {
        return Err(LoadtestError::Usage(
            "--sold-out-first resets the sale and sells it out first: pass --admin-token".into(),
        ));
    }
    let target = Target::parse(&opts.url, !opts.no_user_ids)?;
    let (stop, pace) = match &opts.stages {
        Some(stages) => (Stop::Requests(stages.total()), Pace::Stages(stages.clone())),
        None => {
            let stop = match (opts.repetitions, opts.requests, opts.duration) {
                (_, Some(n), _) => Stop::Requests(n),
                (_, _, Some(d)) => Stop::Duration(d),
                (r, None, None) => Stop::Repetitions(r.unwrap_or(10)),
            };
            (stop, opts.rate.map_or(Pace::Closed, Pace::Rate))
        }
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
    step::check_label(&label)?;
    report::files::ensure_writable(&common.out)?;
    let buyers_file = opts.buyers_out.as_deref().map(buyers::create).transpose()?;
    let addr = step::preflight(&target).await?;
    let session = Session::open(&target.origin, common).await?;
    let load = Load {
        label,
        route,
        target,
        addr,
        concurrency: opts.concurrency,
        stop,
        pace,
        strategy: opts.strategy.clone(),
        dimensions: Default::default(),
        warmup: opts.warmup,
        keep_order_ids: opts.buyers_out.is_some(),
    };
    let measured = step::run(
        &session,
        common,
        Step::new(common, load),
        &opts.marks,
        opts.marks_file.as_deref(),
    )
    .await?;
    let mut files = output::write_run(&common.out, &measured.report)?;
    if let (Some(file), Some(path)) = (buyers_file, &opts.buyers_out) {
        buyers::write(file, path, &measured.buyers)?;
        files.push(path.clone());
    }
    Ok((measured.report, files))
}

fn compare(opts: &CompareOpts) -> Result<Output, LoadtestError> {
    let loaded = compare::load(&opts.reports)?;
    let table = compare::table(&loaded);
    let mut files = Vec::new();
    if let Some(path) = &opts.markdown {
        files.push(output::write_path(path, "--markdown", &table)?);
    }
    if let Some(path) = &opts.html {
        let [a, b] = opts.reports.as_slice() else {
            return Err(LoadtestError::Usage(format!(
                "compare --html shows two reports side by side; {} were given",
                opts.reports.len()
            )));
        };
        let (a, b) = (compare::read(a)?, compare::read(b)?);
        let page = output::compare_html([&a, &b], &loaded)?;
        files.push(output::write_path(path, "--html", &page)?);
    }
    Ok(Output::Compare { table, files })
}

fn merge(opts: &MergeOpts) -> Result<Output, LoadtestError> {
    step::check_label(&opts.label)?;
    report::files::ensure_writable(&opts.out)?;
    let reports = compare::load_reports(&opts.reports)?;
    let merged = merge::merge(&reports, &opts.label)?;
    let files = output::write_run(&opts.out, &merged)?;
    Ok(Output::Merge {
        report: Box::new(merged),
        files,
    })
}
