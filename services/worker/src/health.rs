//! Optional `GET /healthz` for orchestrators and the native stack: 200 while the worker has a
//! consumer registered with the broker, 503 otherwise (connecting, reconnecting, stopping).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;

pub(crate) fn router(consuming: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(consuming)
}

async fn healthz(State(consuming): State<watch::Receiver<bool>>) -> impl IntoResponse {
    if *consuming.borrow() {
        (StatusCode::OK, Json(json!({"status": "consuming"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not consuming"})),
        )
    }
}
