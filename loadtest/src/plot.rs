//! SVG plots, rendered to strings: the files next to the Markdown reports and the figures
//! inlined in the HTML reports are the same text.
//!
//! - a run: latency by percentile, its timeline (answers/s by outcome, p50/p99 per second,
//!   markers; sends/s in the open loop), and who won by send rank;
//! - a matrix: latency by percentile in one panel per route, strategy and stack setting
//!   (one colour per concurrency), and throughput and `fcfs_precision` as small multiples:
//!   one panel per strategy and stack setting, a labelled line per route, every point
//!   labelled with its value, the same scale in every panel, so a reader finds any
//!   design's figure without a legend.
//!
//! Percentiles are plotted on a "nines" axis (x = -log10(1 - q): 90% at 1, 99% at 2, ...)
//! as HdrHistogram plots do, so the tail is as readable as the median.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::LoadtestError;
use crate::fairness::Fairness;
use crate::repeats::{Row, Spread};
use crate::report::{Mode, Report};

/// The deepest percentile plotted: 99.99%.
const MAX_NINES: f64 = 4.0;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Renders an SVG of `size` with `draw`; `name` says which plot failed.
fn render(
    name: &str,
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> Result<(), String>,
) -> Result<String, LoadtestError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let result = root
            .fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(|e| e.to_string()));
        result.map_err(|reason| LoadtestError::Plot {
            name: name.to_string(),
            reason,
        })?;
    }
    Ok(svg)
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
pub fn latency_percentiles(title: &str, reports: &[Report]) -> Result<String, LoadtestError> {
    let mut lines = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        let h = r.decode_histogram()?;
        if !h.is_empty() {
            lines.push((
                r.label().to_string(),
                Palette99::pick(i).to_rgba(),
                percentile_curve(&h),
            ));
        }
    }
    render("latency by percentile", (960, 600), |root| {
        percentile_panel(root, title, &WHOLE, lines)
    })
}

/// Caption size and margins of a chart: a whole image, or one panel of many.
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
    area: &Area<'_>,
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
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Draws the legend of the series labelled on `chart`, on a white box that leaves the
/// lines visible.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
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

/// `http / conditional / batch 64, gate on`: what a latency panel shows.
fn panel_name(
    route: &str,
    strategy: Option<&str>,
    dimensions: &BTreeMap<String, String>,
) -> String {
    let mut name = format!("{route} / {}", strategy.unwrap_or("?"));
    if !dimensions.is_empty() {
        name.push_str(&format!(" / {}", describe_setting(dimensions)));
    }
    name
}

