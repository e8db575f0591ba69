//! SVG plots next to the Markdown reports: latency percentiles per run (a matrix: one
//! panel per route, strategy and stack setting, one colour per concurrency), throughput by
//! route and concurrency, and a run's timeline (answers/s by outcome, p50/p99 per second,
//! markers).
//!
//! Percentiles are plotted on a "nines" axis (x = -log10(1 - q): 90% at 1, 99% at 2, ...)
//! as HdrHistogram plots do, so the tail is as readable as the median.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::error::LoadtestError;
use crate::repeats::Row;
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
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let lines = curves
        .into_iter()
        .enumerate()
        .map(|(i, (label, curve))| (label, Palette99::pick(i).to_rgba(), curve))
        .collect();
    percentile_panel(&root, title, &WHOLE, lines).map_err(&err)?;
    root.present().map_err(|e| err(e.to_string()))
}

/// Caption size and margins of a percentile chart: a whole image, or one panel of many.
struct Layout {
    caption_px: u32,
    margin: u32,
    x_label_area: u32,
    y_label_area: u32,
}

const WHOLE: Layout = Layout {
    caption_px: 22,
    margin: 12,
    x_label_area: 40,
    y_label_area: 70,
};

const PANEL: Layout = Layout {
    caption_px: 16,
    margin: 10,
    x_label_area: 32,
    y_label_area: 56,
};

/// One line of a percentile chart: its legend, its colour, and (nines, ms) points.
type Line = (String, RGBAColor, Vec<(f64, f64)>);

/// One latency-by-percentile chart on `area`: a line each, on the "nines" axis, with a
/// legend that leaves the lines visible.
fn percentile_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    layout: &Layout,
    lines: Vec<Line>,
) -> Result<(), String> {
    let y_max = lines
        .iter()
        .flat_map(|(_, _, c)| c.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * legend_headroom(lines.len());
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", layout.caption_px))
        .margin(layout.margin)
        .x_label_area_size(layout.x_label_area)
        .y_label_area_size(layout.y_label_area)
        .build_cartesian_2d(0.0..MAX_NINES, 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_labels(5)
        .x_label_formatter(&|x| nines_label(*x))
        .draw()
        .map_err(|e| e.to_string())?;
    for (label, color, curve) in lines {
        chart
            .draw_series(LineSeries::new(curve, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
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
        .map_err(|e| e.to_string())
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

/// Throughput (trans/sec) against concurrency, one line per route, strategy and stack
/// setting; with repeats, the median with a min-max bar.
pub fn throughput(path: &Path, title: &str, rows: &[Row]) -> Result<(), LoadtestError> {
    let err = plot_err(path);
    let mut series: Vec<(String, Vec<&Row>)> = Vec::new();
    for r in rows {
        let name = panel_name(&r.route, r.strategy.as_deref(), &r.dimensions);
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, points)) => points.push(r),
            None => series.push((name, vec![r])),
        }
    }
    for (_, points) in &mut series {
        points.sort_by_key(|r| r.concurrency);
    }
    let x_max = rows
        .iter()
        .map(|r| r.concurrency as f64)
        .fold(1.0, f64::max)
        * 1.1;
    let y_max = rows
        .iter()
        .map(|r| r.throughput_rps.max)
        .fold(1.0, f64::max)
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
        let line: Vec<(f64, f64)> = points
            .iter()
            .map(|r| (r.concurrency as f64, r.throughput_rps.median))
            .collect();
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)).point_size(4))
            .map_err(|e| err(e.to_string()))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().filter(|r| r.runs > 1).map(|r| {
                // The min-max range of the repeats, as a vertical bar.
                let (x, s) = (r.concurrency as f64, &r.throughput_rps);
                PathElement::new(vec![(x, s.min), (x, s.max)], color.stroke_width(3))
            }))
            .map_err(|e| err(e.to_string()))?;
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

/// `http / conditional / batch 64, gate on`: what a panel or a line shows.
fn panel_name(
    route: &str,
    strategy: Option<&str>,
    dimensions: &std::collections::BTreeMap<String, String>,
) -> String {
    let mut name = format!("{route} / {}", strategy.unwrap_or("?"));
    if !dimensions.is_empty() {
        let dims: Vec<String> = dimensions.iter().map(|(k, v)| format!("{k} {v}")).collect();
        name.push_str(&format!(" / {}", dims.join(", ")));
    }
    name
}

/// A consistent colour per concurrency level, across every panel.
fn concurrency_color(index: usize) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0x8c, 0x56, 0x4b),
        RGBColor(0xe3, 0x77, 0xc2),
        RGBColor(0x7f, 0x7f, 0x7f),
    ];
    COLORS[index % COLORS.len()]
}

