//! Which files a report makes, and writing them: for a run (or a merge) and for a matrix,
//! `<label>.json` (everything), `<label>.md` (the table), one SVG per plot and
//! `<label>.html` (all of it in one self-contained page, the SVGs inline); for `compare`,
//! the Markdown table and the HTML page of two reports side by side. Each plot is drawn
//! once and written both as a file and into the page.

use std::path::{Path, PathBuf};

use crate::compare::{self, Loaded, ReportFile};
use crate::error::LoadtestError;
use crate::html::{self, Body, Figure};
use crate::matrix::MatrixReport;
use crate::plot::{self, Measure};
use crate::report::Report;
use crate::report::files::{to_json, write_file};

/// The plots of a run: latency by percentile, timeline, and (with buyers) who won by send
/// rank.
pub fn run_figures(report: &Report) -> Result<Vec<Figure>, LoadtestError> {
    let label = report.label();
    let mut figures = vec![
        Figure {
            id: "latency".into(),
            title: "Latency by percentile".into(),
            svg: plot::latency_percentiles(
                &format!("{label}: latency by percentile"),
                std::slice::from_ref(report),
            )?,
        },
        Figure {
            id: "timeline".into(),
            title: "Per second: answers by outcome, p50 and p99".into(),
            svg: plot::timeline(report, (960, 720))?,
        },
    ];
    if let Some(f) = &report.fairness {
        figures.push(Figure {
            id: "fairness".into(),
            title: "Who won, by send rank".into(),
            svg: plot::fairness_ranks(label, f)?,
        });
    }
    Ok(figures)
}

/// The plots of a matrix: throughput by design, latency panels, fairness by design.
pub fn matrix_figures(matrix: &MatrixReport) -> Result<Vec<Figure>, LoadtestError> {
    let rows = matrix.rows();
    let mut figures = Vec::new();
    if let Some(svg) = plot::design_panels(&rows, Measure::Throughput)? {
        figures.push(Figure {
            id: "throughput".into(),
            title: "Throughput by design (one panel per strategy and stack setting)".into(),
            svg,
        });
    }
    figures.push(Figure {
        id: "latency".into(),
        title: "Latency by percentile".into(),
        svg: plot::latency_panels("Latency by percentile", &matrix.steps)?,
    });
    if let Some(svg) = plot::design_panels(&rows, Measure::FcfsPrecision)? {
        figures.push(Figure {
            id: "fairness".into(),
            title: "Fairness by design".into(),
            svg,
        });
    }
    Ok(figures)
}

/// A small timeline per run of a matrix (inline in the page only).
fn matrix_timelines(matrix: &MatrixReport) -> Result<Vec<Figure>, LoadtestError> {
    matrix
        .steps
        .iter()
        .map(|s| {
            Ok(Figure {
                id: format!("timeline-{}", s.label()),
                title: s.label().to_string(),
                svg: plot::timeline(s, (520, 380))?,
            })
        })
        .collect()
}

/// Writes the SVG files of `figures` as `<label>-<id>.svg`.
fn write_figures(
    dir: &Path,
    label: &str,
    figures: &[Figure],
) -> Result<Vec<PathBuf>, LoadtestError> {
    figures
        .iter()
        .map(|f| write_file(dir, &format!("{label}-{}.svg", f.id), &f.svg))
        .collect()
}

/// Writes a run's (or a merge's) files; returns their paths.
pub fn write_run(dir: &Path, report: &Report) -> Result<Vec<PathBuf>, LoadtestError> {
    let label = report.label();
    let figures = run_figures(report)?;
    let mut files = vec![
        write_file(dir, &format!("{label}.json"), &to_json(report))?,
        write_file(dir, &format!("{label}.md"), &report.markdown())?,
    ];
    files.extend(write_figures(dir, label, &figures)?);
    let page = html::report_page(&Body::Run(report, &figures));
    files.push(write_file(dir, &format!("{label}.html"), &page)?);
    Ok(files)
}

/// Writes a matrix's files; returns their paths.
pub fn write_matrix(dir: &Path, matrix: &MatrixReport) -> Result<Vec<PathBuf>, LoadtestError> {
    let label = &matrix.label;
    let figures = matrix_figures(matrix)?;
    let timelines = matrix_timelines(matrix)?;
    let mut files = vec![
        write_file(dir, &format!("{label}.json"), &to_json(matrix))?,
        write_file(dir, &format!("{label}.md"), &matrix.markdown())?,
    ];
    files.extend(write_figures(dir, label, &figures)?);
    let page = html::report_page(&Body::Matrix(matrix, &figures, &timelines));
    files.push(write_file(dir, &format!("{label}.html"), &page)?);
    Ok(files)
}

/// Writes `contents` to the file `path` names (its directory created).
pub fn write_path(path: &Path, option: &str, contents: &str) -> Result<PathBuf, LoadtestError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        LoadtestError::BadOptions(format!("{option} {} is not a file name", path.display()))
    })?;
    write_file(dir, name, contents)
}

/// The HTML page of two report files side by side, with the comparison tables.
pub fn compare_html(files: [&ReportFile; 2], loaded: &[Loaded]) -> Result<String, LoadtestError> {
    let mut figures = Vec::new();
    for file in files {
        figures.push(match file {
            ReportFile::Run(r) => (run_figures(r)?, Vec::new()),
            ReportFile::Matrix(m) => (matrix_figures(m)?, matrix_timelines(m)?),
        });
    }
    let bodies: Vec<Body<'_>> = files
        .iter()
        .zip(&figures)
        .map(|(file, (figs, timelines))| match file {
            ReportFile::Run(r) => Body::Run(r, figs),
            ReportFile::Matrix(m) => Body::Matrix(m, figs, timelines),
        })
        .collect();
    let (headers, rows) = compare::side_by_side(loaded);
    let differences = match loaded {
        [a, b] => compare::difference_rows(a, b),
        _ => None,
    };
    let difference_headers: Vec<String> = compare::DIFFERENCE_HEADERS
        .iter()
        .map(|h| h.to_string())
        .collect();
    Ok(html::compare_page(
        &bodies[0],
        &bodies[1],
        (&headers, &rows),
        differences
            .as_ref()
            .map(|d| (difference_headers.as_slice(), d.as_slice())),
    ))
}
