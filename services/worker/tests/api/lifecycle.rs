//! Reconnects, health and graceful shutdown.

use order_core::Outcome;

use crate::helpers::*;

#[tokio::test]
async fn a_worker_whose_connection_is_closed_reconnects_and_serves_again() {
    let queue = unique("reconnect");
    let _guard = BrokerGuard::request_queue(&queue);
    let mut worker = spawn_worker(&queue, WorkerOptions::default()).await;
    let client = RpcClient::connect(&queue).await;
    assert_eq!(client.buy(&queue, 1).await.outcome, Outcome::Ordered);

    let closed = close_connections_named(&worker.connection_name).await;
    assert_eq!(closed, 1);
    let started = std::time::Instant::now();
    worker.wait_consuming(false).await;
    worker.wait_consuming(true).await;

    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(client.buy(&queue, 2).await.outcome, Outcome::Ordered);
}

#[tokio::test]
async fn health_is_200_while_consuming_and_503_without_a_broker() {
    let queue = unique("health");
    let _guard = BrokerGuard::request_queue(&queue);
    let up = spawn_worker(
        &queue,
        WorkerOptions {
            health: true,
            ..Default::default()
        },
    )
    .await;
    let mut down = spawn_worker(
        &queue,
        WorkerOptions {
            health: true,
            // Nothing listens on port 1: every attempt fails at once.
            amqp_url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
            wait_until_consuming: false,
            ..Default::default()
        },
    )
    .await;
    let http = reqwest::Client::new();

    let up_status = http
        .get(format!("http://{}/healthz", up.health_addr.unwrap()))
        .send()
        .await
        .unwrap()
        .status();
    let down_status = http
        .get(format!("http://{}/healthz", down.health_addr.unwrap()))
        .send()
        .await
        .unwrap()
        .status();

    assert_eq!(up_status, 200);
    assert_eq!(down_status, 503);
    // A worker stuck reconnecting still stops promptly when asked.
    let started = std::time::Instant::now();
    down.stop().await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[tokio::test]
async fn shutdown_answers_what_it_took_and_leaves_the_rest_in_the_queue() {
    let queue = unique("shutdown");
    let _guard = BrokerGuard::request_queue(&queue);
    let client = RpcClient::connect(&queue).await;
    // Queue the requests before a worker exists, so that shutdown lands mid-stream.
    let mut replies = Vec::new();
    for user in 1..=20u64 {
        let body =
            serde_json::to_vec(&queue_contract::message::BuyRequest { user_id: user }).unwrap();
        replies.push(client.call_raw_later(&queue, body).await);
    }
    let mut worker = spawn_worker(&queue, WorkerOptions::default()).await;

    worker.stop().await;

    // Every request is either answered (and acked, so gone from the queue) or still queued,
    // and every answered order is in the store: nothing lost, nothing answered twice.
    let mut answered = 0;
    for reply in replies {
        if let Ok(Ok(_)) = tokio::time::timeout(std::time::Duration::from_millis(200), reply).await
        {
            answered += 1;
        }
    }
    let queued = client.message_count(&queue).await as usize;
    assert_eq!(
        answered + queued,
        20,
        "answered {answered}, queued {queued}"
    );
    assert_eq!(worker.store.sale().await.unwrap().orders as usize, answered);
}