/// `batch 64, gate on`, or `the stack as it is`.
fn describe_setting(dimensions: &BTreeMap<String, String>) -> String {
    if dimensions.is_empty() {
        return "the stack as it is".into();
    }
    dimensions
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A colour per concurrency level (latency panels) or per route (design panels), the same
/// in every panel.
fn series_color(index: usize) -> RGBColor {
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

/// A grid of `n` panels: columns and rows.
fn grid(n: usize) -> (usize, usize) {
    let cols = match n {
        0..=2 => n.max(1),
        3..=6 => 2,
        _ => 3,
    };
    (n.div_ceil(cols), cols)
}

/// Latency by percentile, one panel per route, strategy and stack setting, one line per
/// concurrency (the same colour in every panel). The runs of a repeated row are merged
/// (an exact HDR merge), so a panel shows all of a row's requests.
pub fn latency_panels(title: &str, runs: &[Report]) -> Result<String, LoadtestError> {
    let mut levels: Vec<u64> = runs.iter().map(|r| r.settings.concurrency).collect();
    levels.sort_unstable();
    levels.dedup();
    // panel name -> concurrency -> merged histogram
    type Panel = (String, Vec<(u64, Histogram<u64>)>);
    let mut panels: Vec<Panel> = Vec::new();
    for r in runs {
        let s = &r.settings;
        let name = panel_name(&s.route, s.strategy.as_deref(), &s.dimensions);
        let h = r.decode_histogram()?;
        let panel = match panels.iter_mut().position(|(n, _)| *n == name) {
            Some(i) => &mut panels[i].1,
            None => {
                panels.push((name, Vec::new()));
                &mut panels.last_mut().expect("just pushed").1
            }
        };
        match panel.iter_mut().find(|(c, _)| *c == s.concurrency) {
            Some((_, merged)) => merged
                .add(&h)
                .map_err(|e| LoadtestError::Histogram(format!("{e:?}")))?,
            None => panel.push((s.concurrency, h)),
        }
    }
    let (grid_rows, cols) = grid(panels.len());
    let size = ((480 * cols as u32).max(640), 60 + 340 * grid_rows as u32);
    render("latency panels", size, |root| {
        let root = root
            .titled(
                &format!("{title} (one colour per concurrency)"),
                ("sans-serif", 22),
            )
            .map_err(|e| e.to_string())?;
        let areas = root.split_evenly((grid_rows, cols));
        for ((name, curves), area) in panels.into_iter().zip(areas) {
            let lines = curves
                .into_iter()
                .filter(|(_, h)| !h.is_empty())
                .map(|(c, h)| {
                    let index = levels.iter().position(|l| *l == c).unwrap_or(0);
                    (
                        format!("c = {c}"),
                        series_color(index).to_rgba(),
                        percentile_curve(&h),
                    )
                })
                .collect();
            percentile_panel(&area, &name, &PANEL, lines)?;
        }
        Ok(())
    })
}

/// What a design chart shows of each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Throughput,
    FcfsPrecision,
}

impl Measure {
    fn of(self, row: &Row) -> Option<Spread> {
        match self {
            Measure::Throughput => Some(row.throughput_rps),
            Measure::FcfsPrecision => row.fcfs_precision,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Measure::Throughput => "Throughput (trans/sec)",
            Measure::FcfsPrecision => {
                "fcfs_precision: share of the winners among the first senders (1 = first come, first served)"
            }
        }
    }

    fn label(self, v: f64) -> String {
        match self {
            Measure::Throughput if v >= 10_000.0 => format!("{:.1}k", v / 1000.0),
            Measure::Throughput => format!("{v:.0}"),
            Measure::FcfsPrecision => format!("{v:.2}"),
        }
    }
}

/// A design chart: one panel per strategy (rows) and stack setting (columns), the same
/// y scale in all; in each, a line per route named at its end, every point labelled with
/// its value (the median, with the min-max range of repeats as a bar). `None` when no row
/// has the measure.
pub fn design_panels(rows: &[Row], measure: Measure) -> Result<Option<String>, LoadtestError> {
    let rows: Vec<(&Row, Spread)> = rows
        .iter()
        .filter_map(|r| measure.of(r).map(|s| (r, s)))
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let mut strategies: Vec<String> = Vec::new();
    let mut settings: Vec<BTreeMap<String, String>> = Vec::new();
    let mut routes: Vec<String> = Vec::new();
    let mut levels: Vec<u64> = Vec::new();
    for (r, _) in &rows {
        let strategy = r.strategy.clone().unwrap_or_else(|| "?".into());
        if !strategies.contains(&strategy) {
            strategies.push(strategy);
        }
        if !settings.contains(&r.dimensions) {
            settings.push(r.dimensions.clone());
        }
        if !routes.contains(&r.route) {
            routes.push(r.route.clone());
        }
        if !levels.contains(&r.concurrency) {
            levels.push(r.concurrency);
        }
    }
    levels.sort_unstable();
    // One stack setting: the strategies side by side; else strategies down, settings across.
    let (grid_rows, cols) = if settings.len() == 1 {
        (1, strategies.len())
    } else {
        (strategies.len(), settings.len())
    };
    let y_max = match measure {
        Measure::FcfsPrecision => 1.12,
        Measure::Throughput => rows.iter().map(|(_, s)| s.max).fold(1.0, f64::max) * 1.18,
    };
    let size = ((380 * cols as u32).max(480), 60 + 290 * grid_rows as u32);
    let svg = render("design panels", size, |root| {
        let root = root
            .titled(measure.title(), ("sans-serif", 18))
            .map_err(|e| e.to_string())?;
        let areas = root.split_evenly((grid_rows, cols));
        for (i, strategy) in strategies.iter().enumerate() {
            for (j, setting) in settings.iter().enumerate() {
                let area = &areas[if settings.len() == 1 { i } else { i * cols + j }];
                let panel: Vec<&(&Row, Spread)> = rows
                    .iter()
                    .filter(|(r, _)| {
                        r.strategy.as_deref().unwrap_or("?") == strategy && &r.dimensions == setting
                    })
                    .collect();
                let caption = if setting.is_empty() {
                    strategy.clone()
                } else {
                    format!("{strategy} · {}", describe_setting(setting))
                };
                design_panel(area, &caption, &panel, &routes, &levels, y_max, measure)?;
            }
        }
        Ok(())
    })?;
    Ok(Some(svg))
}

fn design_panel(
    area: &Area<'_>,
    caption: &str,
    rows: &[&(&Row, Spread)],
    routes: &[String],
    levels: &[u64],
    y_max: f64,
    measure: Measure,
) -> Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(8)
        .margin_right(60)
        .x_label_area_size(28)
        .y_label_area_size(48)
        .build_cartesian_2d(-0.5..levels.len() as f64 - 0.5, 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(levels.len() + 2)
        .x_label_formatter(&|x| {
            let i = x.round();
            match levels.get(i as usize) {
                Some(c) if (x - i).abs() < 1e-6 && i >= 0.0 => format!("c={c}"),
                _ => String::new(),
            }
        })
        .y_labels(5)
        .y_label_formatter(&|y| measure.label(*y))
        .draw()
        .map_err(|e| e.to_string())?;
    // Per concurrency level, the highest median: its label goes above its point, the others'
    // below theirs, so two close or crossing lines keep their labels apart.
    let top: Vec<f64> = (0..levels.len())
        .map(|i| {
            rows.iter()
                .filter(|(r, _)| r.concurrency == levels[i])
                .map(|(_, s)| s.median)
                .fold(f64::MIN, f64::max)
        })
        .collect();
    let offset = |x: f64, v: f64| if v >= top[x as usize] { -16 } else { 6 };
    for (k, route) in routes.iter().enumerate() {
        let color = series_color(k);
        let mut points: Vec<(f64, Spread, u32)> = rows
            .iter()
            .filter(|(r, _)| &r.route == route)
            .filter_map(|(r, s)| {
                let x = levels.iter().position(|c| *c == r.concurrency)? as f64;
                Some((x, *s, r.runs))
            })
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let Some(last) = points.last().copied() else {
            continue;
        };
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|(x, s, _)| (*x, s.median)),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(points.iter().filter(|p| p.2 > 1).map(|(x, s, _)| {
                PathElement::new(vec![(*x, s.min), (*x, s.max)], color.stroke_width(3))
            }))
            .map_err(|e| e.to_string())?;
        let font = ("sans-serif", 12).into_font().color(&color);
        chart
            .draw_series(points.iter().map(|(x, s, _)| {
                EmptyElement::at((*x, s.median))
                    + Circle::new((0, 0), 3, color.filled())
                    + Text::new(
                        measure.label(s.median),
                        (-12, offset(*x, s.median)),
                        font.clone(),
                    )
            }))
            .map_err(|e| e.to_string())?;
        let name = crate::matrix::route_title(route).replace("RabbitMQ RPC", "MQ");
        let dy = if offset(last.0, last.1.median) < 0 {
            -10
        } else {
            2
        };
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((last.0, last.1.median))
                    + Text::new(name, (22, dy), ("sans-serif", 13).into_font().color(&color)),
            ))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Who won, by send rank: per bucket of consecutive send ranks, the winners and how the
