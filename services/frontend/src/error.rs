//! The front tier's errors and the status each one answers with (`{"error": "..."}`).
//! Causes are logged where they happen; the client gets a short reason.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::admission::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client's request is wrong (a bad user id).
    #[error("{0}")]
    BadRequest(String),
    /// The upstream answered, but not with something usable, or refused the connection.
    #[error("{0}")]
    UpstreamFailed(String),
    /// The upstream is not ready (broker down, reconnecting; backend store unavailable).
    #[error("{0}")]
    Unavailable(String),
    /// The upstream did not answer within the configured timeout.
    #[error("{0}")]
    Timeout(String),
    /// Admission: the route has as many buys in flight as it may. Answered at once, with
    /// `Retry-After`, instead of queueing the buyer behind them.
    #[error("{}", overloaded(route, refusal))]
    Overloaded {
        route: &'static str,
        refusal: Refusal,
    },
    /// The request queue refused the buy at once (full, or the cluster could not take it):
    /// 503 with `Retry-After`, as an admission refusal.
    #[error("{0}")]
    Refused(String),
}

fn overloaded(route: &str, refusal: &Refusal) -> String {
    match refusal {
        Refusal::Ceiling { limit } => {
            format!("too many buys in flight on the {route} route (limit {limit}); retry later")
        }
        Refusal::TargetWait { limit, target } => format!(
            "the {route} route is busy: another buy would wait longer than {} ms \
             (limit {limit} in flight); retry later",
            target.as_millis()
        ),
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UpstreamFailed(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) | Self::Overloaded { .. } | Self::Refused(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.to_string() }));
        if let Self::Overloaded { .. } | Self::Refused(_) = self {
            return (self.status(), [(header::RETRY_AFTER, "1")], body).into_response();
        }
        (self.status(), body).into_response()
    }
}
