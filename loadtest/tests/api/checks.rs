//! `--check`: verdicts in the report, the documented exit codes, usage errors up front.

use std::process::{Command, Output};

use crate::helpers::{FakeSale, Faults, TOKEN, run};

async fn loadtest(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args(args)
            .env_remove("FLASHSALE_ADMIN_TOKEN")
            .env_remove("FLASHSALE_CHECK")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn checks_are_measured_in_their_own_units_and_percentages() {
    // Stock 5 for 20 distinct buyers: 5 ordered, 15 sold out.
    let sale = FakeSale::start(100, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();

    let report = run(
        out.path(),
        &[
            &sale.url("/http/buy"),
            "-c",
            "4",
            "-n",
            "20",
            "--admin-token",
            TOKEN,
            "--stock",
            "5",
            "--check",
            "oversold==0",
            "--check",
            "lost==0",
            "--check",
            "sold_out>=75%",
            "--check",
            "ordered!=5",
            "--check",
            "p99<30s",
            "--check",
            "max<=1ms",
            "--check",
            "errors<=0.1%,requests>19",
            "--check",
            "rps>1000000000",
        ],
    )
    .await;

    let got: Vec<(&str, Option<f64>, &str, bool)> = report
        .checks
        .iter()
        .map(|c| (c.expr.as_str(), c.value, c.unit.as_str(), c.pass))
        .collect();
    assert_eq!(got[0], ("oversold==0", Some(0.0), "", true));
    assert_eq!(got[1], ("lost==0", Some(0.0), "", true));
    assert_eq!(got[2], ("sold_out>=75%", Some(75.0), "%", true));
    assert_eq!(got[3], ("ordered!=5", Some(5.0), "", false));
    assert_eq!((got[4].0, got[4].2, got[4].3), ("p99<30s", "s", true));
    assert!(got[4].1.unwrap() < 30.0);
    // The latency in the unit asked for: max in microseconds would be 1000x this.
    assert_eq!((got[5].0, got[5].2), ("max<=1ms", "ms"));
    assert!((got[5].1.unwrap() - report.latency_ms.max).abs() < 1e-9);
    assert_eq!(got[6], ("errors<=0.1%", Some(0.0), "%", true));
    assert_eq!(got[7], ("requests>19", Some(20.0), "", true));
    assert!(!got[8].3, "{:?}", got[8]);
    assert!(!report.checks_pass());
    let md = std::fs::read_to_string(out.path().join(format!("{}.md", report.label()))).unwrap();
    assert!(md.contains("check ordered!=5: FAIL (measured 5)"), "{md}");
}

#[tokio::test]
async fn a_check_on_an_unread_store_fails_rather_than_passes() {
    // A server without `/sale`: oversold is unknown.
    let out = tempfile::tempdir().unwrap();
    let addr = crate::helpers::serve(
        axum::Router::new().route("/x", axum::routing::get(|| async { "ok" })),
    )
    .await;

    let report = run(
        out.path(),
        &[
            &format!("http://{addr}/x"),
            "-n",
            "3",
            "--check",
            "oversold==0",
        ],
    )
    .await;

    assert_eq!(report.checks[0].value, None);
    assert!(!report.checks[0].pass);
}

#[tokio::test]
async fn a_failing_check_exits_3_and_a_passing_one_0() {
    let sale = FakeSale::start(100, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let base = [
        "run",
        &sale.url("/http/buy"),
        "-c",
        "2",
        "-n",
        "10",
        "-q",
        "--out",
        out.path().to_str().unwrap(),
    ]
    .map(String::from);

    let mut failing = base.to_vec();
    failing.extend(args(&["--check", "ordered<5", "--check", "errors==0"]));
    let failed = loadtest(failing).await;
    let mut passing = base.to_vec();
    passing.extend(args(&[
        "--check",
        "ordered>=10",
        "--label",
        "ok",
        "--user-start",
        "100",
    ]));
    let passed = loadtest(passing).await;

    assert_eq!(failed.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(
        stdout.contains("check ordered<5: FAIL (measured 10)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("check errors==0: pass (measured 0)"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("a check failed (exit code 3)"), "{stderr}");
    // The report is written all the same, with the verdicts.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("http-c2.json")).unwrap())
            .unwrap();
    assert_eq!(json["checks"][0]["pass"], false);
    assert_eq!(json["checks"][0]["value"], 10.0);
    assert_eq!(
        passed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&passed.stderr)
    );
}

#[tokio::test]
async fn a_malformed_check_is_a_usage_error_before_anything_is_sent() {
    let sale = FakeSale::start(100, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();

    let output = loadtest(args(&[
        "run",
        &sale.url("/http/buy"),
        "-n",
        "10",
        "--out",
        out.path().to_str().unwrap(),
        "--check",
        "p99<fast",
    ]))
    .await;

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad check `p99<fast`"), "{stderr}");
    assert!(sale.orders().is_empty(), "nothing was sent");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn accepted_answers_and_refusals_are_timed_apart() {
    use axum::extract::Query;
    use axum::http::StatusCode;
    use axum::routing::get;
    // Even buyers are served after 50 ms; odd ones are refused at once with a 503, as an
    // overloaded front tier does.
    let addr = crate::helpers::serve(axum::Router::new().route(
        "/buy",
        get(
            |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                let user: u64 = q["user"].parse().unwrap();
                if user % 2 == 1 {
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "{\"error\":\"busy\"}".to_owned(),
                    );
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                (StatusCode::OK, crate::helpers::buy_body("sold_out", user))
            },
        ),
    ))
    .await;
    let out = tempfile::tempdir().unwrap();

    let report = run(
        out.path(),
        &[
            &format!("http://{addr}/buy"),
            "-c",
            "8",
            "-n",
            "80",
            "--check",
            "accepted_p50>=50ms",
            "--check",
            "refused_p99<40ms",
            "--check",
            "refused_max<1s",
        ],
    )
    .await;

    let accepted = report
        .latency_accepted_ms
        .as_ref()
        .expect("accepted answers");
    let refused = report.latency_refused_ms.as_ref().expect("refusals");
    assert!(accepted.p50 >= 50.0, "{accepted:?}");
    assert!(refused.p99 < 40.0, "{refused:?}");
    assert_eq!(report.outcomes.http_5xx, 40);
    assert!(report.checks_pass(), "{:?}", report.checks);
    // A class with no answers has no latency: its check fails rather than passes.
    let none = run(
        out.path(),
        &[
            &format!("http://{addr}/buy"),
            "-c",
            "1",
            "-n",
            "1",
            "--user-start",
            "2",
            "--label",
            "even",
            "--check",
            "refused_p99<1s",
        ],
    )
    .await;
    assert!(none.latency_refused_ms.is_none());
    assert!(!none.checks_pass());
}
