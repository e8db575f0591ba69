//! Side-by-side comparison of reports, shaped like the original experiment's table.
//!
//! The table is Markdown with padded columns, so the same text reads well in a terminal
//! and renders in a `.md` file. Unknown store values (target without `/sale`) show `n/a`.

use std::path::Path;

use crate::error::LoadtestError;
use crate::matrix::MatrixReport;
use crate::report::{Report, opt};

/// Reads reports from files: a run or merge report gives one, a matrix report its steps.
pub fn load_reports(paths: &[impl AsRef<Path>]) -> Result<Vec<Report>, LoadtestError> {
    let mut reports = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let read_err = |reason: String| LoadtestError::ReadReport {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| read_err(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| read_err(e.to_string()))?;
        if value.get("steps").is_some() {
            let matrix: MatrixReport =
                serde_json::from_value(value).map_err(|e| read_err(e.to_string()))?;
            reports.extend(matrix.steps);
        } else {
            reports.push(serde_json::from_value(value).map_err(|e| read_err(e.to_string()))?);
        }
    }
    Ok(reports)
}

/// The side-by-side table: one row per report.
pub fn table(reports: &[Report]) -> String {
    let headers = [
        "label",
        "route",
        "strategy",
        "c",
        "trans/sec",
        "p50 (ms)",
        "p99 (ms)",
        "longest (s)",
        "ordered",
        "orders in store",
        "oversold",
        "lost",
        "errors",
    ];
    let rows = reports
        .iter()
        .map(|r| {
            vec![
                r.label.clone(),
                r.route.clone(),
                opt(&r.strategy),
                r.concurrency.to_string(),
                format!("{:.2}", r.throughput_rps),
                format!("{:.2}", r.latency_ms.p50),
                format!("{:.2}", r.latency_ms.p99),
                format!("{:.3}", r.latency_ms.max / 1000.0),
                r.ordered_responses.to_string(),
                opt(&r.orders_in_store),
                opt(&r.oversold),
                opt(&r.lost_orders),
                r.errors.to_string(),
            ]
        })
        .collect();
    markdown_table(&headers, rows)
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