/// others were answered, with a line after the first W ranks (W winners): under first come,
/// first served every winner is left of it.
pub fn fairness_ranks(label: &str, fairness: &Fairness) -> Result<String, LoadtestError> {
    let buyers = fairness.buyers.max(1) as f64;
    let y_max = fairness
        .by_send_rank
        .iter()
        .map(|b| (b.won + b.sold_out + b.error + b.other) as f64)
        .fold(1.0, f64::max)
        * 1.3;
    let classes: [(&str, RGBColor); 4] = [
        ("won", RGBColor(0x2c, 0xa0, 0x2c)),
        ("sold out", RGBColor(0x1f, 0x77, 0xb4)),
        ("error", RGBColor(0xd6, 0x27, 0x28)),
        ("other", RGBColor(0x9a, 0x9a, 0x9a)),
    ];
    render("fairness by send rank", (960, 420), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "{label}: who won, by send rank (fcfs_precision {}, inversions {})",
                    fairness
                        .fcfs_precision
                        .map_or("n/a".into(), |v| format!("{v:.2}")),
                    fairness
                        .inversions
                        .map_or("n/a".into(), |v| format!("{v:.2}")),
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..buyers, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("send rank (1 = sent first)")
            .y_desc("buyers")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (c, (name, color)) in classes.iter().enumerate() {
            let color = *color;
            chart
                .draw_series(fairness.by_send_rank.iter().map(|b| {
                    let counts = [b.won, b.sold_out, b.error, b.other];
                    let below: u64 = counts[..c].iter().sum();
                    let (x0, x1) = ((b.first_rank - 1) as f64, b.last_rank as f64);
                    Rectangle::new(
                        [(x0, below as f64), (x1, (below + counts[c]) as f64)],
                        color.filled(),
                    )
                }))
                .map_err(|e| e.to_string())?
                .label(*name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        let w = fairness.winners as f64;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(w, 0.0), (w, y_max)],
                6,
                4,
                BLACK.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!(" first {} senders", fairness.winners),
                (w, y_max * 0.95),
                ("sans-serif", 13),
            )))
            .map_err(|e| e.to_string())?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// The run over time: answers per second by outcome (top; sends per second too in the
