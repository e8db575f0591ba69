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
