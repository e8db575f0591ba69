use order_core::Strategy;

use crate::helpers::{ADMIN_TOKEN, spawn_app, spawn_app_with};

const NEW_SALE: &str = r#"{"stock": 3, "strategy": "conditional"}"#;

#[tokio::test]
async fn admin_without_a_token_or_with_a_wrong_one_is_a_401_and_changes_nothing() {
    let app = spawn_app(100, Strategy::CountInsert).await;
    app.buy(1).await;

    assert_eq!(app.reset(None, NEW_SALE).await.0, 401);
    assert_eq!(app.reset(Some("wrong-token"), NEW_SALE).await.0, 401);
    assert_eq!(app.reset(Some(""), NEW_SALE).await.0, 401);

    let sale = app.sale().await;
    assert_eq!(
        (sale.stock, sale.orders, sale.strategy),
        (100, 1, Strategy::CountInsert)
    );
}

#[tokio::test]
async fn admin_with_the_token_resets_the_sale() {
    let app = spawn_app(100, Strategy::CountInsert).await;
    app.buy(1).await;
    let before = app.sale().await.generation;

    let (status, body) = app.reset(Some(ADMIN_TOKEN), NEW_SALE).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({
            "stock": 3, "orders": 0, "oversold": 0, "strategy": "conditional",
            "generation": before + 1, "sold_out": false, "buyers_final": false,
        })
    );
}

#[tokio::test]
async fn admin_with_a_malformed_body_is_a_400_with_a_reason() {
    let app = spawn_app(100, Strategy::CountInsert).await;
    for body in [
        "not json",
        r#"{"stock": -1, "strategy": "conditional"}"#,
        r#"{"stock": 5, "strategy": "fastest"}"#,
        r#"{"stock": 5}"#,
    ] {
        let (status, reply) = app.reset(Some(ADMIN_TOKEN), body).await;
        assert_eq!(status, 400, "{body}");
        assert!(reply["error"].is_string(), "{reply}");
    }
    assert_eq!(app.sale().await.stock, 100);
}

#[tokio::test]
async fn without_a_configured_token_the_admin_api_is_off() {
    let app = spawn_app_with(100, Strategy::CountInsert, None).await;
    let (status, body) = app.reset(Some("anything"), NEW_SALE).await;
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("--admin-token"),
        "{body}"
    );
}
