//! The front tier's errors and the status each one answers with (`{"error": "..."}`).
//! Causes are logged where they happen; the client gets a short reason.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

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
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UpstreamFailed(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({ "error": self.to_string() }))).into_response()
    }
}
