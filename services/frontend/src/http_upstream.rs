//! The HTTP route: one pooled keep-alive client to the backend (nginx in front of the
//! replicas, or one backend directly), used for buys and for the passed-through sale API.
//!
//! Every call is bounded by the configured timeout. Failures are [`UpstreamError`]s, which
//! map to the design's codes: unreachable, a broken connection or a garbled answer -> 502,
//! the backend's own 503 -> 503, no answer in time (or the backend's 504) -> 504.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use order_core::{BuyResponse, UserId};

use crate::error::ApiError;

/// Health checks get a short leash of their own, so `/healthz` answers fast.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a call to the backend gave no usable answer. The messages are what a client may see;
/// the full cause is logged where the call failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the backend did not answer in time")]
    Timeout,
    #[error("the backend is unreachable")]
    Unreachable,
    #[error("the backend connection failed")]
    ConnectionFailed,
    /// The backend answered with an error status; `reason` is its `{"error": ...}`, or the
    /// status when the body has none.
    #[error("{reason}")]
    Status { status: StatusCode, reason: String },
    /// A success whose body is not what was asked for.
    #[error("the backend answered an unexpected body")]
    UnexpectedBody(#[source] serde_json::Error),
}

impl From<UpstreamError> for ApiError {
    fn from(error: UpstreamError) -> Self {
        let reason = error.to_string();
        match error {
            UpstreamError::Timeout => ApiError::Timeout(reason),
            UpstreamError::Status { status, .. } if status == StatusCode::SERVICE_UNAVAILABLE => {
                ApiError::Unavailable(reason)
            }
            UpstreamError::Status { status, .. } if status == StatusCode::GATEWAY_TIMEOUT => {
                ApiError::Timeout(reason)
            }
            UpstreamError::Unreachable
            | UpstreamError::ConnectionFailed
            | UpstreamError::Status { .. }
            | UpstreamError::UnexpectedBody(_) => ApiError::UpstreamFailed(reason),
        }
    }
}

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
    pub async fn buy(&self, user: UserId) -> Result<BuyResponse, UpstreamError> {
        let answer = self.get_json(&format!("/buy/{user}")).await;
        if let Err(UpstreamError::Status { status, reason }) = &answer {
            tracing::warn!(%status, %reason, "the backend refused a buy");
        }
        answer
    }

    /// Forwards a request to the backend and hands back its answer unchanged.
    pub async fn pass_through(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<PassThrough, UpstreamError> {
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

    /// `GET {backend}{path}`, a 2xx JSON answer decoded as `T`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, UpstreamError> {
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
            return Err(UpstreamError::Status { status, reason });
        }
        serde_json::from_slice(&body).map_err(|error| {
            tracing::warn!(%error, path, "the backend answered an unexpected body");
            UpstreamError::UnexpectedBody(error)
        })
    }

    /// `GET {backend}/healthz` answered 2xx within a short timeout.
    pub async fn check_health(&self) -> Result<(), UpstreamError> {
        let response = self
            .client
            .get(format!("{}/healthz", self.base))
            .timeout(HEALTH_TIMEOUT)
            .send()
            .await
            .map_err(|error| classify(&error))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(UpstreamError::Status {
                status,
                reason: format!("the backend answered {status}"),
            })
        }
    }
}

fn request_error(error: reqwest::Error) -> UpstreamError {
    tracing::warn!(error = %error, "calling the backend failed");
    classify(&error)
}

fn classify(error: &reqwest::Error) -> UpstreamError {
    if error.is_timeout() {
        UpstreamError::Timeout
    } else if error.is_connect() {
        UpstreamError::Unreachable
    } else {
        UpstreamError::ConnectionFailed
    }
}

/// The `error` field of a JSON error body, if there is one.
fn error_reason(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("error")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_upstream_failure_answers_the_designed_status() {
        let status = |status, reason: &str| UpstreamError::Status {
            status,
            reason: reason.into(),
        };
        let bad_body = serde_json::from_slice::<BuyResponse>(b"junk").unwrap_err();
        let cases = [
            (UpstreamError::Timeout, 504),
            (UpstreamError::Unreachable, 502),
            (UpstreamError::ConnectionFailed, 502),
            (
                status(StatusCode::SERVICE_UNAVAILABLE, "store unavailable"),
                503,
            ),
            (status(StatusCode::GATEWAY_TIMEOUT, "timed out"), 504),
            (status(StatusCode::INTERNAL_SERVER_ERROR, "boom"), 502),
            (UpstreamError::UnexpectedBody(bad_body), 502),
        ];
        for (error, code) in cases {
            let shown = error.to_string();
            let error = ApiError::from(error);
            assert_eq!(error.status(), code, "{shown}");
            assert_eq!(error.to_string(), shown, "the reason is passed on");
        }
    }
}
