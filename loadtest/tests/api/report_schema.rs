//! The JSON report: valid against schema/report.schema.json, and a lossless round trip.

use loadtest::report::Report;
use serde_json::Value;

use crate::helpers::{FakeSale, Faults, TOKEN, run};

fn validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(include_str!("../../schema/report.schema.json")).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn errors(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[tokio::test]
async fn a_written_report_matches_its_schema_and_round_trips() {
    let sale = FakeSale::start(3, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let report = run(
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
            "3",
            "--label",
            "schema",
        ],
    )
    .await;
    let text = std::fs::read_to_string(out.path().join("schema.json")).unwrap();
    let written: Value = serde_json::from_str(&text).unwrap();

    let validator = validator();
    assert_eq!(errors(&validator, &written), Vec::<String>::new());

    let parsed: Report = serde_json::from_value(written.clone()).unwrap();
    assert_eq!(parsed, report);
    assert_eq!(serde_json::to_value(&parsed).unwrap(), written);
    let h = parsed.decode_histogram().unwrap();
    assert_eq!(h.len(), 10);
    assert_eq!(
        Report::load(&out.path().join("schema.json")).unwrap(),
        report
    );
}

#[tokio::test]
async fn a_report_without_the_store_still_matches_and_the_schema_can_fail() {
    let sale = FakeSale::start(3, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    run(
        out.path(),
        &[
            &format!("{}/http/buy", sale.origin),
            "-c",
            "1",
            "-n",
            "2",
            "--label",
            "s",
        ],
    )
    .await;
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("s.json")).unwrap()).unwrap();
    let validator = validator();
    assert!(errors(&validator, &written).is_empty());

    let mut missing = written.clone();
    missing.as_object_mut().unwrap().remove("lost_orders");
    assert!(!errors(&validator, &missing).is_empty());

    let mut inconsistent = written.clone();
    inconsistent["store_read"] = Value::Bool(false);
    inconsistent["orders_in_store"] = Value::from(3);
    assert!(!errors(&validator, &inconsistent).is_empty());

    let mut bad_outcome = written;
    bad_outcome["outcomes"]["ordered"] = Value::from(-1);
    assert!(!errors(&validator, &bad_outcome).is_empty());
}

#[tokio::test]
async fn reports_with_checks_marks_metrics_and_dimensions_match_the_schema() {
    let sale = FakeSale::start(3, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let metrics = sale.url("/metrics");
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
            "3",
            "--label",
            "full",
            "--check",
            "oversold==0",
            "--check",
            "p99<1s",
            "--mark",
            "0s: start",
            "--metrics",
            &metrics,
        ],
    )
    .await;
    let opts = clap::Parser::parse_from([
        "loadtest",
        "matrix",
        &sale.origin,
        "--admin-token",
        TOKEN,
        "--out",
        out.path().to_str().unwrap(),
        "--label",
        "m",
        "--concurrency",
        "2",
        "-r",
        "2",
        "--routes",
        "http",
        "--strategies",
        "conditional",
        "--gate",
        "on",
        "--check",
        "lost==0",
        "--metrics",
        &metrics,
        "--drain-interval-ms",
        "20",
        "-q",
    ]);
    loadtest::execute(opts).await.unwrap();

    let validator = validator();
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("full.json")).unwrap())
            .unwrap();
    assert_eq!(errors(&validator, &written), Vec::<String>::new());
    assert_eq!(written["checks"].as_array().unwrap().len(), 2);
    // The before-scrape comes after the reset: the run itself reset nothing.
    let server = &written["server_metrics"][&metrics];
    assert_eq!(server["counters"]["sale_resets_total"], 0.0);
    assert_eq!(server["gauges"]["sale_orders"], 3.0);
    assert_eq!(written["marks"][0]["text"], "start");
    assert!(!written["timeline"].as_array().unwrap().is_empty());
    let matrix: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("m.json")).unwrap()).unwrap();
    for step in matrix["steps"].as_array().unwrap() {
        assert_eq!(errors(&validator, step), Vec::<String>::new());
        assert_eq!(step["dimensions"]["gate"], "on");
        assert_eq!(step["checks"][0]["pass"], true);
    }
    let parsed: Report = serde_json::from_value(written.clone()).unwrap();
    assert_eq!(serde_json::to_value(&parsed).unwrap(), written);
}
