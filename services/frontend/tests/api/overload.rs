//! More buyers than a route may serve at once: refused at once, counted, and served again
//! once there is room.

use std::time::{Duration, Instant};

use order_core::Strategy;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_limit_a_buy_is_refused_at_once_and_accepted_again_later() {
    // Every buy holds for 800 ms in the backend (count-insert pauses between count and
    // insert); the front tier lets 10 wait on the HTTP route.
    let stack = spawn_stack(StackOptions {
        stock: 1000,
        strategy: Strategy::CountInsert,
        backend_count_insert_pause_ms: 800,
        frontend_args: vec!["--max-in-flight-http=10".into()],
        ..StackOptions::default()
    })
    .await;
    let held: Vec<_> = (1..=10)
        .map(|user| {
            let http = stack.http.clone();
            let url = stack.url(&format!("/http/buy?user={user}"));
            tokio::spawn(async move { http.get(url).send().await.unwrap().status() })
        })
        .collect();
    eventually("10 buys wait on the backend", || async {
        metric(
            &stack,
            "flashsale_frontend_buys_in_flight",
            &[("route", "http")],
        )
        .await
            == Some(10.0)
    })
    .await;

    let started = Instant::now();
    let refused = stack
        .http
        .get(stack.url("/http/buy?user=11"))
        .send()
        .await
        .unwrap();
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
    // The MQ route has its own limit: still served.
    assert_eq!(stack.get("/mq/buy?user=12").await.0, 200);
    for answer in held {
        assert_eq!(answer.await.unwrap(), 200);
    }
    let (status, body) = stack.get("/http/buy?user=11").await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &serde_json::json!("ordered"))
    );
    assert_eq!(
        metric(
            &stack,
            "flashsale_frontend_rejections_total",
            &[("route", "http"), ("reason", "in_flight_limit")]
        )
        .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_buys_by_route_and_outcome() {
    let stack = spawn_stack(StackOptions {
        stock: 1,
        ..StackOptions::default()
    })
    .await;
    stack.get("/http/buy?user=1").await;
    stack.get("/mq/buy?user=1").await;
    stack.get("/mq/buy?user=2").await;
    stack.get("/http/buy?user=zero").await;

    let count = |route, outcome| {
        let stack = &stack;
        async move {
            metric(
                stack,
                "flashsale_frontend_buys_total",
                &[("route", route), ("outcome", outcome)],
            )
            .await
        }
    };
    assert_eq!(count("http", "ordered").await, Some(1.0));
    assert_eq!(count("mq", "already_ordered").await, Some(1.0));
    assert_eq!(count("mq", "sold_out").await, Some(1.0));
    assert_eq!(count("http", "bad_request").await, Some(1.0));
    assert_eq!(
        metric(
            &stack,
            "flashsale_frontend_buy_duration_seconds_count",
            &[("route", "mq")]
        )
        .await,
        Some(2.0)
    );
    assert_eq!(
        metric(&stack, "flashsale_frontend_rpc_pending", &[]).await,
        Some(0.0)
    );
}
