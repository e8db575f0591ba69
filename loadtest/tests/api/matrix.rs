//! `loadtest matrix` against a small sale server: every step resets, runs, reads.

use clap::Parser as _;
use loadtest::cli::Opts;
use loadtest::matrix::MatrixReport;

use crate::helpers::{FakeSale, Faults, TOKEN};

#[tokio::test]
async fn the_matrix_runs_every_step_and_writes_one_combined_report() {
    let sale = FakeSale::start(0, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let opts = Opts::parse_from([
        "loadtest",
        "matrix",
        &sale.origin,
        "--admin-token",
        TOKEN,
        "--out",
        out.path().to_str().unwrap(),
        "--label",
        "m",
        "--stock",
        "5",
        "--concurrency",
        "2,3",
        "-r",
        "3",
        "--drain-interval-ms",
        "20",
        "-q",
    ]);

    loadtest::execute(opts).await.unwrap();

    for file in ["m.json", "m.md", "m-throughput.svg", "m-latency.svg"] {
        assert!(out.path().join(file).exists(), "{file} missing");
    }
    let report: MatrixReport =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("m.json")).unwrap()).unwrap();
    let steps: Vec<_> = report
        .steps
        .iter()
        .map(|s| (s.strategy.clone().unwrap(), s.route.clone(), s.concurrency))
        .collect();
    let mut expected = Vec::new();
    for strategy in ["count-insert", "conditional"] {
        for route in ["http", "mq"] {
            for c in [2, 3] {
                expected.push((strategy.to_string(), route.to_string(), c));
            }
        }
    }
    assert_eq!(steps, expected);
    for step in &report.steps {
        assert_eq!(step.requests, step.concurrency * 3, "{}", step.label);
        assert_eq!(step.ordered_responses, 5, "{}", step.label);
        assert_eq!(
            (step.orders_in_store, step.oversold, step.lost_orders),
            (Some(5), Some(0), Some(0))
        );
    }
    let resets = sale.resets();
    assert_eq!(resets.len(), 8);
    assert!(
        resets[..4]
            .iter()
            .all(|r| r.1 == "count-insert" && r.0 == 5)
    );
    assert!(resets[4..].iter().all(|r| r.1 == "conditional"));
    // Each reset dropped exactly the previous step's orders.
    assert!(resets[1..].iter().all(|r| r.2 == 5));

    let md = std::fs::read_to_string(out.path().join("m.md")).unwrap();
    assert!(md.contains("orders in DB (stock 5)"), "{md}");
    assert!(md.contains("RabbitMQ RPC"));
    let svg = std::fs::read_to_string(out.path().join("m-throughput.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("mq / conditional"));

    // compare reads the matrix's steps.
    let compare = Opts::parse_from([
        "loadtest",
        "compare",
        out.path().join("m.json").to_str().unwrap(),
    ]);
    let table = loadtest::execute(compare).await.unwrap().to_string();
    assert_eq!(
        table.lines().filter(|l| l.contains("m-")).count(),
        8,
        "{table}"
    );
}
