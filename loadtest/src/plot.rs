//! SVG plots next to the Markdown reports: latency percentiles per run, and throughput by
//! route and concurrency.
//!
//! Percentiles are plotted on a "nines" axis (x = -log10(1 - q): 90% at 1, 99% at 2, ...)
//! as HdrHistogram plots do, so the tail is as readable as the median.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::error::LoadtestError;
use crate::report::Report;

/// The deepest percentile plotted: 99.99%.
const MAX_NINES: f64 = 4.0;

fn plot_err(path: &Path) -> impl Fn(String) -> LoadtestError + '_ {
    move |reason| LoadtestError::Plot {
        path: path.to_path_buf(),
        reason,
    }
}

/// Latency (ms) at each percentile, from p0 to p99.99, in steps of 0.05 nines.
fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    (0..=(MAX_NINES * 20.0) as u32)
        .map(|i| {
            let nines = f64::from(i) / 20.0;
            let q = 1.0 - 10f64.powf(-nines);
            (nines, h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect()
}

/// One line per report: latency against percentile.
pub fn latency_percentiles(
    path: &Path,
    title: &str,
    reports: &[Report],
) -> Result<(), LoadtestError> {
    let err = plot_err(path);
    let mut curves = Vec::new();
    for r in reports {
        let h = r.decode_histogram()?;
        if !h.is_empty() {
            curves.push((r.label.clone(), percentile_curve(&h)));
        }
    }
    let y_max = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * legend_headroom(curves.len());
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..MAX_NINES, 0.0..y_max)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_labels(5)
        .x_label_formatter(&|x| nines_label(*x))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (i, (label, curve)) in curves.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(curve, color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

/// Room above the data for the legend (upper left), which grows with the number of lines,
/// so the legend does not hide them.
fn legend_headroom(lines: usize) -> f64 {
    1.15 + 0.04 * lines as f64
}

fn nines_label(x: f64) -> String {
    let pct = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{pct:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// Throughput (trans/sec) against concurrency, one line per route and strategy.
pub fn throughput(path: &Path, title: &str, reports: &[Report]) -> Result<(), LoadtestError> {
    let err = plot_err(path);
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in reports {
        let name = format!("{} / {}", r.route, r.strategy.as_deref().unwrap_or("?"));
        let point = (r.concurrency as f64, r.throughput_rps);
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, points)) => points.push(point),
            None => series.push((name, vec![point])),
        }
    }
    for (_, points) in &mut series {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let x_max = reports
        .iter()
        .map(|r| r.concurrency as f64)
        .fold(1.0, f64::max)
        * 1.1;
    let y_max = reports.iter().map(|r| r.throughput_rps).fold(1.0, f64::max)
        * legend_headroom(series.len());
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("concurrency (clients)")
        .y_desc("trans/sec")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (i, (name, points)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)).point_size(4))
            .map_err(|e| err(e.to_string()))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_are_labelled_as_percentiles() {
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(3.0), "99.9%");
    }
}
