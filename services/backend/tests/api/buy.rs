use std::collections::HashSet;

use futures_util::future::join_all;
use order_core::{Outcome, Strategy};

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_sells_exactly_the_stock_to_500_concurrent_buyers() {
    let app = spawn_app(100, Strategy::Conditional).await;

    let answers = join_all((1..=500).map(|user| app.buy(user))).await;

    let ordered: HashSet<u64> = answers
        .iter()
        .filter(|a| a.outcome == Outcome::Ordered)
        .map(|a| a.user_id)
        .collect();
    let sold_out = answers
        .iter()
        .filter(|a| a.outcome == Outcome::SoldOut)
        .count();
    assert_eq!(ordered.len(), 100);
    assert_eq!(sold_out, 400);

    let held: HashSet<u64> = app
        .store
        .order_user_ids()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        held, ordered,
        "the store holds exactly the buyers who were told `ordered`"
    );
    let sale = app.sale().await;
    assert_eq!((sale.stock, sale.orders, sale.oversold), (100, 100, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_user_buying_50_times_at_once_gets_one_order() {
    for strategy in [Strategy::CountInsert, Strategy::Conditional] {
        let app = spawn_app(100, strategy).await;

        let answers = join_all((0..50).map(|_| app.buy(42))).await;

        let ordered = answers
            .iter()
            .filter(|a| a.outcome == Outcome::Ordered)
            .count();
        let repeats = answers
            .iter()
            .filter(|a| a.outcome == Outcome::AlreadyOrdered)
            .count();
        assert_eq!((ordered, repeats), (1, 49), "{strategy}");
        let order_ids: HashSet<_> = answers
            .iter()
            .map(|a| a.order_id.clone().unwrap())
            .collect();
        assert_eq!(
            order_ids.len(),
            1,
            "{strategy}: every answer names the one order"
        );
        assert_eq!(
            app.store.order_user_ids().await.unwrap(),
            vec![42],
            "{strategy}"
        );
    }
}

#[tokio::test]
async fn a_buyer_is_ordered_then_told_already_ordered_and_others_see_sold_out() {
    let app = spawn_app(1, Strategy::CountInsert).await;

    let first = app.buy(1).await;
    assert_eq!(first.outcome, Outcome::Ordered);
    let again = app.buy(1).await;
    assert_eq!(
        (again.outcome, again.order_id),
        (Outcome::AlreadyOrdered, first.order_id)
    );
    assert_eq!(app.buy(2).await.outcome, Outcome::SoldOut);

    let sale = app.sale().await;
    assert_eq!((sale.stock, sale.orders, sale.oversold), (1, 1, 0));
}

#[tokio::test]
async fn sale_orders_lists_every_buyer_in_pages() {
    let app = spawn_app(5, Strategy::Conditional).await;
    for user in [9, 3, 7, 1, 5, 11] {
        app.buy(user).await; // 11 is the sixth buyer: sold out
    }

    let generation = app.sale().await.generation;

    let (status, first) = app.get("/sale/orders?limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(
        first,
        serde_json::json!({"generation": generation, "user_ids": [1, 3], "next_after": 3})
    );
    let (_, rest) = app.get("/sale/orders?after=3").await;
    assert_eq!(
        rest,
        serde_json::json!({"generation": generation, "user_ids": [5, 7, 9], "next_after": null})
    );
    // With the order ids, as the front tier's sold-out gate reads the winners.
    let (_, with_ids) = app.get("/sale/orders?after=7&order_ids=true").await;
    let order_of_9 = app.buy(9).await.order_id.unwrap();
    assert_eq!(
        with_ids,
        serde_json::json!({
            "generation": generation, "user_ids": [9],
            "orders": [{"user_id": 9, "order_id": order_of_9}], "next_after": null,
        })
    );

    for bad in [
        "?limit=0",
        "?limit=10001",
        "?after=abc",
        "?after=-1",
        "?page=2",
    ] {
        let (status, body) = app.get(&format!("/sale/orders{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
}
