//! Side-by-side comparison of reports, shaped like the original experiment's table.
//!
//! The table is Markdown with padded columns, so the same text reads well in a terminal
//! and renders in a `.md` file. Unknown store values (target without `/sale`) show `n/a`.
//! A matrix report gives one line per row (with repeats: median and min-max spread); a
//! run or merge report gives one line.
//!
//! With exactly two reports, a second table says, row by row, whether each difference
//! (trans/sec, p50, p99, and where both sides measured it `fcfs_precision` and
//! `inversions`) is real or within noise: real only when it is larger than the min-max
//! spread of both sides (see [`crate::repeats`]). Rows are matched by their
//! stack dimensions, strategy, route and concurrency; two single-row reports are matched
//! to each other whatever their rows are.

use std::path::Path;

use crate::error::LoadtestError;
use crate::markdown::{self, opt};
use crate::matrix::{MatrixReport, fairness_cell};
use crate::repeats::{self, Row, Spread, Verdict, cell};
use crate::report::Report;

/// The rows of one report file.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub name: String,
    pub rows: Vec<Row>,
}

/// One report file as written: a matrix (its steps and rows), or a run or merge report.
#[derive(Debug, Clone)]
pub enum ReportFile {
    Matrix(Box<MatrixReport>),
    Run(Box<Report>),
}

impl ReportFile {
    /// The report's rows: a matrix's, or a run's one row.
    pub fn rows(&self) -> Vec<Row> {
        match self {
            ReportFile::Matrix(matrix) => matrix.rows(),
            ReportFile::Run(report) => vec![Row::from_runs(report.label(), &[&**report])],
        }
    }

    pub fn label(&self) -> &str {
        match self {
            ReportFile::Matrix(matrix) => &matrix.label,
            ReportFile::Run(report) => report.label(),
        }
    }
}

