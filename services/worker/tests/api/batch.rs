//! The batched worker (`--batch N`): one store transaction per batch, every message answered,
//! malformed ones dead-lettered alone, and a crash mid-batch neither loses nor doubles.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use lapin::BasicProperties;
use order_core::metrics::test_support::sample;
use order_core::{BuyResponse, Outcome, Store, Strategy};

use crate::helpers::*;

fn decode(body: &[u8]) -> BuyResponse {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn a_batch_with_a_malformed_message_and_a_repeat_buyer_answers_each_and_dead_letters_the_bad_one()
 {
    let queue = unique("batch");
    let _guard = BrokerGuard::request_queue(&queue);
    let client = RpcClient::connect(&queue).await;
    // Everything waits in the queue before the worker starts, so it arrives as one burst.
    let buy = |user: u64| serde_json::to_vec(&serde_json::json!({ "user_id": user })).unwrap();
    let first = client.call_raw_later(&queue, buy(1)).await;
    client
        .publish(
            &queue,
            b"not json",
            BasicProperties::default()
                .with_reply_to("amq.rabbitmq.reply-to.unused".into())
                .with_correlation_id("bad".into()),
        )
        .await;
    let again = client.call_raw_later(&queue, buy(1)).await;
    let second = client.call_raw_later(&queue, buy(2)).await;
    let third = client.call_raw_later(&queue, buy(3)).await;

    let worker = spawn_worker(
        &queue,
        WorkerOptions {
            batch: 64,
            stock: 2,
            strategy: Strategy::Conditional,
            health: true,
            ..Default::default()
        },
    )
    .await;

    let reply = |rx: tokio::sync::oneshot::Receiver<Vec<u8>>| async move {
        decode(
            &tokio::time::timeout(DEADLINE, rx)
                .await
                .expect("reply in time")
                .unwrap(),
        )
    };
    let (first, again, second, third) =
        tokio::join!(reply(first), reply(again), reply(second), reply(third));
    assert_eq!(first.outcome, Outcome::Ordered);
    assert_eq!(again.outcome, Outcome::AlreadyOrdered);
    assert_eq!(
        again.order_id, first.order_id,
        "the repeat gets the first order"
    );
    assert_eq!(second.outcome, Outcome::Ordered);
    assert_eq!(
        third.outcome,
        Outcome::SoldOut,
        "stock 2: the third buyer is late"
    );
    let dead = queue_contract::topology::dead_letter_queue(&queue);
    eventually("the malformed message is dead-lettered", || async {
        client.message_count(&dead).await == 1
    })
    .await;
    assert_eq!(client.message_count(&queue).await, 0, "everything settled");
    assert_eq!(worker.store.order_user_ids().await.unwrap(), vec![1, 2]);

    // The worker's /metrics (on its health listener) counts each settled message.
    let metrics = reqwest::get(format!("http://{}/metrics", worker.health_addr.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let requests = |outcome| {
        sample(
            &metrics,
            "flashsale_worker_requests_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(requests("ordered"), Some(2.0), "{metrics}");
    assert_eq!(requests("already_ordered"), Some(1.0));
    assert_eq!(requests("sold_out"), Some(1.0));
    assert_eq!(requests("malformed"), Some(1.0));
    assert_eq!(
        sample(&metrics, "flashsale_worker_batch_size_sum", &[]),
        Some(4.0),
        "4 good requests"
    );
    assert_eq!(
        sample(&metrics, "flashsale_worker_consuming", &[]),
        Some(1.0)
    );
}

/// A worker process killed (`kill -9`) while it answers batches, then replaced: every buyer
/// gets an answer, the store holds one order per buyer, and every answer names the order the
/// store holds, whether it came from the dead worker or from the redelivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_nothing_and_doubles_nothing() {
    const BUYERS: u64 = 10_000;
    let queue = unique("crash");
    let _guard = BrokerGuard::request_queue(&queue);
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.db");
    let client = RpcClient::connect(&queue).await;
    // Every buy writes, so batches commit orders right up to the kill.
    let store = Store::open(
        store_path.to_str().unwrap(),
        order_core::SaleConfig {
            stock: 1_000_000,
            strategy: Strategy::Conditional,
        },
    )
    .await
    .unwrap();

    // Every request waits in the queue first, so the worker is killed while it still has
    // thousands to go.
    let mut replies = Vec::new();
    for user in 1..=BUYERS {
        let body = serde_json::to_vec(&serde_json::json!({ "user_id": user })).unwrap();
        replies.push((user, client.call_raw_later(&queue, body).await));
    }
    let mut doomed = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args([
            "--amqp-url",
            &amqp_url(),
            "--queue",
            &queue,
            "--batch",
            "64",
        ])
        .arg("--store")
        .arg(&store_path)
        .args(["--connection-name", &unique("doomed")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the worker binary starts");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while store.sale().await.unwrap().orders < 500 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first worker wrote nothing"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    doomed.kill().expect("kill -9");
    let _ = doomed.wait();
    let written_before = store.sale().await.unwrap().orders;
    eprintln!("killed the first worker after {written_before} orders");

    let _heir = spawn_worker(
        &queue,
        WorkerOptions {
            batch: 64,
            store: Some(store_path.clone()),
            ..Default::default()
        },
    )
    .await;
    let mut answers = HashMap::new();
    for (user, rx) in replies {
        let body = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("buyer {user} got no answer"))
            .unwrap();
        answers.insert(user, decode(&body));
    }

    let page = store.orders_page(0, 10_000).await.unwrap();
    let held: HashMap<u64, String> = page
        .orders
        .into_iter()
        .map(|o| (o.user_id, o.order_id))
        .collect();
    assert_eq!(held.len() as u64, BUYERS, "one order per buyer, no more");
    for (user, answer) in &answers {
        assert!(
            matches!(answer.outcome, Outcome::Ordered | Outcome::AlreadyOrdered),
            "{user}: {answer:?}"
        );
        assert_eq!(
            answer.order_id.as_ref(),
            held.get(user),
            "buyer {user} was told of the order the store holds"
        );
    }
    assert!(
        written_before < BUYERS,
        "the kill landed before the end ({written_before} orders written)"
    );
}