/// open loop) and p50/p99 per second (bottom), each point in the middle of its second,
/// with the run's markers as vertical lines on both panels.
pub fn timeline(report: &Report, size: (u32, u32)) -> Result<String, LoadtestError> {
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
        ("sent", RGBColor(0x20, 0x20, 0x20), Vec::new()),
    ];
    let open = report.settings.mode == Mode::Open;
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
            if open { e.sent } else { 0 },
        ];
        for ((_, _, points), v) in series.iter_mut().zip(values) {
            points.push((e.t_s as f64 + width / 2.0, v as f64 / width));
        }
    }
    // Only the classes that occurred: a legend of flat lines says nothing.
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
    let small = size.0 < 700;
    let (title_px, label_area) = if small { (15, 50) } else { (22, 70) };

    render("timeline", size, |root| {
        let root = root
            .titled(
                &format!("{}: timeline (per second)", report.label()),
                ("sans-serif", title_px),
            )
            .map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(root.dim_in_pixel().1 / 2);

        let mut chart = ChartBuilder::on(&top)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(label_area)
            .build_cartesian_2d(0.0..x_max, 0.0..rate_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc("answers/s")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (name, color, points) in series {
            let style = if name == "sent" {
                color.stroke_width(1)
            } else {
                color.stroke_width(2)
            };
            chart
                .draw_series(LineSeries::new(points, style))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        draw_marks(&mut chart, report, rate_max)?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;

        let mut chart = ChartBuilder::on(&bottom)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(label_area)
            .build_cartesian_2d(0.0..x_max, 0.0..latency_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc("latency (ms)")
            .y_label_formatter(&|y| format!("{y:.1}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (name, color, points) in [
            ("p50", RGBColor(0x1f, 0x77, 0xb4), p50),
            ("p99", RGBColor(0xff, 0x7f, 0x0e), p99),
        ] {
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
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
                .map_err(|e| e.to_string())?;
        }
        draw_marks(&mut chart, report, latency_max)?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
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

    #[test]
    fn values_are_labelled_short() {
        assert_eq!(Measure::Throughput.label(18_259.4), "18.3k");
        assert_eq!(Measure::Throughput.label(3_925.0), "3925");
        assert_eq!(Measure::FcfsPrecision.label(0.934), "0.93");
    }
}
