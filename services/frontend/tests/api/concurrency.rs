//! The original experiment's claim for the MQ route, checked.

use order_core::Strategy;

use crate::helpers::*;

#[tokio::test]
async fn one_worker_with_prefetch_1_sells_exactly_the_stock_to_300_concurrent_mq_buyers() {
    let stack = spawn_stack(StackOptions {
        stock: 100,
        strategy: Strategy::CountInsert,
        prefetch: 1,
        timeout_ms: 30_000,
        ..Default::default()
    })
    .await;

    let answers = futures_util::future::join_all(
        (1..=300).map(|user| stack.get_owned(format!("/mq/buy?user={user}"))),
    )
    .await;

    let count = |outcome: &str| {
        answers
            .iter()
            .filter(|(status, body)| *status == 200 && body["outcome"] == outcome)
            .count()
    };
    assert_eq!((count("ordered"), count("sold_out")), (100, 200));
    let sale = stack.store.sale().await.unwrap();
    assert_eq!((sale.orders, sale.oversold), (100, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batched_worker_with_count_insert_sells_exactly_the_stock_to_1000_concurrent_mq_buyers()
{
    let stack = spawn_stack(StackOptions {
        stock: 100,
        strategy: Strategy::CountInsert,
        batch: 64,
        timeout_ms: 30_000,
        ..Default::default()
    })
    .await;

    let answers = futures_util::future::join_all(
        (1..=1000).map(|user| stack.get_owned(format!("/mq/buy?user={user}"))),
    )
    .await;

    let count = |outcome: &str| {
        answers
            .iter()
            .filter(|(status, body)| *status == 200 && body["outcome"] == outcome)
            .count()
    };
    assert_eq!((count("ordered"), count("sold_out")), (100, 900));
    // Nothing lost: every buyer told `ordered` is in the store, and nobody else.
    let ordered: std::collections::BTreeSet<u64> = answers
        .iter()
        .filter(|(_, body)| body["outcome"] == "ordered")
        .map(|(_, body)| body["user_id"].as_u64().unwrap())
        .collect();
    let held: std::collections::BTreeSet<u64> = stack
        .store
        .order_user_ids()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(held, ordered);
    assert_eq!(stack.store.sale().await.unwrap().oversold, 0);
}
