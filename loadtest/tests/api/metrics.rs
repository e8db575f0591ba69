//! `--metrics URL`: server-side counters and gauges around a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::get;

use crate::helpers::{run, run_opts, serve};

/// A server counting its buys, exposing the count as a Prometheus counter.
async fn counting_server() -> String {
    let buys = Arc::new(AtomicU64::new(1_000));
    let (a, b) = (buys.clone(), buys);
    let router = Router::new()
        .route(
            "/buy",
            get(move || {
                a.fetch_add(1, Ordering::SeqCst);
                async { "ok" }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let n = b.load(Ordering::SeqCst);
                async move {
                    format!(
                        "# TYPE buys_total counter\nbuys_total{{route=\"buy\"}} {n}\n\
                         # TYPE in_flight gauge\nin_flight 0\n"
                    )
                }
            }),
        );
    format!("http://{}", serve(router).await)
}

#[tokio::test]
async fn server_metrics_hold_the_counter_increase_during_the_run() {
    let origin = counting_server().await;
    let out = tempfile::tempdir().unwrap();
    let metrics = format!("{origin}/metrics");

    let report = run(
        out.path(),
        &[
            &format!("{origin}/buy"),
            "-c",
            "3",
            "-n",
            "25",
            "--metrics",
            &metrics,
        ],
    )
    .await;

    let m = &report.server_metrics[&metrics];
    assert_eq!(m.counters[r#"buys_total{route="buy"}"#], 25.0);
    assert_eq!(m.gauges["in_flight"], 0.0);
    assert_eq!(m.error, None);
}

#[tokio::test]
async fn a_metrics_url_that_does_not_answer_is_reported_before_any_load() {
    let origin = counting_server().await;
    let out = tempfile::tempdir().unwrap();

    let err = loadtest::run(&run_opts(&[
        &format!("{origin}/buy"),
        "-n",
        "5",
        "-q",
        "--out",
        out.path().to_str().unwrap(),
        "--metrics",
        &format!("{origin}/no-such-metrics"),
    ]))
    .await
    .unwrap_err();

    assert!(
        matches!(err, loadtest::LoadtestError::Metrics { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("HTTP 404"), "{err}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}
