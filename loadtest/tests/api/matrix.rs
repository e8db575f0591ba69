//! `loadtest matrix` against a small sale server: every step resets, runs, reads.

use clap::Parser as _;
use loadtest::cli::Opts;

use crate::helpers::{FakeSale, Faults, TOKEN, load_matrix, matrix_opts};

#[tokio::test]
async fn the_matrix_runs_every_step_and_writes_one_combined_report() {
    let sale = FakeSale::start(0, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let opts = matrix_opts(
        &sale,
        out.path(),
        &[
            "--label",
            "m",
            "--stock",
            "5",
            "--concurrency",
            "2,3",
            "-r",
            "3",
        ],
    );

    loadtest::execute(opts).await.unwrap();

    for file in [
        "m.json",
        "m.md",
        "m.html",
        "m-throughput.svg",
        "m-latency.svg",
    ] {
        assert!(out.path().join(file).exists(), "{file} missing");
    }
    let report = load_matrix(out.path().join("m.json"));
    let steps: Vec<_> = report
        .steps
        .iter()
        .map(|s| {
            (
                s.settings.strategy.clone().unwrap(),
                s.settings.route.clone(),
                s.settings.concurrency,
            )
        })
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
        assert_eq!(
            step.requests,
            step.settings.concurrency * 3,
            "{}",
            step.label()
        );
        assert_eq!(step.ordered_responses, 5, "{}", step.label());
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
    // One panel per strategy, each route named in it.
    assert!(svg.starts_with("<svg") && svg.contains("conditional") && svg.contains("MQ"));

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

#[tokio::test]
async fn stack_dimensions_reconfigure_before_each_combination_and_label_the_rows() {
    let sale = FakeSale::start(0, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("reconfigured.log");
    let command = format!(
        "echo \"$FLASHSALE_BATCH $FLASHSALE_SOLD_OUT_GATE ${{FLASHSALE_WORKERS:-unset}}\" >> {}",
        log.display()
    );
    let opts = matrix_opts(
        &sale,
        out.path(),
        &[
            "--label",
            "dims",
            "--stock",
            "3",
            "--concurrency",
            "2",
            "-r",
            "2",
            "--routes",
            "http",
            "--strategies",
            "conditional",
            "--batch",
            "1,64",
            "--gate",
            "on",
            "--reconfigure",
            &command,
        ],
    );

    loadtest::execute(opts).await.unwrap();

    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines, "1 on unset\n64 on unset\n");
    let report = load_matrix(out.path().join("dims.json"));
    assert_eq!(report.dimensions, vec!["batch", "gate"]);
    let labels: Vec<&str> = report.steps.iter().map(|s| s.label()).collect();
    assert_eq!(
        labels,
        [
            "dims-b1-gon-conditional-http-c2",
            "dims-b64-gon-conditional-http-c2"
        ]
    );
    assert_eq!(report.steps[1].settings.dimensions["batch"], "64");
    assert_eq!(report.steps[1].scenario, "contended");
    let md = std::fs::read_to_string(out.path().join("dims.md")).unwrap();
    let header = md.lines().find(|l| l.starts_with("| batch")).unwrap();
    assert!(
        header.contains("| gate") && header.contains("| route"),
        "{md}"
    );
    assert!(md.contains("Scenario `contended`"), "{md}");
}

#[tokio::test]
async fn a_reconfigure_command_that_fails_stops_the_matrix_with_its_status() {
    let sale = FakeSale::start(0, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let opts = matrix_opts(
        &sale,
        out.path(),
        &["--workers", "1,2", "--reconfigure", "exit 7"],
    );

    let err = loadtest::execute(opts).await.unwrap_err();

    assert!(
        matches!(err, loadtest::LoadtestError::Reconfigure(_)),
        "{err}"
    );
    assert!(err.to_string().contains("exit status: 7"), "{err}");
    assert!(err.to_string().contains("workers=1"), "{err}");
    assert!(sale.resets().is_empty(), "nothing ran");
}

#[tokio::test]
async fn several_values_of_a_stack_dimension_without_reconfigure_exit_2() {
    let sale = FakeSale::start(0, Faults::default()).await;
    let origin = sale.origin.clone();

    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args([
                "matrix",
                &origin,
                "--admin-token",
                TOKEN,
                "--gate",
                "off,on",
            ])
            .env_remove("FLASHSALE_RECONFIGURE")
            .output()
            .unwrap()
    })
    .await
    .unwrap();

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--reconfigure"), "{stderr}");
    assert!(sale.resets().is_empty());
}

#[tokio::test]
async fn repeated_rows_carry_a_median_and_a_spread_and_compare_to_themselves_within_noise() {
    let sale = FakeSale::start(0, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let opts = matrix_opts(
        &sale,
        out.path(),
        &[
            "--label",
            "rep",
            "--stock",
            "2",
            "--concurrency",
            "2,3",
            "-r",
            "2",
            "--routes",
            "http",
            "--strategies",
            "conditional",
            "--repeat",
            "3",
            "--check",
            "oversold==0",
        ],
    );

    loadtest::execute(opts).await.unwrap();

    let report = load_matrix(out.path().join("rep.json"));
    assert_eq!(report.steps.len(), 6);
    // Repeats are interleaved with the other rows.
    assert!(report.steps[0].label().ends_with("c2-run1"));
    assert!(report.steps[1].label().ends_with("c3-run1"));
    assert_eq!(report.rows.len(), 2);
    for row in &report.rows {
        assert_eq!(row.runs, 3);
        let t = row.throughput_rps;
        assert!(t.min <= t.median && t.median <= t.max, "{t:?}");
        assert_eq!(row.oversold, Some(0));
        assert!(row.checks_pass);
        assert_eq!(row.checks.len(), 1);
        assert_eq!(
            (
                row.checks[0].expr.as_str(),
                row.checks[0].value,
                row.checks[0].pass
            ),
            ("oversold==0", Some(0.0), true)
        );
    }
    assert_eq!(report.rows[0].label, "rep-conditional-http-c2");
    let md = std::fs::read_to_string(out.path().join("rep.md")).unwrap();
    assert!(md.contains("median (min-max)"), "{md}");
    let path = out.path().join("rep.json");
    let compare = Opts::parse_from([
        "loadtest",
        "compare",
        path.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    let table = loadtest::execute(compare).await.unwrap().to_string();
    // trans/sec, p50, p99, fcfs_precision and inversions of both rows.
    assert_eq!(table.matches("within noise").count(), 10, "{table}");
    assert!(!table.contains("| real"), "{table}");
}

#[tokio::test]
async fn a_timed_matrix_where_every_buy_writes_says_so() {
    let sale = FakeSale::start(0, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let opts = matrix_opts(
        &sale,
        out.path(),
        &[
            "--label",
            "writes",
            "--stock",
            "1000000",
            "--concurrency",
            "2",
            "-t",
            "200ms",
            "--routes",
            "mq",
            "--strategies",
            "conditional",
        ],
    );

    loadtest::execute(opts).await.unwrap();

    let report = load_matrix(out.path().join("writes.json"));
    let step = &report.steps[0];
    assert_eq!((report.repetitions, report.duration_s), (None, Some(0.2)));
    assert_eq!(step.settings.duration_s, Some(0.2));
    assert!(step.requests > 0);
    assert_eq!(step.outcomes.ordered, step.requests);
    assert_eq!(step.scenario, "every-buy-writes");
    let md = std::fs::read_to_string(out.path().join("writes.md")).unwrap();
    assert!(
        md.contains("-t 0.2s per row") && md.contains("every buy writes"),
        "{md}"
    );
}

#[tokio::test]
async fn the_store_reaches_the_reconfigure_command_and_skipped_rows_are_not_run() {
    let sale = FakeSale::start(0, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("reconfigured.log");
    let command = format!(
        "echo \"$FLASHSALE_STORE $FLASHSALE_SOLD_OUT_GATE\" >> {}",
        log.display()
    );
    let opts = matrix_opts(
        &sale,
        out.path(),
        &[
            "--label",
            "s",
            "--stock",
            "1",
            "--concurrency",
            "2",
            "-r",
            "1",
            "--routes",
            "http",
            "--strategies",
            "conditional,row-lock",
            "--store",
            "sqlite,postgres",
            "--gate",
            "off,on",
            "--skip",
            "store=postgres,gate=on",
            "--skip",
            "strategy=conditional,gate=on",
            "--reconfigure",
            &command,
        ],
    );

    loadtest::execute(opts).await.unwrap();

    // The gate outermost (the dimensions' order); postgres with the gate on has no row
    // left, so it is never set up.
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines, "sqlite off\npostgres off\nsqlite on\n");
    let report = load_matrix(out.path().join("s.json"));
    assert_eq!(report.dimensions, ["gate", "store"]);
    assert_eq!(
        report.skipped,
        ["store=postgres,gate=on", "strategy=conditional,gate=on"]
    );
    let rows: Vec<(String, String, String)> = report
        .steps
        .iter()
        .map(|s| {
            let d = &s.settings.dimensions;
            (
                d["store"].clone(),
                d["gate"].clone(),
                s.settings.strategy.clone().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("sqlite", "off", "conditional"),
        ("sqlite", "off", "row-lock"),
        ("postgres", "off", "conditional"),
        ("postgres", "off", "row-lock"),
        ("sqlite", "on", "row-lock"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(rows, expected);
    assert_eq!(report.steps[3].label(), "s-goff-postgres-row-lock-http-c2");
    let md = std::fs::read_to_string(out.path().join("s.md")).unwrap();
    assert!(md.contains("| store") && md.contains("row-lock"), "{md}");
    assert!(
        md.contains("`strategy=conditional,gate=on` were skipped"),
        "{md}"
    );
}

#[tokio::test]
async fn a_bad_stack_value_or_skip_exits_2_before_anything_is_sent() {
    let sale = FakeSale::start(0, Faults::default()).await;
    for args in [
        vec!["--store", "excel"],
        vec!["--gate", "maybe"],
        vec!["--batch", "0"],
        vec!["--skip", "colour=red"],
        vec!["--skip", "strategy=cont-insert"],
    ] {
        let mut argv = vec!["matrix", sale.origin.as_str(), "--admin-token", TOKEN];
        argv.extend(&args);
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
                .args(&argv)
                .output()
                .unwrap()
        })
        .await
        .unwrap();

        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
    assert!(sale.resets().is_empty(), "nothing ran");
}
