//! HTTP routes: `GET /buy/{user_id}`, `GET /healthz`, `GET /sale`, `POST /admin/sale`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use order_core::{BuyResponse, SaleConfig, SaleOrdersPage, SaleState, Store, UserId};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::metrics::{BuyOutcome, Metrics};
use order_core::metrics::GaugeGuard;

/// No request is held longer than this; a stuck store answers 503 instead of hanging a client.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct AppState {
    store: Store,
    admin_token: Option<Arc<str>>,
    /// Permits for buys in flight: the concurrency limit in front of the store.
    buy_permits: Arc<Semaphore>,
    max_in_flight: u32,
    metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(
        store: Store,
        admin_token: Option<String>,
        max_in_flight: u32,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            admin_token: admin_token.map(Arc::from),
            buy_permits: Arc::new(Semaphore::new(max_in_flight as usize)),
            max_in_flight,
            metrics,
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/buy/{user_id}", get(buy))
        // `/buy/` with an empty id would otherwise be a bare 404 with no reason.
        .route(
            "/buy/",
            get(|| async { ApiError::BadRequest("user id is empty".into()) }),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/sale", get(sale))
        .route("/sale/orders", get(sale_orders))
        .route("/admin/sale", post(reset_sale))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

#[tracing::instrument(skip_all, fields(user_id = %raw_user))]
async fn buy(
    State(state): State<AppState>,
    Path(raw_user): Path<String>,
) -> Result<Json<BuyResponse>, ApiError> {
    let started = Instant::now();
    let answer = decide(&state, &raw_user).await;
    let outcome = match &answer {
        Ok(response) => BuyOutcome::Answered(response.outcome),
        Err(ApiError::BadRequest(_)) => BuyOutcome::BadRequest,
        Err(ApiError::Overloaded(_)) => BuyOutcome::Rejected,
        Err(_) => BuyOutcome::StoreError,
    };
    state.metrics.record_buy(outcome, started.elapsed());
    answer.map(Json)
}

async fn decide(state: &AppState, raw_user: &str) -> Result<BuyResponse, ApiError> {
    let user: UserId = raw_user
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("{e}")))?;
    // Refused at once past the limit: waiting would only move the pile-up into this queue.
    let Ok(permit) = Arc::clone(&state.buy_permits).try_acquire_owned() else {
        state.metrics.rejected_store_limit.inc();
        return Err(ApiError::Overloaded(state.max_in_flight));
    };
    // The buy runs in its own task, holding the permit until the store is done with it: a
    // client that gives up (or the request timeout) must not free the permit while the
    // store still works for it, or the limit would not bound the store's work.
    let store = state.store.clone();
    let in_flight = GaugeGuard::new(state.metrics.in_flight.clone());
    let decided = tokio::spawn(async move {
        let answer = order_core::buy(&store, user).await;
        drop((permit, in_flight));
        answer
    });
    Ok(decided.await.map_err(order_core::StoreError::from)??)
}

/// `GET /metrics`: Prometheus text, with the sale's progress read from the store now.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let sale = state.store.sale().await.ok();
    (
        [(header::CONTENT_TYPE, order_core::metrics::CONTENT_TYPE)],
        state.metrics.render(sale.as_ref()),
    )
}

async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await?;
    Ok(Json(json!({ "status": "ok" })))
}

async fn sale(State(state): State<AppState>) -> Result<Json<SaleState>, ApiError> {
    Ok(Json(state.store.sale().await?))
}

/// Most user ids one `/sale/orders` page carries.
const MAX_PAGE: u32 = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrdersPageQuery {
    /// Only ids greater than this (the previous page's `next_after`).
    #[serde(default)]
    after: u64,
    #[serde(default = "max_page")]
    limit: u32,
    /// Also list each buyer's order id (`orders`), as the front tier's sold-out gate needs.
    #[serde(default)]
    order_ids: bool,
}

fn max_page() -> u32 {
    MAX_PAGE
}

/// `GET /sale/orders?after=<id>&limit=<n>[&order_ids=true]`: the buyers the store holds,
/// ascending, so a load tester can check every `ordered` answer against the store, not just
/// the count, and a front tier can learn the winners of a sold-out sale.
async fn sale_orders(
    State(state): State<AppState>,
    query: Result<Query<OrdersPageQuery>, QueryRejection>,
) -> Result<Json<SaleOrdersPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if !(1..=MAX_PAGE).contains(&query.limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let page = state.store.orders_page(query.after, query.limit).await?;
    Ok(Json(SaleOrdersPage::new(
        page,
        query.limit,
        query.order_ids,
    )))
}

#[tracing::instrument(skip_all)]
async fn reset_sale(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<SaleConfig>, JsonRejection>,
) -> Result<Json<SaleState>, ApiError> {
    let expected = state
        .admin_token
        .as_deref()
        .ok_or(ApiError::AdminDisabled)?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|token| constant_time_eq(token.as_bytes(), expected.as_bytes())) {
        return Err(ApiError::Unauthorized);
    }
    let Json(sale) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let reset = state.store.reset(sale).await?;
    tracing::info!(
        stock = sale.stock,
        strategy = %sale.strategy,
        generation = reset.generation,
        "sale reset"
    );
    Ok(Json(reset))
}

/// Compares tokens without an early exit, so timing does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
