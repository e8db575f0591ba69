//! What a worker answers, and what it refuses.

use lapin::BasicProperties;
use order_core::{Outcome, Strategy, UserId};

use crate::helpers::*;

#[tokio::test]
async fn a_buy_is_answered_ordered_then_already_ordered_then_sold_out() {
    let queue = unique("rpc");
    let _guard = BrokerGuard::request_queue(&queue);
    let worker = spawn_worker(
        &queue,
        WorkerOptions {
            stock: 1,
            ..Default::default()
        },
    )
    .await;
    let client = RpcClient::connect(&queue).await;

    let first = client.buy(&queue, 42).await;
    let repeat = client.buy(&queue, 42).await;
    let other = client.buy(&queue, 43).await;

    assert_eq!(first.outcome, Outcome::Ordered);
    assert_eq!(first.user_id, 42);
    assert_eq!(repeat.outcome, Outcome::AlreadyOrdered);
    assert_eq!(repeat.order_id, first.order_id);
    assert_eq!(other.outcome, Outcome::SoldOut);
    assert_eq!(worker.store.order_user_ids().await.unwrap(), vec![42]);
    // Every request was acknowledged: nothing is left in the queue.
    assert_eq!(client.message_count(&queue).await, 0);
}

#[tokio::test]
async fn a_redelivered_request_answers_already_ordered_without_a_second_order() {
    let queue = unique("redelivery");
    let _guard = BrokerGuard::request_queue(&queue);
    let worker = spawn_worker(&queue, WorkerOptions::default()).await;
    let client = RpcClient::connect(&queue).await;
    // As if a worker had written the order and died before acking: the order exists.
    let user = UserId::new(7).unwrap();
    let written = order_core::buy(&worker.store, user).await.unwrap();

    let answer = client.buy(&queue, 7).await;

    assert_eq!(answer.outcome, Outcome::AlreadyOrdered);
    assert_eq!(answer.order_id, written.order_id);
    assert_eq!(worker.store.sale().await.unwrap().orders, 1);
}

#[tokio::test]
async fn malformed_messages_are_dead_lettered_and_the_next_good_one_is_served() {
    let queue = unique("malformed");
    let _guard = BrokerGuard::request_queue(&queue);
    let worker = spawn_worker(&queue, WorkerOptions::default()).await;
    let client = RpcClient::connect(&queue).await;
    let with_reply = || {
        BasicProperties::default()
            .with_reply_to("amq.rabbitmq.reply-to.unused".into())
            .with_correlation_id("c".into())
    };

    // Not JSON; a user id of 0; a valid body but nowhere to reply.
    client.publish(&queue, b"not json", with_reply()).await;
    client
        .publish(&queue, br#"{"user_id": 0}"#, with_reply())
        .await;
    client
        .publish(&queue, br#"{"user_id": 5}"#, BasicProperties::default())
        .await;
    let answer = client.buy(&queue, 9).await;

    assert_eq!(answer.outcome, Outcome::Ordered);
    let dead = queue_contract::topology::dead_letter_queue(&queue);
    eventually("three messages dead-lettered", || async {
        client.message_count(&dead).await == 3
    })
    .await;
    assert_eq!(worker.store.order_user_ids().await.unwrap(), vec![9]);
}

#[tokio::test]
async fn prefetch_1_serializes_count_insert_so_300_concurrent_buyers_get_exactly_100_orders() {
    let queue = unique("prefetch1");
    let _guard = BrokerGuard::request_queue(&queue);
    let worker = spawn_worker(&queue, WorkerOptions::default()).await;
    let client = RpcClient::connect(&queue).await;

    let answers =
        futures_util::future::join_all((1..=300).map(|user| client.buy(&queue, user))).await;

    let ordered = answers
        .iter()
        .filter(|a| a.outcome == Outcome::Ordered)
        .count();
    let sold_out = answers
        .iter()
        .filter(|a| a.outcome == Outcome::SoldOut)
        .count();
    assert_eq!((ordered, sold_out), (100, 200));
    let sale = worker.store.sale().await.unwrap();
    assert_eq!((sale.orders, sale.oversold), (100, 0));
    assert_eq!(sale.strategy, Strategy::CountInsert);
}
