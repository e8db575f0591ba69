//! Self-contained HTML reports: one file per run or matrix (`<label>.html`, beside the
//! `.md` and `.json`), and `compare --html` for two reports side by side.
//!
//! Self-contained means: the CSS is inline, the plots are inline SVG (the same text as the
//! `.svg` files), there is no script, and no font or anything else comes from the network,
//! so the file reads the same from a mail attachment, a CI artifact or a headless browser.
//! Every section has an id (`summary`, `table`, `plots`, `fairness`, `timeline`, `checks`;
//! prefixed `a-`/`b-` on a comparison page), every table row says which row or measure it
//! is (`data-row`, `data-measure`), and the numbers are those of the Markdown table, so a
//! reader (or a test) can match them to the JSON.

use std::fmt::Write as _;

use crate::markdown::{opt, ratio};
use crate::matrix::{MatrixReport, fairness_cell};
use crate::report::{CheckResult, Report};

/// One inline figure: an SVG and what it shows.
#[derive(Debug, Clone)]
pub struct Figure {
    /// The figure's id in the page, and the end of its file name (`<label>-<id>.svg`).
    pub id: String,
    pub title: String,
    pub svg: String,
}

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif;
       margin: 1.5rem auto; max-width: 1400px; padding: 0 1rem; color: #1b1b1b; line-height: 1.4; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .85rem; }
