//! Admission at the queue: a bounded request queue refuses what it cannot hold, and with
//! publisher confirms the front tier says so at once instead of letting the buyer wait.

use std::time::{Duration, Instant};

use order_core::Strategy;

use crate::helpers::*;

#[tokio::test]
async fn with_a_full_request_queue_the_next_mq_buy_is_a_503_at_once_and_nothing_is_left_pending() {
    // No worker: five buys fill the queue and wait there.
    let stack = spawn_stack(StackOptions {
        strategy: Strategy::Conditional,
        workers: 0,
        queue_max_length: 5,
        timeout_ms: 3000,
        ..Default::default()
    })
    .await;
    let stack = &stack;
    let held = futures_util::future::join_all(
        (1..=5).map(|user| async move { stack.get(&format!("/mq/buy?user={user}")).await }),
    );
    let (answers, ()) = tokio::join!(held, async {
        eventually("five requests wait in the queue", || async {
            message_count(stack.queue()).await == 5 && stack.frontend.rpc.pending() == 5
        })
        .await;

        let started = Instant::now();
        let answer = stack
            .http
            .get(stack.url("/mq/buy?user=6"))
            .send()
            .await
            .unwrap();
        let elapsed = started.elapsed();
        let status = answer.status();
        let retry_after = answer.headers().get("retry-after").cloned();
        let body: serde_json::Value = answer.json().await.unwrap();

        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "the request queue is full");
        assert_eq!(retry_after.unwrap(), "1");
        assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
        assert_eq!(
            stack.frontend.rpc.pending(),
            5,
            "the refused request left nothing pending"
        );
        assert_eq!(message_count(stack.queue()).await, 5);
    });

    // The five that got in time out (no worker) and leave nothing behind either.
    assert!(
        answers.iter().all(|(status, _)| *status == 504),
        "{answers:?}"
    );
    assert_eq!(stack.frontend.rpc.pending(), 0);
}

#[tokio::test]
async fn with_confirms_a_request_to_a_deleted_queue_is_a_503_at_once_not_a_silent_drop() {
    let stack = spawn_stack(StackOptions {
        strategy: Strategy::Conditional,
        workers: 0,
        queue_max_length: 5,
        ..Default::default()
    })
    .await;
    delete_queue(stack.queue()).await;

    let started = Instant::now();
    let (status, body) = stack.get("/mq/buy?user=1").await;
    let elapsed = started.elapsed();

    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "the request queue does not exist");
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
    assert_eq!(stack.frontend.rpc.pending(), 0);
}

#[tokio::test]
async fn a_quorum_request_queue_serves_buys_with_confirms_on_a_single_node() {
    let stack = spawn_stack(StackOptions {
        strategy: Strategy::Conditional,
        queue_type: "quorum",
        stock: 2,
        ..Default::default()
    })
    .await;

    let answers = stack.buy_all(1..=3).await;

    assert_eq!(count_outcome(&answers, "ordered"), 2, "{answers:?}");
    assert_eq!(count_outcome(&answers, "sold_out"), 1, "{answers:?}");
    assert_eq!(stack.frontend.rpc.pending(), 0);
    let sale = stack.store.sale().await.unwrap();
    assert_eq!((sale.orders, sale.oversold), (2, 0));
    stack.shutdown().await;
}

async fn delete_queue(queue: &str) {
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_delete(queue.into(), Default::default())
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;
}
