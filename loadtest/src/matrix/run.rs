//! Running a matrix.
//!
//! For each combination of the stack dimensions in use (`--batch`, `--gate`, `--workers`,
//! `--queue-type`, `--store`) that has a row left after `--skip`: run `--reconfigure` with
//! the combination in its environment and wait for `TARGET/healthz`; then, `--repeat`
//! times, for each strategy x route x concurrency not skipped, run one step (see
//! [`crate::step`]): wait until the previous step's work has drained, connect the clients,
//! reset the sale, run a closed loop with distinct buyers, read the store, judge the
//! checks. The repeats of one row are interleaved with the other rows, so slow drifts of a
//! busy machine spread over all rows rather than landing on one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::fd::AsFd as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{MatrixReport, row_label};
use crate::cli::MatrixOpts;
use crate::control::Control;
use crate::dimensions::{DIMENSIONS, Dimension, value_name};
use crate::engine::{Pace, Stop};
use crate::error::LoadtestError;
use crate::markdown::opt;
use crate::repeats;
use crate::report::{self, Machine};
use crate::step::{self, Load, Session, Step};
use crate::target::Target;

/// A combination of stack settings: dimension name -> value.
type Combo = BTreeMap<String, String>;

/// The values given for each stack dimension, in [`DIMENSIONS`] order, duplicates dropped.
fn dimension_values(opts: &MatrixOpts) -> Vec<(Dimension, Vec<String>)> {
    let lists: [Vec<String>; 5] = [
        opts.batch.iter().map(u32::to_string).collect(),
        opts.gate.iter().map(value_name).collect(),
        opts.workers.iter().map(u32::to_string).collect(),
        opts.queue_type.iter().map(value_name).collect(),
        opts.store.iter().map(value_name).collect(),
    ];
    DIMENSIONS
        .into_iter()
        .zip(lists)
        .filter(|(_, values)| !values.is_empty())
        .map(|(d, values)| {
            let mut distinct: Vec<String> = Vec::new();
            for v in values {
                if !distinct.contains(&v) {
                    distinct.push(v);
                }
            }
            (d, distinct)
        })
        .collect()
}

/// Every combination of the stack dimensions in use, first dimension outermost.
fn combinations(opts: &MatrixOpts) -> Result<Vec<Combo>, LoadtestError> {
    let mut combos = vec![Combo::new()];
    for (d, values) in dimension_values(opts) {
        if values.len() > 1 && opts.reconfigure.is_none() {
            return Err(LoadtestError::Usage(format!(
                "{} has {} values, but the load tester cannot change the stack by itself: \
                 pass --reconfigure CMD (run before each combination with {} set), or give one value",
                d.option,
                values.len(),
                d.env
            )));
        }
        combos = combos
            .into_iter()
            .flat_map(|combo| {
                values.iter().map(move |v| {
                    let mut c = combo.clone();
                    c.insert(d.name.to_string(), v.clone());
                    c
                })
            })
            .collect();
    }
    Ok(combos)
}

/// One row of the matrix to run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    strategy: String,
    route: String,
    concurrency: usize,
}

