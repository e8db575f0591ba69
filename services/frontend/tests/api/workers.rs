//! Competing consumers: several workers on one queue. The queue serialized the original's
//! buys only because ONE worker took them one at a time; with two, `count-insert` races
//! again, while `conditional` is correct with any number of workers.

use order_core::Strategy;

use crate::helpers::*;

/// Long enough that two buyers sent together are both between their count and their
/// insert at once, on a loaded machine too.
const PAUSE_MS: u64 = 300;

#[tokio::test]
async fn one_count_insert_worker_with_prefetch_1_sells_the_last_unit_once() {
    let stack = spawn_stack(StackOptions {
        stock: 1,
        strategy: Strategy::CountInsert,
        workers: 1,
        prefetch: 1,
        worker_count_insert_pause_ms: PAUSE_MS,
        ..Default::default()
    })
    .await;

    let answers = stack.buy_all([1, 2]).await;

    assert_eq!(count_outcome(&answers, "ordered"), 1, "{answers:?}");
    assert_eq!(count_outcome(&answers, "sold_out"), 1, "{answers:?}");
    let sale = stack.store.sale().await.unwrap();
    assert_eq!((sale.orders, sale.oversold), (1, 0));
}

#[tokio::test]
async fn two_count_insert_workers_race_and_both_sell_the_last_unit() {
    // Each worker holds one request at a time, so the broker hands the second request to
    // the other worker while the first is paused between its count and its insert.
    let stack = spawn_stack(StackOptions {
        stock: 1,
        strategy: Strategy::CountInsert,
        workers: 2,
        prefetch: 1,
        worker_count_insert_pause_ms: PAUSE_MS,
        ..Default::default()
    })
    .await;

    let answers = stack.buy_all([1, 2]).await;

    assert_eq!(count_outcome(&answers, "ordered"), 2, "{answers:?}");
    let sale = stack.store.sale().await.unwrap();
    assert_eq!((sale.orders, sale.oversold), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_conditional_workers_never_oversell_under_1000_concurrent_buyers() {
    let stack = spawn_stack(StackOptions {
        stock: 100,
        strategy: Strategy::Conditional,
        workers: 2,
        prefetch: 8,
        timeout_ms: 30_000,
        // All 1,000 at once: above the default admission limit (512), which is not what
        // this test is about.
        frontend_args: vec!["--max-in-flight-mq=1000".into()],
        ..Default::default()
    })
    .await;

    let answers = stack.buy_all(1..=1000).await;

    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "every buy answered 200"
    );
    assert_eq!(count_outcome(&answers, "ordered"), 100);
    assert_eq!(count_outcome(&answers, "sold_out"), 900);
    let sale = stack.store.sale().await.unwrap();
    assert_eq!((sale.orders, sale.oversold), (100, 0));
    let ordered = ordered_users(&answers);
    let held = stack.held_users().await;
    assert_eq!(held, ordered, "lost 0, and no order nobody was told of");
    stack.shutdown().await;
}
