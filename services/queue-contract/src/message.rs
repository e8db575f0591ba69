//! The RPC wire format: a request body `{"user_id": 42}` with the AMQP properties `reply_to`
//! and `correlation_id`; the reply body is the buy response JSON, or `{"error": "..."}` when
//! the worker could not reach the store (the front tier answers that with a 502).

use lapin::BasicProperties;
use order_core::{InvalidUserId, UserId};
use serde::{Deserialize, Serialize};

/// The body of a buy request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyRequest {
    pub user_id: u64,
}

/// The body of a reply that is not a buy response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}

/// A request the worker can answer: who buys, where to reply, with which correlation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub user: UserId,
    pub reply_to: String,
    pub correlation_id: String,
}

/// Why a message is not a request. Such messages are rejected without requeue.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRequest {
    #[error("no reply_to property")]
    NoReplyTo,
    #[error("no correlation_id property")]
    NoCorrelationId,
    #[error("body is not {{\"user_id\": <positive integer>}}: {0}")]
    Body(#[from] serde_json::Error),
    #[error(transparent)]
    UserId(#[from] InvalidUserId),
}

impl Request {
    pub fn parse(properties: &BasicProperties, body: &[u8]) -> Result<Self, InvalidRequest> {
        let reply_to = properties
            .reply_to()
            .as_ref()
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .ok_or(InvalidRequest::NoReplyTo)?;
        let correlation_id = properties
            .correlation_id()
            .as_ref()
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .ok_or(InvalidRequest::NoCorrelationId)?;
        let BuyRequest { user_id } = serde_json::from_slice(body)?;
        Ok(Self {
            user: UserId::new(user_id)?,
            reply_to: reply_to.to_owned(),
            correlation_id: correlation_id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props() -> BasicProperties {
        BasicProperties::default()
            .with_reply_to("replies".into())
            .with_correlation_id("c1".into())
    }

    #[test]
    fn a_well_formed_request_parses() {
        let request = Request::parse(&props(), br#"{"user_id": 42}"#).unwrap();
        assert_eq!(request.user.get(), 42);
        assert_eq!(request.reply_to, "replies");
        assert_eq!(request.correlation_id, "c1");
    }

    #[test]
    fn malformed_requests_are_refused_with_a_reason() {
        let cases: [(BasicProperties, &[u8]); 6] = [
            (
                BasicProperties::default().with_correlation_id("c".into()),
                br#"{"user_id": 1}"#,
            ),
            (
                BasicProperties::default().with_reply_to("r".into()),
                br#"{"user_id": 1}"#,
            ),
            (props(), b"not json"),
            (props(), br#"{"user_id": "1"}"#),
            (props(), br#"{"user_id": 0}"#),
            (props(), br#"{"user_id": 9223372036854775808}"#),
        ];
        for (properties, body) in cases {
            assert!(
                Request::parse(&properties, body).is_err(),
                "{:?} should be refused",
                String::from_utf8_lossy(body)
            );
        }
    }
}
