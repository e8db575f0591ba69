//! Upstreams that are down, slow or cut off: answered quickly with the designed codes.

use std::time::{Duration, Instant};

use crate::helpers::*;

#[tokio::test]
async fn with_no_worker_mq_buy_answers_504_within_the_timeout_and_leaves_nothing_pending() {
    let stack = spawn_stack(StackOptions {
        workers: 0,
        timeout_ms: 500,
        ..Default::default()
    })
    .await;

    let started = Instant::now();
    let (status, body) = stack.get("/mq/buy?user=1").await;
    let elapsed = started.elapsed();

    assert_eq!(status, 504, "{body}");
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    assert_eq!(stack.frontend.rpc.pending(), 0);
    // The request expires in the queue (TTL = timeout): no worker will ever serve it late.
    let dead = queue_contract::topology::dead_letter_queue(stack.queue());
    eventually(
        "the unanswered request expires to the dead-letter queue",
        || async { message_count(stack.queue()).await == 0 && message_count(&dead).await == 1 },
    )
    .await;
}

#[tokio::test]
async fn with_the_broker_unreachable_mq_buy_answers_503_at_once_and_healthz_503() {
    let stack = spawn_stack(StackOptions {
        // Nothing listens on port 1.
        frontend_amqp_url: Some("amqp://guest:guest@127.0.0.1:1/%2f".into()),
        ..Default::default()
    })
    .await;

    let started = Instant::now();
    let (status, body) = stack.get("/mq/buy?user=1").await;
    let elapsed = started.elapsed();
    let (health, health_body) = stack.get("/healthz").await;

    assert_eq!(status, 503, "{body}");
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
    assert_eq!(health, 503);
    assert_eq!(health_body["http"], "ok");
    assert_ne!(health_body["mq"], "ok");
}

#[tokio::test]
async fn with_the_backend_stopped_http_buy_answers_502_quickly_and_healthz_503() {
    let mut stack = spawn_stack(StackOptions::default()).await;
    assert_eq!(stack.get("/http/buy?user=1").await.0, 200);
    stack.backend.stop().await.unwrap();

    let started = Instant::now();
    let (status, body) = stack.get("/http/buy?user=2").await;
    let elapsed = started.elapsed();
    let (health, _) = stack.get("/healthz").await;

    assert_eq!(status, 502, "{body}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert_eq!(health, 503);
}

#[tokio::test]
async fn a_backend_that_never_answers_is_a_504_within_the_timeout() {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    let stack = spawn_stack(StackOptions {
        backend_url: Some(format!("http://{silent_addr}")),
        timeout_ms: 400,
        ..Default::default()
    })
    .await;

    let started = Instant::now();
    let (status, body) = stack.get("/http/buy?user=1").await;
    let elapsed = started.elapsed();

    assert_eq!(status, 504, "{body}");
    assert!(elapsed < Duration::from_millis(1400), "{elapsed:?}");
    held.abort();
}

#[tokio::test]
async fn after_their_broker_connections_are_closed_front_tier_and_worker_reconnect_and_serve() {
    let stack = spawn_stack(StackOptions::default()).await;
    assert_eq!(stack.get("/mq/buy?user=1").await.0, 200);

    let closed = close_connections_named(&stack.frontend.connection).await
        + close_connections_named(&stack.workers[0].connection).await;
    let started = Instant::now();

    assert_eq!(closed, 2);
    let mut user = 100;
    eventually("the MQ route serves again", || {
        user += 1;
        let path = format!("/mq/buy?user={user}");
        let stack = &stack;
        async move {
            let (status, body) = stack.get(&path).await;
            status == 200 && body["outcome"] == "ordered"
        }
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stack.frontend.rpc.pending(), 0);
}
