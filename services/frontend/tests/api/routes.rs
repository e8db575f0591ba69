//! What the front tier answers on each route when everything is up.

use order_core::Strategy;
use serde_json::json;

use crate::helpers::*;

async fn ordered_then_sold_out_then_already_ordered(route: &str) {
    let stack = spawn_stack(StackOptions {
        stock: 1,
        ..Default::default()
    })
    .await;

    let (status_first, first) = stack.get(&format!("/{route}/buy?user=42")).await;
    let (status_other, other) = stack.get(&format!("/{route}/buy?user=43")).await;
    let (status_repeat, repeat) = stack.get(&format!("/{route}/buy?user=42")).await;

    assert_eq!((status_first, status_other, status_repeat), (200, 200, 200));
    assert_eq!(first["outcome"], "ordered");
    assert_eq!(first["user_id"], 42);
    assert_eq!(other, json!({"outcome": "sold_out", "user_id": 43}));
    assert_eq!(repeat["outcome"], "already_ordered");
    assert_eq!(repeat["order_id"], first["order_id"]);
    assert_eq!(stack.store.order_user_ids().await.unwrap(), vec![42]);
    stack.shutdown().await;
}

#[tokio::test]
async fn the_http_route_orders_then_sells_out_and_answers_a_repeat_user_already_ordered() {
    ordered_then_sold_out_then_already_ordered("http").await;
}

#[tokio::test]
async fn the_mq_route_orders_then_sells_out_and_answers_a_repeat_user_already_ordered() {
    ordered_then_sold_out_then_already_ordered("mq").await;
}

#[tokio::test]
async fn a_bad_user_id_is_a_400_with_a_reason_on_every_route() {
    let stack = spawn_stack(StackOptions::default()).await;

    for path in [
        "/http/buy?user=abc",
        "/mq/buy?user=0",
        "/buy?user=-1",
        "/buy?user=",
    ] {
        let (status, body) = stack.get(path).await;

        assert_eq!(status, 400, "{path}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("user id")),
            "{path}: {body}"
        );
    }
    assert_eq!(stack.store.sale().await.unwrap().orders, 0);
}

#[tokio::test]
async fn without_a_user_the_front_tier_numbers_buyers_from_a_counter_across_routes() {
    let stack = spawn_stack(StackOptions::default()).await;

    let (_, first) = stack.get("/http/buy").await;
    let (_, second) = stack.get("/mq/buy").await;
    let (_, third) = stack.get("/buy").await;

    assert_eq!(
        [&first["user_id"], &second["user_id"], &third["user_id"]],
        [1, 2, 3]
    );
    assert!(
        [first, second, third]
            .iter()
            .all(|answer| answer["outcome"] == "ordered")
    );
}

#[tokio::test]
async fn buy_takes_the_configured_default_route() {
    // No worker: the MQ route can only time out, so a 504 proves which route `/buy` took.
    let stack = spawn_stack(StackOptions {
        workers: 0,
        default_route: "mq",
        timeout_ms: 300,
        ..Default::default()
    })
    .await;

    let (via_default, _) = stack.get("/buy?user=1").await;
    let (via_http, _) = stack.get("/http/buy?user=2").await;

    assert_eq!((via_default, via_http), (504, 200));
}

#[tokio::test]
async fn sale_and_admin_sale_are_passed_through_to_the_backend_with_the_token() {
    let stack = spawn_stack(StackOptions::default()).await;
    stack.get("/http/buy?user=1").await;
    let reset = json!({"stock": 2, "strategy": "conditional"});

    let refused = stack
        .http
        .post(stack.url("/admin/sale"))
        .bearer_auth("wrong-token")
        .json(&reset)
        .send()
        .await
        .unwrap();
    let accepted = stack
        .http
        .post(stack.url("/admin/sale"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&reset)
        .send()
        .await
        .unwrap();
    let accepted_status = accepted.status();
    let (sale_status, sale) = stack.get("/sale").await;

    assert_eq!(refused.status(), 401);
    assert_eq!(accepted_status, 200);
    assert_eq!(sale_status, 200);
    assert_eq!(
        (&sale["stock"], &sale["orders"], &sale["strategy"]),
        (&json!(2), &json!(0), &json!("conditional")),
        "{sale}"
    );
    assert_eq!(
        sale["generation"], 2,
        "the first reset starts generation 2: {sale}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_real_nginx_and_two_replicas_conditional_sells_exactly_the_stock() {
    let stack = spawn_stack(StackOptions {
        stock: 50,
        strategy: Strategy::Conditional,
        via_nginx: true,
        ..StackOptions::default()
    })
    .await;

    // The admin token crosses front tier -> nginx -> backend.
    let reset = stack
        .http
        .post(stack.url("/admin/sale"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"stock": 50, "strategy": "conditional"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);

    let stack = &stack;
    let answers = futures_util::future::join_all(
        (1..=200).map(|user| async move { stack.get(&format!("/http/buy?user={user}")).await }),
    )
    .await;

    let ordered = ordered_users(&answers);
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "every buy answered 200"
    );
    assert_eq!(ordered.len(), 50);
    let held = stack.held_users().await;
    assert_eq!(held, ordered);
    let (_, sale) = stack.get("/sale").await;
    assert_eq!(sale["oversold"], 0);
}

#[tokio::test]
async fn sale_orders_is_passed_through_with_its_query() {
    let stack = spawn_stack(StackOptions::default()).await;
    for user in [4, 2, 8] {
        stack.get(&format!("/http/buy?user={user}")).await;
    }

    let (status, page) = stack.get("/sale/orders?after=2&limit=1").await;
    let (bad_status, _) = stack.get("/sale/orders?limit=0").await;

    assert_eq!(status, 200);
    assert_eq!(page["user_ids"], json!([4]), "{page}");
    assert_eq!(page["next_after"], 4, "{page}");
    assert_eq!(bad_status, 400);
}

#[tokio::test]
async fn healthz_is_200_when_both_upstreams_are_usable() {
    let stack = spawn_stack(StackOptions::default()).await;

    let (status, body) = stack.get("/healthz").await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["http"], "ok");
    assert_eq!(body["mq"], "ok");
}
