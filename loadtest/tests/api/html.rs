//! The HTML reports: one self-contained page per run and matrix, and `compare --html`,
//! parsed as a browser would and checked against the JSON.

use clap::Parser as _;
use loadtest::cli::Opts;
use loadtest::report::Report;
use scraper::{Html, Selector};

use crate::helpers::{FakeSale, Faults, TOKEN, load_matrix, matrix_opts, run};

fn select(doc: &Html, css: &str) -> Vec<String> {
    let selector = Selector::parse(css).unwrap();
    doc.select(&selector)
        .map(|e| e.text().collect::<String>().trim().to_string())
        .collect()
}

fn count(doc: &Html, css: &str) -> usize {
    doc.select(&Selector::parse(css).unwrap()).count()
}

/// The leading number of a cell (`1234.56 (1000.00-2000.00)` -> 1234.56).
fn number(cell: &str) -> f64 {
    cell.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("`{cell}` is not a number"))
}

/// A JSON value as the page shows it, with `decimals` decimals.
fn round(x: f64, decimals: usize) -> f64 {
    format!("{x:.decimals$}").parse().unwrap()
}

/// The page is one file: no script, nothing fetched from anywhere.
fn assert_self_contained(page: &str, doc: &Html) {
    assert_eq!(count(doc, "script, link, img, iframe, object"), 0);
    assert!(!page.contains("src=") && !page.contains("@import") && !page.contains("url("));
    assert!(!page.contains("http://www.w3.org/1999/xlink\" xlink:href"));
}

#[tokio::test]
async fn the_html_report_of_a_matrix_parses_and_its_numbers_are_the_jsons() {
    let sale = FakeSale::start(0, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let opts = matrix_opts(
        &sale,
        out.path(),
        &[
            "--label",
            "m",
            "--stock",
            "4",
            "--concurrency",
            "2,4",
            "-r",
            "3",
            "--repeat",
            "2",
            "--gate",
            "on",
            "--check",
            "oversold==0",
        ],
    );
    loadtest::execute(opts).await.unwrap();
    let json = load_matrix(out.path().join("m.json"));
    let page = std::fs::read_to_string(out.path().join("m.html")).unwrap();

    let doc = Html::parse_document(&page);

    assert_self_contained(&page, &doc);
    for id in [
        "summary", "table", "plots", "fairness", "timeline", "checks",
    ] {
        assert_eq!(count(&doc, &format!("section#{id}")), 1, "section {id}");
    }
    let headers = select(&doc, "#table thead th");
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {headers:?}"))
    };
    assert_eq!(json.rows.len(), 8);
    for row in &json.rows {
        let cells = select(&doc, &format!("#table tr[data-row=\"{}\"] td", row.label));
        assert_eq!(cells.len(), headers.len(), "{}", row.label);
        assert_eq!(cells[col("gate")], "on");
        assert_eq!(cells[col("c")], row.concurrency.to_string());
        assert_eq!(
            number(&cells[col("trans/sec")]),
            round(row.throughput_rps.median, 2)
        );
        assert_eq!(number(&cells[col("p99 (ms)")]), round(row.p99_ms.median, 2));
        assert_eq!(
            number(&cells[col("orders in DB (stock 4)")]),
            row.orders_in_store.median
        );
        assert_eq!(
            number(&cells[col("oversold")]),
            row.oversold.unwrap() as f64
        );
        assert_eq!(number(&cells[col("lost")]), row.lost_orders.unwrap() as f64);
        let precision = row.fcfs_precision.unwrap().median;
        assert_eq!(number(&cells[col("fcfs_precision")]), round(precision, 2));
        assert_eq!(cells[col("checks")], "pass");
        let fairness = select(
            &doc,
            &format!("#fairness tr[data-row=\"{}\"] td", row.label),
        );
        assert_eq!(number(&fairness[1]), round(precision, 2));
    }
    // The plots and one small timeline per run, inline.
    for id in ["throughput", "latency", "fairness"] {
        assert_eq!(count(&doc, &format!("figure#figure-{id} svg")), 1, "{id}");
    }
    assert_eq!(count(&doc, "#timeline figure svg"), json.steps.len());
    let checks = select(&doc, "#checks li.pass");
    assert_eq!(checks.len(), json.steps.len());
    assert!(checks[0].contains("oversold==0"), "{checks:?}");
}

