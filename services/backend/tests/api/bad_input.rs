use order_core::Strategy;

use crate::helpers::spawn_app;

#[tokio::test]
async fn each_malformed_user_id_is_a_400_with_a_json_reason() {
    let app = spawn_app(100, Strategy::CountInsert).await;

    for bad in [
        "abc",
        "0",
        "-1",
        "%2B1",
        "1.5",
        "99999999999999999999",
        "9223372036854775808",
        "",
    ] {
        let (status, body) = app.get(&format!("/buy/{bad}")).await;
        assert_eq!(status, 400, "/buy/{bad}");
        let reason = body["error"].as_str().unwrap_or_default();
        assert!(!reason.is_empty(), "/buy/{bad} gives a reason: {body}");
    }
    assert_eq!(app.sale().await.orders, 0, "no bad request made an order");
}

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app(100, Strategy::CountInsert).await;
    let (status, body) = app.get("/healthz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
}
