//! The backend's errors and the status code each one answers with. Internal causes are
//! logged here and never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use order_core::StoreError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or wrong admin token")]
    Unauthorized,
    #[error(
        "the admin API is disabled: start the backend with --admin-token (FLASHSALE_ADMIN_TOKEN)"
    )]
    AdminDisabled,
    #[error("the sale was reset during this buy; try again")]
    SaleReset,
    #[error("too many buys in flight (limit {0}); retry later")]
    Overloaded(u32),
    /// The store failed; the client is told only [`StoreError::reason`].
    #[error("{}", .0.reason())]
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::SaleReset => Self::SaleReset,
            // What was asked cannot be done on this store (e.g. row-lock on MongoDB).
            StoreError::Unsupported(reason) => Self::BadRequest(reason),
            other => Self::Store(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::AdminDisabled => StatusCode::NOT_FOUND,
            Self::SaleReset | Self::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(cause) => {
                tracing::error!(error = %cause, "store call failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if let Self::Overloaded(_) = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