.scroll { overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1rem 0; } figcaption { font-weight: 600; margin-bottom: .3rem; }
svg { max-width: 100%; height: auto; }
.pass { color: #1a7f37; } .fail { color: #c62828; font-weight: 600; }
.note { color: #555; font-size: .9rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: .5rem; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5rem; }
.side > div { min-width: 0; overflow-x: auto; }
";

/// Escapes text for HTML.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Inline code spans of Markdown-ish text (`x`) as `<code>`.
fn prose(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in esc(text).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A whole page around `body`.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        esc(title)
    )
}

/// A table; `row_ids` name each body row (`data-row`).
fn table(headers: &[String], rows: &[Vec<String>], row_ids: &[String]) -> String {
    let mut out = String::from("<div class=\"scroll\">\n<table>\n<thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (i, row) in rows.iter().enumerate() {
        match row_ids.get(i) {
            Some(id) => {
                let _ = write!(out, "<tr data-row=\"{}\">", esc(id));
            }
            None => out.push_str("<tr>"),
        }
        for cell in row {
            let class = match cell.as_str() {
                "pass" => " class=\"pass\"",
                "FAIL" => " class=\"fail\"",
                _ => "",
            };
            let _ = write!(out, "<td{class}>{}</td>", esc(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    out
}

fn figures<'a>(figures: impl IntoIterator<Item = &'a Figure>, prefix: &str) -> String {
    let mut out = String::new();
    for f in figures {
        let _ = write!(
            out,
            "<figure id=\"{prefix}figure-{}\">\n<figcaption>{}</figcaption>\n{}\n</figure>\n",
            esc(&f.id),
            esc(&f.title),
            f.svg
        );
    }
    out
}

fn checks_list(checks: &[(String, &CheckResult)]) -> String {
    let mut out = String::from("<ul>\n");
    for (label, c) in checks {
        let class = if c.pass { "pass" } else { "fail" };
        let who = if label.is_empty() {
            String::new()
        } else {
            format!("{}: ", esc(label))
        };
        let _ = writeln!(
            out,
            "<li class=\"{class}\" data-expr=\"{}\">{who}{}</li>",
            esc(&c.expr),
            esc(&c.to_string())
        );
    }
    out.push_str("</ul>\n");
    out
}

/// A section with an id (prefixed on comparison pages) and a heading.
fn section(out: &mut String, prefix: &str, id: &str, heading: &str, body: &str) {
    let _ = write!(
        out,
        "<section id=\"{prefix}{id}\">\n<h2>{}</h2>\n{body}</section>\n",
        esc(heading)
    );
}

/// The sections of one run's report.
fn run_sections(report: &Report, figs: &[Figure], prefix: &str) -> String {
    let s = &report.settings;
    let mut out = String::new();
    let mut summary = format!(
        "<p>{} loop, <code>{}</code> against <code>{}</code>, started {} on {}.</p>\n\
         <p>Scenario: {}. Engine: {}.</p>\n",
        match s.mode {
            crate::report::Mode::Closed => "Closed",
            crate::report::Mode::Open => "Open",
        },
        esc(&report.shape()),
        esc(&s.target),
        esc(&report.started_at),
        esc(&report.machine.describe()),
        esc(if report.scenario.is_empty() {
            "unknown"
        } else {
            &report.scenario
        }),
        esc(s.engine.name()),
    );
    if !s.dimensions.is_empty() {
        let dims: Vec<String> = s
            .dimensions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(summary, "<p>Stack: {}.</p>", esc(&dims.join(", ")));
    }
    if !report.merged_from.is_empty() {
        let _ = writeln!(
            summary,
            "<p>Merged from: {}. Fairness is not merged: each load machine ranks its own \
             buyers on its own clock.</p>",
            esc(&report.merged_from.join(", "))
        );
    }
    section(&mut out, prefix, "summary", "What ran", &summary);

    let (names, values): (Vec<String>, Vec<String>) = report
        .measures()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .unzip();
    let mut measures = String::from("<table>\n<tbody>\n");
    for (k, v) in names.iter().zip(&values) {
        let _ = writeln!(
            measures,
            "<tr data-measure=\"{0}\"><th>{0}</th><td>{1}</td></tr>",
            esc(k),
            esc(v)
        );
    }
    measures.push_str("</tbody>\n</table>\n");
    let (outcome_headers, counts): (Vec<String>, Vec<String>) = report
        .outcomes
        .by_name()
        .into_iter()
        .map(|(name, n)| (name.to_string(), n.to_string()))
        .unzip();
    measures.push_str(&table(&outcome_headers, &[counts], &["outcomes".into()]));
    if !report.store_read {
        measures.push_str(
            "<p class=\"note\">The store was not read (the target has no <code>/sale</code>): \
             oversell is unknown.</p>\n",
        );
    }
    section(&mut out, prefix, "table", "Results", &measures);

    let plots = figures(figs.iter().filter(|f| f.id == "latency"), prefix);
    section(&mut out, prefix, "plots", "Latency", &plots);

    let mut fairness = String::new();
    match &report.fairness {
        Some(f) => {
            let headers = strings(&[
                "buyers",
                "winners",
                "winners from",
                "fcfs_precision",
                "inversions",
                "winners' median send rank",
                "first sends spread (ms)",
            ]);
            let row = vec![
                f.buyers.to_string(),
                f.winners.to_string(),
                f.winners_from.clone(),
                ratio(f.fcfs_precision),
                ratio(f.inversions),
                opt(&f.winners_median_send_rank),
                report
                    .first_send_spread_ms
                    .map_or("n/a".into(), |v| format!("{v:.3}")),
            ];
            fairness.push_str(&table(&headers, &[row], std::slice::from_ref(&s.label)));
            fairness.push_str(&figures(figs.iter().filter(|f| f.id == "fairness"), prefix));
        }
        None => fairness.push_str("<p class=\"note\">Not measured (no per-buyer sends).</p>\n"),
    }
    fairness.push_str(FAIRNESS_NOTE);
    section(
        &mut out,
        prefix,
        "fairness",
        "Fairness: did the first buyers win?",
        &fairness,
    );

    let mut timeline = figures(figs.iter().filter(|f| f.id == "timeline"), prefix);
    if !report.marks.is_empty() {
        timeline.push_str("<ul>\n");
        for m in &report.marks {
            let _ = writeln!(timeline, "<li>{:.3} s: {}</li>", m.t_s, esc(&m.text));
        }
        timeline.push_str("</ul>\n");
    }
    section(&mut out, prefix, "timeline", "Timeline", &timeline);

    let checks: Vec<(String, &CheckResult)> =
        report.checks.iter().map(|c| (String::new(), c)).collect();
    let body = if checks.is_empty() {
        "<p class=\"note\">No <code>--check</code> was given.</p>\n".to_string()
    } else {
        checks_list(&checks)
    };
    section(&mut out, prefix, "checks", "Checks", &body);
    out
}

const FAIRNESS_NOTE: &str = "<p class=\"note\"><code>fcfs_precision</code>: the share of \
    the winners among the buyers who sent first (1 = first come, first served). \
    <code>inversions</code>: the share of winner-loser pairs in which the loser sent first \
    (0 = perfect order, 0.5 = a lottery). The send order is the load generator's clock, not \
    the order in which the server saw the requests; the buyers of another load machine are \
    not ranked against these.</p>\n";

/// The sections of a matrix report; `timelines`: one small timeline per run.
fn matrix_sections(
    matrix: &MatrixReport,
    figs: &[Figure],
    timelines: &[Figure],
    prefix: &str,
) -> String {
    let mut out = String::new();
    let mut summary = String::new();
    for line in matrix.introduction() {
        let _ = writeln!(summary, "<p>{}</p>", prose(&line));
    }
    section(&mut out, prefix, "summary", "What ran", &summary);

    let rows = matrix.rows();
    let (headers, cells) = matrix.table();
    let ids: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    let mut body = table(&headers, &cells, &ids);
    body.push_str(
        "<p class=\"note\"><code>lost</code>: buyers answered <code>ordered</code> whose order \
         the store does not hold, checked buyer by buyer. With repeats, each cell is the median \
         (min-max), and <code>oversold</code> and <code>lost</code> are the worst run's.</p>\n",
    );
    section(&mut out, prefix, "table", "Results", &body);

    let plots = figures(figs.iter().filter(|f| f.id != "fairness"), prefix);
    section(&mut out, prefix, "plots", "Plots", &plots);

    let mut fairness = String::new();
    if rows.iter().any(|r| r.fcfs_precision.is_some()) {
        let headers = strings(&[
            "row",
            "fcfs_precision",
            "inversions",
            "winners' median send rank",
            "first sends spread (ms)",
        ]);
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.label.clone(),
                    fairness_cell(&r.fcfs_precision, r.runs),
                    fairness_cell(&r.inversions, r.runs),
                    r.winners_median_send_rank
                        .as_ref()
                        .map_or("n/a".into(), |s| crate::repeats::cell(s, r.runs, 1)),
                    r.first_send_spread_ms
                        .as_ref()
                        .map_or("n/a".into(), |s| crate::repeats::cell(s, r.runs, 3)),
                ]
            })
            .collect();
        fairness.push_str(&table(&headers, &cells, &ids));
        fairness.push_str(&figures(figs.iter().filter(|f| f.id == "fairness"), prefix));
    } else {
        fairness.push_str("<p class=\"note\">Not measured (no per-buyer sends).</p>\n");
    }
    fairness.push_str(FAIRNESS_NOTE);
    section(
        &mut out,
        prefix,
        "fairness",
        "Fairness: did the first buyers win?",
        &fairness,
    );

    let mut timeline = format!(
        "<details>\n<summary>The timeline of every run ({})</summary>\n<div class=\"grid\">\n",
        timelines.len()
    );
    timeline.push_str(&figures(timelines, prefix));
    timeline.push_str("</div>\n</details>\n");
    section(&mut out, prefix, "timeline", "Timelines", &timeline);

    let checks: Vec<(String, &CheckResult)> = matrix
        .steps
        .iter()
        .flat_map(|s| s.checks.iter().map(|c| (s.label().to_string(), c)))
        .collect();
    let body = if checks.is_empty() {
        "<p class=\"note\">No <code>--check</code> was given.</p>\n".to_string()
    } else {
        checks_list(&checks)
    };
    section(&mut out, prefix, "checks", "Checks, per run", &body);
    out
}

/// One report's page body: a run's or a matrix's sections.
pub enum Body<'a> {
    Run(&'a Report, &'a [Figure]),
    Matrix(&'a MatrixReport, &'a [Figure], &'a [Figure]),
}

impl Body<'_> {
    fn title(&self) -> String {
        match self {
            Body::Run(r, _) => format!("Load test {}", r.label()),
            Body::Matrix(m, _, _) => format!("Flash-sale matrix {}", m.label),
        }
    }

    fn sections(&self, prefix: &str) -> String {
        match self {
            Body::Run(r, figs) => run_sections(r, figs, prefix),
            Body::Matrix(m, figs, timelines) => matrix_sections(m, figs, timelines, prefix),
        }
    }
}

