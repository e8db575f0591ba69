//! The optional health listener, for orchestrators, the native stack and Prometheus:
//! `GET /healthz` is 200 while the worker has a consumer registered with the broker, 503
//! otherwise (connecting, reconnecting, stopping); `GET /metrics` is the worker's metrics.

use axum::extract::State;
use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;

use crate::metrics::Metrics;

#[derive(Clone)]
struct HealthState {
    consuming: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

pub(crate) fn router(consuming: watch::Receiver<bool>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(serve_metrics))
        .with_state(HealthState { consuming, metrics })
}

async fn serve_metrics(State(state): State<HealthState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, order_core::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
}

async fn healthz(State(state): State<HealthState>) -> impl IntoResponse {
    if *state.consuming.borrow() {
        (StatusCode::OK, Json(json!({"status": "consuming"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not consuming"})),
        )
    }
}
