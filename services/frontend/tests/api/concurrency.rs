//! The original experiment's claim for the MQ route, checked.

use order_core::Strategy;

use crate::helpers::*;

/// How many buyers were answered 200 `ordered`, and how many 200 `sold_out`.
fn ordered_and_sold_out(answers: &[(u16, serde_json::Value)]) -> (usize, usize) {
    (
        count_outcome(answers, "ordered"),
        count_outcome(answers, "sold_out"),
    )
}

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

    let answers = stack.buy_all(1..=300).await;

    assert_eq!(ordered_and_sold_out(&answers), (100, 200));
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
        // All 1,000 at once: above the default admission limit (512), which is not what
        // this test is about.
        frontend_args: vec!["--max-in-flight-mq=1000".into()],
        ..Default::default()
    })
    .await;

    let answers = stack.buy_all(1..=1000).await;

    assert_eq!(ordered_and_sold_out(&answers), (100, 900));
    // Nothing lost: every buyer told `ordered` is in the store, and nobody else.
    let ordered = ordered_users(&answers);
    let held = stack.held_users().await;
    assert_eq!(held, ordered);
    assert_eq!(stack.store.sale().await.unwrap().oversold, 0);
}
