//! Coordinated omission: a server that stalls once for 1 s. The closed loop waits with
//! it and reports one slow request (p99 hides it); the open loop keeps its schedule and
//! counts every request that was due during the stall as late (p99 shows it).
//! And the open loop's connections are a pool: a slow answer holds its connection, not
//! the requests due after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;

use crate::helpers::{run, serve};

/// A server whose 50th request takes 1 s; every other request is immediate.
async fn stalls_once() -> String {
    let count = Arc::new(AtomicU64::new(0));
    let router = Router::new().route(
        "/",
        get(move || {
            let count = count.clone();
            async move {
                if count.fetch_add(1, Ordering::SeqCst) == 49 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                "ok"
            }
        }),
    );
    format!("http://{}/", serve(router).await)
}

#[tokio::test]
async fn open_loop_shows_a_stall_in_p99_that_closed_loop_hides() {
    let out = tempfile::tempdir().unwrap();
    let closed_url = stalls_once().await;
    let open_url = stalls_once().await;

    let closed = run(
        out.path(),
        &[&closed_url, "-c", "1", "-n", "500", "--label", "closed"],
    )
    .await;
    let open = run(
        out.path(),
        &[
            &open_url, "-c", "1", "-n", "400", "--rate", "200", "--label", "open",
        ],
    )
    .await;

    // Both saw the stall as a 1 s maximum...
    assert!(closed.latency_ms.max >= 1000.0, "{:?}", closed.latency_ms);
    assert!(open.latency_ms.max >= 1000.0, "{:?}", open.latency_ms);
    // ...but only one request of 500 was slow in the closed loop,
    assert!(closed.latency_ms.p99 < 250.0, "{:?}", closed.latency_ms);
    // while ~200 requests were due during the stall in the open loop.
    assert!(open.latency_ms.p99 >= 800.0, "{:?}", open.latency_ms);
    assert!(open.latency_ms.p90 >= 400.0, "{:?}", open.latency_ms);
    // On one connection, those requests waited in the generator: the report says so.
    let lag = open.send_lag_ms.expect("an open loop reports its send lag");
    assert!(lag.max >= 800.0, "{lag:?}");
    assert_eq!(closed.send_lag_ms, None);
}

#[tokio::test]
async fn a_send_lag_check_fails_in_a_closed_loop_which_has_no_schedule() {
    let out = tempfile::tempdir().unwrap();
    let url = one_in_ten_slow().await;

    let report = run(
        out.path(),
        &[&url, "-c", "2", "-n", "10", "--check", "send_lag_p99<1s"],
    )
    .await;

    assert_eq!(report.send_lag_ms, None);
    assert!(!report.checks_pass(), "{:?}", report.checks);
}

/// A server whose every 10th request takes 300 ms; the others are immediate.
async fn one_in_ten_slow() -> String {
    let count = Arc::new(AtomicU64::new(0));
    let router = Router::new().route(
        "/",
        get(move || {
            let count = count.clone();
            async move {
                if count.fetch_add(1, Ordering::SeqCst) % 10 == 9 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                "ok"
            }
        }),
    );
    format!("http://{}/", serve(router).await)
}

#[tokio::test]
async fn a_request_due_while_its_connection_waits_takes_a_free_one() {
    let out = tempfile::tempdir().unwrap();
    let url = one_in_ten_slow().await;

    // 200/s on 20 connections: each would send every 100 ms under a fixed share, and a
    // 300 ms answer would hold up that connection's next three. About 6 are slow at once.
    let report = run(
        out.path(),
        &[
            &url,
            "-c",
            "20",
            "-n",
            "600",
            "--rate",
            "200",
            "--label",
            "pool",
            "--check",
            "send_lag_p99<50ms",
        ],
    )
    .await;

    assert_eq!(report.errors, 0, "{:?}", report.outcomes);
    assert!(report.checks_pass(), "{:?}", report.checks);
    let lag = report
        .send_lag_ms
        .expect("an open loop reports its send lag");
    assert!(
        lag.p99 < 50.0,
        "requests waited for a busy connection: {lag:?}"
    );
    // The slow tenth is the latency's p90 and above, the rest is immediate.
    assert!(report.latency_ms.p50 < 50.0, "{:?}", report.latency_ms);
    assert!(report.latency_ms.p99 >= 250.0, "{:?}", report.latency_ms);
}