/// The page of one report.
pub fn report_page(body: &Body<'_>) -> String {
    let title = body.title();
    page(
        &title,
        &format!("<h1>{}</h1>\n{}", esc(&title), body.sections("")),
    )
}

/// Two reports side by side, under the comparison tables (`side_by_side`, `differences`:
/// headers and cells as `compare` prints them).
pub fn compare_page(
    a: &Body<'_>,
    b: &Body<'_>,
    side_by_side: (&[String], &[Vec<String>]),
    differences: Option<(&[String], &[Vec<String>])>,
) -> String {
    let mut body = format!(
        "<h1>Comparison: A = {} and B = {}</h1>\n",
        esc(&a.title()),
        esc(&b.title())
    );
    let mut compared = table(side_by_side.0, side_by_side.1, &[]);
    match differences {
        Some((headers, rows)) => {
            compared.push_str(
                "<p>Differences of B from A: real only when larger than both sides' min-max \
                 spread.</p>\n",
            );
            compared.push_str(&table(headers, rows, &[]));
        }
        None => compared.push_str(
            "<p class=\"note\">No row of A matches a row of B: no differences to judge.</p>\n",
        ),
    }
    section(&mut body, "", "compare", "Side by side", &compared);
    let _ = write!(
        body,
        "<div class=\"side\">\n<div>\n<h2>A: {}</h2>\n{}</div>\n<div>\n<h2>B: {}</h2>\n{}</div>\n</div>\n",
        esc(&a.title()),
        a.sections("a-"),
        esc(&b.title()),
        b.sections("b-")
    );
    page("Comparison", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_code_spans_are_kept() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(prose("run `a<b` now"), "run <code>a&lt;b</code> now");
    }
}
