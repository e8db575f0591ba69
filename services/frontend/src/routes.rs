//! The front tier's HTTP surface: `GET /http/buy`, `GET /mq/buy`, `GET /buy` (the default
//! route), `GET /healthz`, and `GET /sale` / `POST /admin/sale` passed through to the backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use order_core::{BuyResponse, Outcome, SaleState, UserId};
use serde::Deserialize;
use serde_json::json;
use tower_http::trace::TraceLayer;

use crate::admission::Admission;
use crate::config::Route;
use crate::error::ApiError;
use crate::gate::Gate;
use crate::http_upstream::{HttpUpstream, PassThrough};
use crate::metrics::Metrics;
use crate::rpc::RpcClient;

/// Set on answers the sold-out gate gave from memory.
pub const ANSWERED_BY: &str = "x-answered-by";

#[derive(Clone)]
pub struct AppState {
    pub http: HttpUpstream,
    pub rpc: RpcClient,
    pub gate: Gate,
    pub default_route: Route,
    pub metrics: Arc<Metrics>,
    /// Admission per route: HTTP, MQ.
    admission: Arc<[Admission; 2]>,
    /// The next user id handed out to a buy without `?user=` (as the original did).
    next_user: Arc<AtomicU64>,
}

impl AppState {
    pub fn new(
        http: HttpUpstream,
        rpc: RpcClient,
        gate: Gate,
        default_route: Route,
        admission: [Admission; 2],
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            http,
            rpc,
            gate,
            default_route,
            metrics,
            admission: Arc::new(admission),
            next_user: Arc::new(AtomicU64::new(1)),
        }
    }

    fn admission(&self, route: Route) -> &Admission {
        &self.admission[route as usize]
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/http/buy", get(http_buy))
        .route("/mq/buy", get(mq_buy))
        .route("/buy", get(default_buy))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/sale", get(sale))
        .route("/sale/orders", get(sale_orders))
        .route("/admin/sale", post(admin_sale))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

#[derive(Debug, Deserialize)]
pub struct BuyQuery {
    user: Option<String>,
}

impl AppState {
    /// The buyer: `?user=<id>` if given (400 if it is not a valid id), else the next counter id.
    fn user(&self, query: Result<Query<BuyQuery>, QueryRejection>) -> Result<UserId, ApiError> {
        let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        match query.user {
            Some(raw) => raw
                .parse()
                .map_err(|e| ApiError::BadRequest(format!("{e}"))),
            None => {
                let id = self.next_user.fetch_add(1, Ordering::Relaxed);
                UserId::new(id).map_err(|e| ApiError::BadRequest(format!("{e}")))
            }
        }
    }

    /// A buy on `route`: from the gate's memory when it is closed, else through admission to
    /// the route's upstream; every answer and refusal is counted.
    async fn buy(
        &self,
        route: Route,
        query: Result<Query<BuyQuery>, QueryRejection>,
    ) -> Result<Response, ApiError> {
        let started = Instant::now();
        let user = self.user(query).inspect_err(|error| {
            self.metrics.record(route, Err(error), started.elapsed());
        })?;
        tracing::Span::current().record("user_id", user.get());
        if let Some(answer) = self.gate.answer(user) {
            self.metrics
                .record_gated(route, answer.outcome, started.elapsed());
            return Ok(([(ANSWERED_BY, "gate")], Json(answer)).into_response());
        }
        let answer = self.buy_upstream(route, user).await;
        self.metrics
            .record(route, answer.as_ref().map(|a| a.outcome), started.elapsed());
        let answer = answer?;
        if answer.outcome == Outcome::SoldOut {
            self.gate.saw_sold_out();
        }
        Ok(Json(answer).into_response())
    }

    async fn buy_upstream(&self, route: Route, user: UserId) -> Result<BuyResponse, ApiError> {
        let mut permit = self.admission(route).try_admit().map_err(|refusal| {
            self.metrics.reject(route, refusal.reason());
            ApiError::Overloaded {
                route: route.as_str(),
                refusal,
            }
        })?;
        let answer = match route {
            Route::Http => self.http.buy(user).await.map_err(ApiError::from),
            Route::Mq => self.rpc.buy(user).await.map_err(|error| {
                tracing::warn!(%error, "MQ buy failed");
                if let Some(reason) = error.rejection_reason() {
                    self.metrics.reject(route, reason);
                }
                error.into()
            }),
        };
        if answer.is_ok() {
            permit.answered();
        }
        answer
    }
}

// Debug-level spans: at the default `info` level they cost nothing, and a gated answer is
// cheap enough that an enabled span per request would show in its throughput.
#[tracing::instrument(level = "debug", skip_all, fields(route = "http", user_id))]
async fn http_buy(
    State(state): State<AppState>,
    query: Result<Query<BuyQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    state.buy(Route::Http, query).await
}

#[tracing::instrument(level = "debug", skip_all, fields(route = "mq", user_id))]
async fn mq_buy(
    State(state): State<AppState>,
    query: Result<Query<BuyQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    state.buy(Route::Mq, query).await
}

#[tracing::instrument(level = "debug", skip_all, fields(route = ?state.default_route, user_id))]
async fn default_buy(
    State(state): State<AppState>,
    query: Result<Query<BuyQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    state.buy(state.default_route, query).await
}

/// `GET /metrics`: Prometheus text, with the RPC and gate gauges read now.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let metrics = &state.metrics;
    metrics.rpc_pending.set(state.rpc.pending() as i64);
    for route in [Route::Http, Route::Mq] {
        metrics.admission(route, state.admission(route));
    }
    let gate = state.gate.status();
    metrics.gate_closed.set(i64::from(gate.state == "closed"));
    metrics
        .sale_generation
        .set(i64::try_from(gate.generation).unwrap_or(i64::MAX));
    (
        [(header::CONTENT_TYPE, order_core::metrics::CONTENT_TYPE)],
        metrics.render(),
    )
}

