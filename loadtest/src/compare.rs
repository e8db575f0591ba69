//! Side-by-side comparison of reports, shaped like the original experiment's table.
//!
//! The table is Markdown with padded columns, so the same text reads well in a terminal
//! and renders in a `.md` file. Unknown store values (target without `/sale`) show `n/a`.
//! A matrix report gives one line per row (with repeats: median and min-max spread); a
//! run or merge report gives one line.
//!
//! With exactly two reports, a second table says, row by row, whether each difference
//! (trans/sec, p50, p99) is real or within noise: real only when it is larger than the
//! min-max spread of both sides (see [`crate::repeats`]). Rows are matched by their
//! stack dimensions, strategy, route and concurrency; two single-row reports are matched
//! to each other whatever their rows are.

use std::path::Path;

use crate::error::LoadtestError;
use crate::matrix::MatrixReport;
use crate::repeats::{self, Row, Verdict, cell};
use crate::report::{Report, opt};

/// The rows of one report file.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub name: String,
    pub rows: Vec<Row>,
}

/// One report file as written: a matrix (its steps and rows), or a run or merge report.
enum ReportFile {
    Matrix(Box<MatrixReport>),
    Run(Box<Report>),
}

/// Reads and parses one report file, telling a matrix from a run by its `steps`.
fn read(path: &Path) -> Result<ReportFile, LoadtestError> {
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
            let rows = match read(path)? {
                ReportFile::Matrix(matrix) => matrix.rows(),
                ReportFile::Run(report) => vec![Row::from_runs(&report.label, &[&*report])],
            };
            Ok(Loaded {
                name: path.display().to_string(),
                rows,
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
    let dims: Vec<String> = {
        let mut d: Vec<String> = loaded
            .iter()
            .flat_map(|l| l.rows.iter().flat_map(|r| r.dimensions.keys().cloned()))
            .collect();
        d.sort();
        d.dedup();
        d
    };
    let mut headers: Vec<&str> = vec!["label"];
    headers.extend(dims.iter().map(String::as_str));
    headers.extend([
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
    ]);
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
            ]);
            cells
        })
        .collect();
    let mut out = markdown_table(&headers, rows);
    if let [a, b] = loaded {
        out.push('\n');
        out.push_str(&differences(a, b));
    }
    out
}

/// Row by row, whether B differs from A beyond the noise.
pub fn differences(a: &Loaded, b: &Loaded) -> String {
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
        return "No row of A matches a row of B (same stack dimensions, strategy, route and \
                concurrency): no differences to judge.\n"
            .into();
    }
    let headers = ["row (A -> B)", "measure", "A", "B", "change", "verdict"];
    let mut rows = Vec::new();
    for (ra, rb) in pairs {
        let name = if ra.label == rb.label {
            ra.label.clone()
        } else {
            format!("{} -> {}", ra.label, rb.label)
        };
        for (measure, sa, sb, decimals) in [
            ("trans/sec", &ra.throughput_rps, &rb.throughput_rps, 2),
            ("p50 (ms)", &ra.p50_ms, &rb.p50_ms, 2),
            ("p99 (ms)", &ra.p99_ms, &rb.p99_ms, 2),
        ] {
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
    format!(
        "Differences of B = {} from A = {} (real only when larger than both sides' min-max spread):\n\n{}",
        b.name,
        a.name,
        markdown_table(&headers, rows)
    )
}

/// A Markdown table with columns padded to equal width.
pub fn markdown_table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let t = markdown_table(&["a", "bb"], vec![vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "| a   | bb |\n| --- | -- |\n| xyz | 1  |\n");
    }
}