#[tokio::test]
async fn the_html_report_of_a_run_has_its_measures_fairness_and_checks() {
    let sale = FakeSale::start(5, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let report: Report = run(
        out.path(),
        &[
            &sale.url("/http/buy"),
            "-c",
            "4",
            "-n",
            "40",
            "--admin-token",
            TOKEN,
            "--stock",
            "5",
            "--label",
            "r",
            "--check",
            "lost==0",
            "--mark",
            "0s: the sale opens",
        ],
    )
    .await;
    let page = std::fs::read_to_string(out.path().join("r.html")).unwrap();

    let doc = Html::parse_document(&page);

    assert_self_contained(&page, &doc);
    let measure = |name: &str| select(&doc, &format!("#table tr[data-measure=\"{name}\"] td"));
    assert_eq!(
        number(&measure("trans/sec")[0]),
        round(report.throughput_rps, 2)
    );
    assert_eq!(measure("orders in store"), ["5"]);
    assert_eq!(measure("requests"), ["40"]);
    let outcomes = select(&doc, "#table tr[data-row=\"outcomes\"] td");
    assert_eq!(outcomes[..2], ["5", "35"]);
    let f = report.fairness.as_ref().unwrap();
    let fairness = select(&doc, "#fairness tr[data-row=\"r\"] td");
    assert_eq!(fairness[..2], [f.buyers.to_string(), f.winners.to_string()]);
    assert_eq!(number(&fairness[3]), round(f.fcfs_precision.unwrap(), 2));
    assert_eq!(count(&doc, "#figure-fairness svg"), 1);
    assert_eq!(count(&doc, "#timeline svg"), 1);
    assert_eq!(select(&doc, "#timeline li"), ["0.000 s: the sale opens"]);
    assert_eq!(count(&doc, "#checks li.pass"), 1);
    // The SVG files beside it are the same figures.
    let svg = std::fs::read_to_string(out.path().join("r-fairness.svg")).unwrap();
    assert!(page.contains(&svg));
}

#[tokio::test]
async fn compare_html_shows_two_reports_side_by_side() {
    let sale = FakeSale::start(5, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    for label in ["a", "b"] {
        run(
            out.path(),
            &[
                &sale.url("/http/buy"),
                "-c",
                "2",
                "-n",
                "10",
                "--admin-token",
                TOKEN,
                "--stock",
                "5",
                "--label",
                label,
            ],
        )
        .await;
    }
    let (a, b, html) = (
        out.path().join("a.json"),
        out.path().join("b.json"),
        out.path().join("cmp").join("ab.html"),
    );
    let opts = Opts::parse_from([
        "loadtest",
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);

    let printed = loadtest::execute(opts).await.unwrap().to_string();

    assert!(
        printed.contains("wrote") && printed.contains("ab.html"),
        "{printed}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    let doc = Html::parse_document(&page);
    assert_self_contained(&page, &doc);
    assert_eq!(count(&doc, "section#compare"), 1);
    for side in ["a", "b"] {
        for id in ["summary", "table", "fairness", "timeline"] {
            assert_eq!(
                count(&doc, &format!("section#{side}-{id}")),
                1,
                "{side}-{id}"
            );
        }
    }
    let labels = select(&doc, "#compare tbody tr td:first-child");
    assert_eq!(labels[..2], ["a", "b"]);

    let three = Opts::parse_from([
        "loadtest",
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        a.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    let err = loadtest::execute(three).await.unwrap_err();
    assert!(err.to_string().contains("two reports"), "{err}");
}