/// Reads and parses one report file, telling a matrix from a run by its `steps`.
pub fn read(path: &Path) -> Result<ReportFile, LoadtestError> {
    let read_err = |reason: String| LoadtestError::ReadReport {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| read_err(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| read_err(e.to_string()))?;
    Ok(if value.get("steps").is_some() {
        ReportFile::Matrix(serde_json::from_value(value).map_err(|e| read_err(e.to_string()))?)
    } else {
        ReportFile::Run(serde_json::from_value(value).map_err(|e| read_err(e.to_string()))?)
    })
}

/// Reads reports from files: a run or merge report gives one row, a matrix report its
/// rows.
pub fn load(paths: &[impl AsRef<Path>]) -> Result<Vec<Loaded>, LoadtestError> {
    paths
        .iter()
        .map(|path| {
            let path = path.as_ref();
            Ok(Loaded {
                name: path.display().to_string(),
                rows: read(path)?.rows(),
            })
        })
        .collect()
}

/// Reads reports from files: a run or merge report gives one, a matrix report its steps.
pub fn load_reports(paths: &[impl AsRef<Path>]) -> Result<Vec<Report>, LoadtestError> {
    let mut reports = Vec::new();
    for path in paths {
        match read(path.as_ref())? {
            ReportFile::Matrix(matrix) => reports.extend(matrix.steps),
            ReportFile::Run(report) => reports.push(*report),
        }
    }
    Ok(reports)
}

/// The side-by-side table (one line per row of every report) and, for two reports, the
/// differences with their verdicts.
pub fn table(loaded: &[Loaded]) -> String {
    let (headers, rows) = side_by_side(loaded);
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut out = markdown::table(&headers, rows);
    if let [a, b] = loaded {
        out.push('\n');
        out.push_str(&differences(a, b));
    }
    out
}

/// The side-by-side table's columns and cells.
pub fn side_by_side(loaded: &[Loaded]) -> (Vec<String>, Vec<Vec<String>>) {
    let dims: Vec<String> = {
        let mut d: Vec<String> = loaded
            .iter()
            .flat_map(|l| l.rows.iter().flat_map(|r| r.dimensions.keys().cloned()))
            .collect();
        d.sort();
        d.dedup();
        d
    };
    let mut headers: Vec<String> = vec!["label".into()];
    headers.extend(dims.iter().cloned());
    headers.extend(
        [
            "route",
            "strategy",
            "c",
            "runs",
            "trans/sec",
            "p50 (ms)",
            "p99 (ms)",
            "longest (s)",
            "orders in store",
            "oversold",
            "lost",
            "errors",
            "fcfs_precision",
            "inversions",
        ]
        .map(String::from),
    );
    let rows = loaded
        .iter()
        .flat_map(|l| &l.rows)
        .map(|r| {
            let mut cells = vec![r.label.clone()];
            cells.extend(
                dims.iter()
                    .map(|d| r.dimensions.get(d).cloned().unwrap_or_default()),
            );
            let longest = repeats::Spread {
                median: r.max_ms.median / 1000.0,
                min: r.max_ms.min / 1000.0,
                max: r.max_ms.max / 1000.0,
            };
            cells.extend([
                r.route.clone(),
                opt(&r.strategy),
                r.concurrency.to_string(),
                r.runs.to_string(),
                cell(&r.throughput_rps, r.runs, 2),
                cell(&r.p50_ms, r.runs, 2),
                cell(&r.p99_ms, r.runs, 2),
                cell(&longest, r.runs, 3),
                cell(&r.orders_in_store, r.runs, 0),
                opt(&r.oversold),
                opt(&r.lost_orders),
                cell(&r.errors, r.runs, 0),
                fairness_cell(&r.fcfs_precision, r.runs),
                fairness_cell(&r.inversions, r.runs),
            ]);
            cells
        })
        .collect();
    (headers, rows)
}

/// Row by row, whether B differs from A beyond the noise.
pub fn differences(a: &Loaded, b: &Loaded) -> String {
    match difference_rows(a, b) {
        None => "No row of A matches a row of B (same stack dimensions, strategy, route and \
                 concurrency): no differences to judge.\n"
            .into(),
        Some(rows) => format!(
            "Differences of B = {} from A = {} (real only when larger than both sides' min-max spread):\n\n{}",
            b.name,
            a.name,
            markdown::table(&DIFFERENCE_HEADERS, rows)
        ),
    }
}

/// Columns of the differences table.
pub const DIFFERENCE_HEADERS: [&str; 6] =
    ["row (A -> B)", "measure", "A", "B", "change", "verdict"];

/// The cells of the differences table; `None` when no row of A matches one of B.
pub fn difference_rows(a: &Loaded, b: &Loaded) -> Option<Vec<Vec<String>>> {
    let pairs: Vec<(&Row, &Row)> = if a.rows.len() == 1 && b.rows.len() == 1 {
        vec![(&a.rows[0], &b.rows[0])]
    } else {
        a.rows
            .iter()
            .filter_map(|ra| {
                b.rows
                    .iter()
                    .find(|rb| rb.key() == ra.key())
                    .map(|rb| (ra, rb))
            })
            .collect()
    };
    if pairs.is_empty() {
        return None;
    }
    let mut rows = Vec::new();
    for (ra, rb) in pairs {
        let name = if ra.label == rb.label {
            ra.label.clone()
        } else {
            format!("{} -> {}", ra.label, rb.label)
        };
        let measures: [(&str, Option<&Spread>, Option<&Spread>, usize); 5] = [
            (
                "trans/sec",
                Some(&ra.throughput_rps),
                Some(&rb.throughput_rps),
                2,
            ),
            ("p50 (ms)", Some(&ra.p50_ms), Some(&rb.p50_ms), 2),
            ("p99 (ms)", Some(&ra.p99_ms), Some(&rb.p99_ms), 2),
            (
                "fcfs_precision",
                ra.fcfs_precision.as_ref(),
                rb.fcfs_precision.as_ref(),
                2,
            ),
            (
                "inversions",
                ra.inversions.as_ref(),
                rb.inversions.as_ref(),
                2,
            ),
        ];
        for (measure, sa, sb, decimals) in measures {
            // A measure one side did not take (fairness without buyers) is not compared.
            let (Some(sa), Some(sb)) = (sa, sb) else {
                continue;
            };
            let change = if sa.median != 0.0 {
                format!("{:+.1}%", 100.0 * (sb.median - sa.median) / sa.median)
            } else {
                "n/a".into()
            };
            rows.push(vec![
                name.clone(),
                measure.to_string(),
                cell(sa, ra.runs, decimals),
                cell(sb, rb.runs, decimals),
                change,
                Verdict::of(sa, ra.runs, sb, rb.runs).text().to_string(),
            ]);
        }
    }
    Some(rows)
}
