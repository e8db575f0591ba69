//! One measured step, the same for `run` and for every run of a matrix row: plan the load,
//! connect and warm up, reset the sale, start the clock, measure, wait for the store to
//! settle and read it, build the report, judge the checks.
//!
//! A [`Session`] holds what every step of one command shares: the control client of the
//! target's origin, the metrics scraper and how to wait for the store. A [`Step`] is one
//! run's settings (as the report will show them) and its engine plan, made in one place
//! from the shared options ([`Step::new`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::buyers::Buyer;
use crate::check;
use crate::cli::CommonOpts;
use crate::control::{Control, Sale};
use crate::engine::{self, Counters, Pace, Plan, Stop};
use crate::error::LoadtestError;
use crate::marks::{self, Mark};
use crate::metrics::Scraper;
use crate::progress::Progress;
use crate::report::build::Setup;
use crate::report::{Mode, Report, Settings};
use crate::target::Target;

/// What every step of one command shares.
pub struct Session {
    pub control: Control,
    pub scraper: Scraper,
    interval: Duration,
    max_drain: Duration,
}

impl Session {
    /// A session on `origin`; a wrong `--metrics` URL fails here, before any load.
    pub async fn open(origin: &str, common: &CommonOpts) -> Result<Self, LoadtestError> {
        let timeout = control_timeout(common.timeout_ms);
        let session = Self {
            control: Control::new(origin, timeout)?,
            scraper: Scraper::new(timeout)?,
            interval: Duration::from_millis(common.drain_interval_ms.max(1)),
            max_drain: Duration::from_millis(common.drain_timeout_ms),
        };
        session.scraper.scrape_all(&common.metrics).await?;
        Ok(session)
    }

    /// Waits until the store's order count is stable (work queued behind requests that
    /// timed out has landed); a target without `/sale` or a failed read does not wait.
    pub async fn settle(&self) {
        let _ = self
            .control
            .wait_until_drained(self.interval, self.max_drain)
            .await;
    }

    /// Waits for the store to settle and reads it, with the list of buyers it holds where
    /// the target serves one; a failed read leaves the store unread (with a warning)
    /// rather than losing the run's measurements.
    pub async fn read_store(&self) -> Option<Sale> {
        let read = async {
            let Some(mut sale) = self
                .control
                .wait_until_drained(self.interval, self.max_drain)
                .await?
            else {
                return Ok(None);
            };
            sale.held_users = self.control.read_held_users().await?;
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
}

/// Control calls get at least 10 s: a sale reset on a busy store is not instant.
fn control_timeout(timeout_ms: u64) -> Duration {
    Duration::from_millis(timeout_ms.max(10_000))
}

/// What one step drives.
pub struct Load {
    pub label: String,
    pub route: String,
    pub target: Target,
    /// The target's address, resolved once ([`preflight`]).
    pub addr: SocketAddr,
    pub concurrency: usize,
    pub stop: Stop,
    pub pace: Pace,
    /// The strategy to reset the sale to (with an admin token).
    pub strategy: String,
    pub dimensions: std::collections::BTreeMap<String, String>,
    pub warmup: Option<Duration>,
    /// Keep every answer's order id (for `--buyers-out`).
    pub keep_order_ids: bool,
}

/// One run: its settings as the report shows them, its engine plan, its setup.
pub struct Step {
    pub settings: Settings,
    pub plan: Plan,
    /// Reset the sale to (token, stock, strategy) before the clock starts.
    reset: Option<(String, u64, String)>,
    sold_out_first: bool,
}

impl Step {
    pub fn new(common: &CommonOpts, load: Load) -> Self {
        let reset = common
            .admin_token
            .clone()
            .map(|token| (token, common.stock, load.strategy.clone()));
        let stages = match &load.pace {
            Pace::Stages(stages) => stages.points().to_vec(),
            _ => Vec::new(),
        };
        let settings = Settings {
            label: load.label,
            route: load.route,
            strategy: reset.is_some().then_some(load.strategy),
            target: load.target.url.clone(),
            mode: match load.pace {
                Pace::Closed => Mode::Closed,
                Pace::Rate(_) | Pace::Stages(_) => Mode::Open,
            },
            concurrency: load.concurrency as u64,
            repetitions: match load.stop {
                Stop::Repetitions(r) if stages.is_empty() => Some(r),
                _ => None,
            },
            rate_rps: match load.pace {
                Pace::Rate(rate) => Some(rate),
                _ => None,
            },
            duration_s: match (&load.pace, load.stop) {
                (Pace::Stages(stages), _) => Some(stages.duration().as_secs_f64()),
                (_, Stop::Duration(d)) => Some(d.as_secs_f64()),
                _ => None,
            },
            timeout_ms: common.timeout_ms,
            user_start: load.target.with_user_ids().then_some(common.user_start),
            engine: common.engine,
            dimensions: load.dimensions,
            stages,
            start_together: common.start_together,
        };
        let plan = Plan {
            target: load.target,
            addr: load.addr,
            concurrency: load.concurrency,
            stop: load.stop,
            pace: load.pace,
            timeout: Duration::from_millis(common.timeout_ms),
            user_start: common.user_start,
            warmup: load.warmup,
            start_together: common.start_together,
            threads: common.threads,
            engine: common.engine,
            keep_order_ids: load.keep_order_ids,
        };
        Self {
            settings,
            plan,
            reset,
            sold_out_first: common.sold_out_first,
        }
    }
}

/// A measured step: its report, and its buyers in send order.
pub struct Measured {
    pub report: Report,
    pub buyers: Vec<Buyer>,
}

/// Runs one step. `marks` and `marks_file` place markers on its timeline.
pub async fn run(
    session: &Session,
    common: &CommonOpts,
    step: Step,
    marks: &[Mark],
    marks_file: Option<&Path>,
) -> Result<Measured, LoadtestError> {
    if step.sold_out_first && step.reset.is_none() {
        return Err(LoadtestError::Usage(
            "--sold-out-first resets the sale and sells it out first: pass --admin-token".into(),
        ));
    }
    if step.reset.is_some() {
        // Requests of an earlier run that timed out may still be in a queue: let them land
        // before the reset, or they would count as this run's orders.
        session.settle().await;
    }
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(
        &step.settings.label,
        counters.clone(),
        step.plan.total_requests(),
        common.quiet,
    );
    let mut before = Vec::new();
    let result = engine::run(&step.plan, counters, || async {
        if let Some((token, stock, strategy)) = &step.reset {
            session.control.reset_sale(token, *stock, strategy).await?;
            if step.sold_out_first {
                session.control.sell_out(&step.plan.target).await?;
            }
        }
        before = session.scraper.scrape_all(&common.metrics).await?;
        Ok(())
    })
    .await;
    progress.finish();
    let result = result?;
    let sale = session.read_store().await;
    let setup = Setup {
        reset_stock: step.reset.as_ref().map(|r| r.1),
        sold_out_first: step.sold_out_first,
    };
    let mut report = Report::new(step.settings, setup, &result, sale.as_ref())?;
    report.marks = marks::collect_marks(marks, marks_file, result.started_at, result.elapsed);
    report.server_metrics = session.scraper.deltas(&common.metrics, &before).await;
    report.checks = check::evaluate(&common.checks, &report);
    Ok(Measured {
        report,
        buyers: result.buyers,
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
pub async fn preflight(target: &Target) -> Result<SocketAddr, LoadtestError> {
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