/// Latency by percentile, one panel per route, strategy and stack setting, one line per
/// concurrency (the same colour in every panel). The runs of a repeated row are merged
/// (an exact HDR merge), so a panel shows all of a row's requests.
pub fn latency_panels(
    path: &Path,
    title: &str,
    runs: &[Report],
    _repeat: u32,
) -> Result<(), LoadtestError> {
    let err = plot_err(path);
    let mut levels: Vec<u64> = runs.iter().map(|r| r.concurrency).collect();
    levels.sort_unstable();
    levels.dedup();
    // panel name -> concurrency -> merged histogram
    type Panel = (String, Vec<(u64, Histogram<u64>)>);
    let mut panels: Vec<Panel> = Vec::new();
    for r in runs {
        let name = panel_name(&r.route, r.strategy.as_deref(), &r.dimensions);
        let h = r.decode_histogram()?;
        let panel = match panels.iter_mut().position(|(n, _)| *n == name) {
            Some(i) => &mut panels[i].1,
            None => {
                panels.push((name, Vec::new()));
                &mut panels.last_mut().expect("just pushed").1
            }
        };
        match panel.iter_mut().find(|(c, _)| *c == r.concurrency) {
            Some((_, merged)) => merged
                .add(&h)
                .map_err(|e| LoadtestError::Histogram(format!("{e:?}")))?,
            None => panel.push((r.concurrency, h)),
        }
    }
    let n = panels.len().max(1);
    let cols = if n <= 2 {
        n
    } else if n <= 6 {
        2
    } else {
        3
    };
    let grid_rows = n.div_ceil(cols);
    let (w, h) = (480 * cols as u32, 60 + 340 * grid_rows as u32);
    let root = SVGBackend::new(path, (w.max(640), h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let root = root
        .titled(
            &format!("{title} (one colour per concurrency)"),
            ("sans-serif", 22),
        )
        .map_err(|e| err(e.to_string()))?;
    let areas = root.split_evenly((grid_rows, cols));
    for ((name, curves), area) in panels.into_iter().zip(areas) {
        let lines = curves
            .into_iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(c, h)| {
                let index = levels.iter().position(|l| *l == c).unwrap_or(0);
                (
                    format!("c = {c}"),
                    concurrency_color(index).to_rgba(),
                    percentile_curve(&h),
                )
            })
            .collect();
        percentile_panel(&area, &name, &PANEL, lines).map_err(&err)?;
    }
    root.present().map_err(|e| err(e.to_string()))
}

/// The run over time: answers per second by outcome (top) and p50/p99 per second
/// (bottom), each point in the middle of its second, with the run's markers as vertical
/// lines on both panels.
pub fn timeline(path: &Path, report: &Report) -> Result<(), LoadtestError> {
    let err = plot_err(path);
    let t = &report.timeline;
    let x_max = (t.len() as f64)
        .max(report.elapsed_s)
        .max(report.marks.iter().map(|m| m.t_s).fold(0.0, f64::max))
        .max(1.0);
    let mid = |i: u64| i as f64 + 0.5;
    type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);
    let mut series: Vec<Series> = vec![
        ("ordered", RGBColor(0x2c, 0xa0, 0x2c), Vec::new()),
        ("sold_out", RGBColor(0x1f, 0x77, 0xb4), Vec::new()),
        ("already_ordered", RGBColor(0x94, 0x67, 0xbd), Vec::new()),
        ("other", RGBColor(0x7f, 0x7f, 0x7f), Vec::new()),
        ("errors", RGBColor(0xd6, 0x27, 0x28), Vec::new()),
    ];
    for e in t {
        // The last second is usually partial (the run ended inside it): divide by its real
        // length, and leave out a stub too short to give a rate.
        let width = (report.elapsed_s - e.t_s as f64).clamp(0.0, 1.0);
        if width < 0.25 {
            continue;
        }
        let values = [
            e.ordered,
            e.sold_out,
            e.already_ordered,
            e.other,
            e.error_count(),
        ];
        for ((_, _, points), v) in series.iter_mut().zip(values) {
            points.push((e.t_s as f64 + width / 2.0, v as f64 / width));
        }
    }
    // Only the classes that occurred: a legend of five flat lines says nothing.
    series.retain(|(_, _, points)| points.iter().any(|p| p.1 > 0.0));
    let rate_max = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * legend_headroom(series.len());
    let p50: Vec<(f64, f64)> = t
        .iter()
        .filter_map(|e| e.p50_ms.map(|v| (mid(e.t_s), v)))
        .collect();
    let p99: Vec<(f64, f64)> = t
        .iter()
        .filter_map(|e| e.p99_ms.map(|v| (mid(e.t_s), v)))
        .collect();
    let latency_max = p99.iter().chain(&p50).map(|p| p.1).fold(1.0, f64::max) * legend_headroom(2);

    let root = SVGBackend::new(path, (960, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let root = root
        .titled(
            &format!("{}: timeline (per second)", report.label),
            ("sans-serif", 22),
        )
        .map_err(|e| err(e.to_string()))?;
    let (top, bottom) = root.split_vertically(360);

    let mut chart = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..rate_max)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("answers/s")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (name, color, points) in series {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    draw_marks(&mut chart, report, rate_max).map_err(&err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;

    let mut chart = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..latency_max)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("latency (ms)")
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (name, color, points) in [
        ("p50", RGBColor(0x1f, 0x77, 0xb4), p50),
        ("p99", RGBColor(0xff, 0x7f, 0x0e), p99),
    ] {
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 2, color.filled())),
            )
            .map_err(|e| err(e.to_string()))?;
    }
    draw_marks(&mut chart, report, latency_max).map_err(&err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A dashed vertical line per marker, its text at the top.
fn draw_marks(chart: &mut Chart<'_, '_>, report: &Report, y_max: f64) -> Result<(), String> {
    let color = RGBColor(0xb0, 0x00, 0x00);
    for (i, m) in report.marks.iter().enumerate() {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(m.t_s, 0.0), (m.t_s, y_max)],
                6,
                4,
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        // Stagger the texts so that close markers stay readable.
        let y = y_max * (0.97 - 0.07 * (i % 4) as f64);
        chart
            .draw_series(std::iter::once(Text::new(
                format!(" {}", m.text),
                (m.t_s, y),
                ("sans-serif", 13).into_font().color(&color),
            )))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
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
