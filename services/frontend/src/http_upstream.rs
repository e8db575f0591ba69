//! The HTTP route: one pooled keep-alive client to the backend (nginx in front of the
//! replicas, or one backend directly), used for buys and for the passed-through sale API.
//!
//! Every call is bounded by the configured timeout. Failures map to the design's codes:
//! connection refused or a garbled answer -> 502, the backend's own 503 -> 503, no answer in
//! time -> 504.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use order_core::{BuyResponse, UserId};

use crate::error::ApiError;

/// Health checks get a short leash of their own, so `/healthz` answers fast.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// A response passed through as is: status, content type and body.
#[derive(Debug)]
pub struct PassThrough {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

#[derive(Debug, Clone)]
pub struct HttpUpstream {
    client: reqwest::Client,
    base: String,
}

impl HttpUpstream {
    pub fn new(base: String, timeout: Duration) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self { client, base })
    }

    /// `GET {backend}/buy/{user}`.
    pub async fn buy(&self, user: UserId) -> Result<BuyResponse, ApiError> {
        let url = format!("{}/buy/{user}", self.base);
        let response = self.client.get(&url).send().await.map_err(request_error)?;
        let status = response.status();
        let body = response.bytes().await.map_err(request_error)?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|error| {
                tracing::warn!(%error, "the backend answered something that is not a buy response");
                ApiError::UpstreamFailed("the backend answered an unexpected body".into())
            });
        }
        let reason =
            error_reason(&body).unwrap_or_else(|| format!("the backend answered {status}"));
        tracing::warn!(%status, %reason, "the backend refused a buy");
        Err(match status {
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(reason),
            StatusCode::GATEWAY_TIMEOUT => ApiError::Timeout(reason),
            _ => ApiError::UpstreamFailed(reason),
        })
    }

    /// Forwards a request to the backend and hands back its answer unchanged.
    pub async fn pass_through(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<PassThrough, ApiError> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
            if let Some(value) = headers.get(&name) {
                request = request.header(name, value.clone());
            }
        }
        let response = request.body(body).send().await.map_err(request_error)?;
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = response.bytes().await.map_err(request_error)?;
        Ok(PassThrough {
            status,
            content_type,
            body,
        })
    }

    /// `GET {backend}{path}`, a 2xx JSON answer decoded as `T` (the sale API, for the gate).
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ApiError> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        let body = response.bytes().await.map_err(request_error)?;
        if !status.is_success() {
            let reason =
                error_reason(&body).unwrap_or_else(|| format!("the backend answered {status}"));
            return Err(ApiError::UpstreamFailed(reason));
        }
        serde_json::from_slice(&body).map_err(|error| {
            ApiError::UpstreamFailed(format!("the backend answered an unexpected body: {error}"))
        })
    }

    /// `GET {backend}/healthz` answered 2xx within a short timeout.
    pub async fn check_health(&self) -> Result<(), String> {
        let response = self
            .client
            .get(format!("{}/healthz", self.base))
            .timeout(HEALTH_TIMEOUT)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the backend answered {}", response.status()))
        }
    }
}

fn request_error(error: reqwest::Error) -> ApiError {
    let reason = describe(&error);
    tracing::warn!(error = %error, "calling the backend failed");
    if error.is_timeout() {
        ApiError::Timeout(reason)
    } else {
        ApiError::UpstreamFailed(reason)
    }
}

/// A short client-facing description; the full error chain goes to the log.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "the backend did not answer in time".into()
    } else if error.is_connect() {
        "the backend is unreachable".into()
    } else {
        "the backend connection failed".into()
    }
}

/// The `error` field of a JSON error body, if there is one.
fn error_reason(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("error")?.as_str().map(str::to_owned)
}