/// The rows of each combination that no `--skip` drops; a skip that matches no row at all
/// is a usage error (a typo would otherwise silently run everything).
fn plan_rows(opts: &MatrixOpts, combos: &[Combo]) -> Result<Vec<Vec<Planned>>, LoadtestError> {
    let mut matched = vec![false; opts.skip.len()];
    let planned = combos
        .iter()
        .map(|combo| {
            let mut rows = Vec::new();
            for strategy in &opts.strategies {
                for route in &opts.routes {
                    for &c in &opts.concurrency {
                        let mut fields = combo.clone();
                        fields.insert("strategy".into(), strategy.clone());
                        fields.insert("route".into(), route.clone());
                        fields.insert("c".into(), c.to_string());
                        let mut skipped = false;
                        for (i, skip) in opts.skip.iter().enumerate() {
                            if skip.matches(&fields) {
                                matched[i] = true;
                                skipped = true;
                            }
                        }
                        if !skipped {
                            rows.push(Planned {
                                strategy: strategy.clone(),
                                route: route.clone(),
                                concurrency: c,
                            });
                        }
                    }
                }
            }
            rows
        })
        .collect();
    if let Some(i) = matched.iter().position(|m| !m) {
        return Err(LoadtestError::Usage(format!(
            "--skip {} matches no row of this matrix",
            opts.skip[i]
        )));
    }
    Ok(planned)
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
    combo: &Combo,
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

fn describe_combo(combo: &Combo) -> String {
    if combo.is_empty() {
        return "the stack as it is".into();
    }
    combo
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Short label parts, so row labels stay readable: `-b64-gon-w2-quorum-postgres`.
fn combo_label(combo: &Combo) -> String {
    DIMENSIONS
        .iter()
        .filter_map(|d| combo.get(d.name).map(|v| format!("-{}{v}", d.label_prefix)))
        .collect()
}

/// Runs the matrix and returns its combined report.
pub async fn run(opts: &MatrixOpts) -> Result<MatrixReport, LoadtestError> {
    let common = &opts.common;
    if common.admin_token.is_none() {
        return Err(LoadtestError::BadOptions(
            "matrix resets the sale before every step: pass --admin-token or set FLASHSALE_ADMIN_TOKEN".into(),
        ));
    }
    step::check_label(&opts.label)?;
    if opts.concurrency.is_empty() || opts.concurrency.contains(&0) {
        return Err(LoadtestError::BadOptions(
            "--concurrency needs levels of at least 1".into(),
        ));
    }
    if opts.repeat == 0 {
        return Err(LoadtestError::Usage("--repeat must be at least 1".into()));
    }
    let combos = combinations(opts)?;
    let planned = plan_rows(opts, &combos)?;
    let dimensions: Vec<String> = dimension_values(opts)
        .iter()
        .map(|(d, _)| d.name.to_string())
        .collect();
    let origin = Target::parse(&opts.target, false)?.origin;
    let urls = opts
        .routes
        .iter()
        .map(|r| Ok((r.clone(), Target::parse(&route_url(&origin, r)?, true)?)))
        .collect::<Result<Vec<_>, LoadtestError>>()?;
    report::files::ensure_writable(&common.out)?;
    let session = Session::open(&origin, common).await?;
    let started_at = report::rfc3339(std::time::SystemTime::now());
    let stop = match opts.duration {
        Some(d) => Stop::Duration(d),
        None => Stop::Repetitions(opts.repetitions.unwrap_or(10)),
    };

    let mut steps = Vec::new();
    for (combo, rows) in combos.iter().zip(&planned) {
        if rows.is_empty() {
            continue;
        }
        if let Some(command) = &opts.reconfigure {
            if !common.quiet {
                eprintln!("loadtest: reconfiguring for {}", describe_combo(combo));
            }
            let ready = Duration::from_secs(opts.ready_timeout_s);
            reconfigure(command, combo, &session.control, ready).await?;
        }
        let addr = step::preflight(&urls[0].1).await?;
        // A wrong --metrics URL fails here, before this combination's load.
        session.scraper.scrape_all(&common.metrics).await?;
        for k in 0..opts.repeat {
            for row in rows {
                let Some((_, target)) = urls.iter().find(|(r, _)| *r == row.route) else {
                    continue;
                };
                let mut label = format!(
                    "{}{}-{}-{}-c{}",
                    opts.label,
                    combo_label(combo),
                    row.strategy,
                    row.route,
                    row.concurrency
                );
                if opts.repeat > 1 {
                    let _ = write!(label, "-run{}", k + 1);
                }
                let load = Load {
                    label,
                    route: row.route.clone(),
                    target: target.clone(),
                    addr,
                    concurrency: row.concurrency,
                    stop,
                    pace: Pace::Closed,
                    strategy: row.strategy.clone(),
                    dimensions: combo.clone(),
                    warmup: None,
                    keep_order_ids: false,
                };
                let measured =
                    step::run(&session, common, Step::new(common, load), &[], None).await?;
                let step = measured.report;
                if !common.quiet {
                    eprintln!(
                        "loadtest: {}: {:.2} trans/sec, longest {:.3} s, orders {} (stock {}), errors {}{}",
                        step.label(),
                        step.throughput_rps,
                        step.latency_ms.max / 1000.0,
                        opt(&step.orders_in_store),
                        common.stock,
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

    let rows = repeats::rows(&steps, |r| row_label(r.label(), opts.repeat));
    Ok(MatrixReport {
        schema_version: report::SCHEMA_VERSION,
        label: opts.label.clone(),
        target: origin,
        stock: common.stock,
        repetitions: match stop {
            Stop::Repetitions(r) => Some(r),
            _ => None,
        },
        duration_s: opts.duration.map(|d| d.as_secs_f64()),
        repeat: opts.repeat,
        dimensions,
        skipped: opts.skip.iter().map(ToString::to_string).collect(),
        start_together: common.start_together,
        started_at,
        machine: Machine::this(),
        steps,
        rows,
    })
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
            "--store",
            "postgres",
            "--reconfigure",
            "true",
        ]))
        .unwrap();
        let seen: Vec<String> = combos.iter().map(describe_combo).collect();
        assert_eq!(
            seen,
            [
                "batch=1, gate=off, store=postgres",
                "batch=1, gate=on, store=postgres",
                "batch=64, gate=off, store=postgres",
                "batch=64, gate=on, store=postgres"
            ]
        );
        assert_eq!(combo_label(&combos[3]), "-b64-gon-postgres");
        assert_eq!(combinations(&matrix_opts(&[])).unwrap(), vec![Combo::new()]);
    }

    #[test]
    fn several_values_of_a_stack_dimension_need_reconfigure() {
        let err = combinations(&matrix_opts(&["--workers", "1,2,4"])).unwrap_err();
        assert!(matches!(err, LoadtestError::Usage(_)), "{err}");
        assert!(err.to_string().contains("--reconfigure"), "{err}");
        // One value describes the stack as it is: no reconfigure needed.
        assert_eq!(
            combinations(&matrix_opts(&["--workers", "2", "--workers", "2"]))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn skips_drop_the_rows_matching_all_their_pairs() {
        let opts = matrix_opts(&[
            "--gate",
            "off,on",
            "--reconfigure",
            "true",
            "--concurrency",
            "100",
            "--skip",
            "strategy=count-insert,gate=on",
        ]);
        let combos = combinations(&opts).unwrap();
        let planned = plan_rows(&opts, &combos).unwrap();
        let count: Vec<usize> = planned.iter().map(Vec::len).collect();
        // gate off: 2 strategies x 2 routes; gate on: conditional only.
        assert_eq!(count, [4, 2]);
        assert!(planned[1].iter().all(|r| r.strategy == "conditional"));

        let typo = matrix_opts(&["--skip", "strategy=cont-insert"]);
        let err = plan_rows(&typo, &combinations(&typo).unwrap()).unwrap_err();
        assert!(err.to_string().contains("matches no row"), "{err}");
    }
}