/// 200 only when both upstreams are usable: the backend answers its own `/healthz` and the
/// RPC link to RabbitMQ is up. (Whether a worker is consuming is not checked: without one,
/// `/mq/buy` answers 504, which is the honest answer.)
async fn healthz(State(state): State<AppState>) -> Response {
    let http = state.http.check_health().await.map_err(|e| e.to_string());
    let mq = if state.rpc.is_connected() {
        Ok(())
    } else {
        Err("not connected to RabbitMQ".to_owned())
    };
    let healthy = http.is_ok() && mq.is_ok();
    let describe = |part: &Result<(), String>| match part {
        Ok(()) => "ok".to_owned(),
        Err(reason) => reason.clone(),
    };
    let body = json!({
        "status": if healthy { "ok" } else { "unavailable" },
        "http": describe(&http),
        "mq": describe(&mq),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The store's `/sale` with this front tier's gate added as `"gate"`.
async fn sale(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let answer = state
        .http
        .pass_through(Method::GET, "/sale", &headers, Bytes::new())
        .await?;
    if !answer.status.is_success() {
        return Ok(pass_through_response(answer));
    }
    let Ok(serde_json::Value::Object(mut sale)) = serde_json::from_slice(&answer.body) else {
        return Err(ApiError::UpstreamFailed(
            "the backend answered an unexpected /sale body".into(),
        ));
    };
    let gate = serde_json::to_value(state.gate.status()).expect("the gate status serializes");
    sale.insert("gate".into(), gate);
    Ok(Json(sale).into_response())
}

/// The buyers the store holds, paged (`?after=&limit=` as the backend takes them).
async fn sale_orders(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = match query {
        Some(query) => format!("/sale/orders?{query}"),
        None => "/sale/orders".to_owned(),
    };
    let answer = state
        .http
        .pass_through(Method::GET, &path, &headers, Bytes::new())
        .await?;
    Ok(pass_through_response(answer))
}

async fn admin_sale(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let answer = state
        .http
        .pass_through(Method::POST, "/admin/sale", &headers, body)
        .await?;
    if answer.status.is_success() {
        // Every gate must reopen for the new sale: this one now, the others by the event.
        match serde_json::from_slice::<SaleState>(&answer.body) {
            Ok(sale) => state.gate.reset_passed(sale.generation).await,
            Err(error) => tracing::warn!(%error, "the reset's answer is not a sale"),
        }
    }
    Ok(pass_through_response(answer))
}

fn pass_through_response(answer: PassThrough) -> Response {
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = answer.status;
    if let Some(content_type) = answer.content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
}
