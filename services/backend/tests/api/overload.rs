//! More buys than the store may work on at once: refused at once, and counted.

use std::time::{Duration, Instant};

use order_core::Strategy;

use crate::helpers::*;

/// A backend allowing 10 buys in flight, whose buys each hold for `hold_ms` (count-insert
/// pauses between its count and its insert).
async fn held_backend(hold_ms: u64) -> TestApp {
    let pause = format!("--count-insert-pause-ms={hold_ms}");
    spawn_app_with_args(
        1000,
        Strategy::CountInsert,
        Some(ADMIN_TOKEN),
        &["--max-in-flight=10", &pause],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_limit_a_buy_is_refused_at_once_with_retry_after_and_accepted_again_later() {
    let app = held_backend(800).await;
    let held: Vec<_> = (1..=10)
        .map(|user| {
            let client = app.client.clone();
            let url = app.url(&format!("/buy/{user}"));
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    let metrics = app.url("/metrics");
    let text = wait_for_metric(
        &app.client,
        &metrics,
        "flashsale_backend_buys_in_flight",
        10.0,
    )
    .await;
    assert!(!text.is_empty());

    let started = Instant::now();
    let refused = app.client.get(app.url("/buy/11")).send().await.unwrap();
    let took = started.elapsed();

    assert_eq!(refused.status(), 503);
    assert!(took < Duration::from_millis(50), "{took:?}");
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("limit 10"),
        "{body}"
    );
    for answer in held {
        assert_eq!(answer.await.unwrap(), 200);
    }
    // The held buys are done: room again.
    assert_eq!(app.buy(11).await.outcome, order_core::Outcome::Ordered);
    let text = scrape(&app.client, &metrics).await;
    assert_eq!(
        sample(
            &text,
            "flashsale_backend_rejections_total",
            &[("reason", "store_limit")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "flashsale_backend_buys_total",
            &[("outcome", "ordered")]
        ),
        Some(11.0)
    );
    assert_eq!(
        sample(
            &text,
            "flashsale_backend_buys_total",
            &[("outcome", "rejected")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "flashsale_backend_buys_in_flight", &[]),
        Some(0.0)
    );
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_the_buys_a_client_sent() {
    let app = spawn_app(2, Strategy::Conditional).await;
    for user in [1, 2, 3, 1] {
        app.buy(user).await;
    }
    let (status, _) = app.get("/buy/abc").await;
    assert_eq!(status, 400);

    let text = scrape(&app.client, &app.url("/metrics")).await;

    let count = |outcome| {
        sample(
            &text,
            "flashsale_backend_buys_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(count("ordered"), Some(2.0));
    assert_eq!(count("sold_out"), Some(1.0));
    assert_eq!(count("already_ordered"), Some(1.0));
    assert_eq!(count("bad_request"), Some(1.0));
    assert_eq!(sample(&text, "flashsale_sale_orders", &[]), Some(2.0));
    assert_eq!(sample(&text, "flashsale_sale_stock", &[]), Some(2.0));
    assert_eq!(
        sample(&text, "flashsale_backend_buy_duration_seconds_count", &[]),
        Some(5.0)
    );
    assert!(
        sample(
            &text,
            "flashsale_store_operation_seconds_count",
            &[("op", "claim")]
        )
        .unwrap()
            >= 2.0
    );
}
