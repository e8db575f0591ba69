//! Classification of every request's fate, and the counts per class.
//!
//! Each request sent ends in exactly one class, so the counts add up to the requests sent.
//! A 2xx body is read as a buy answer (`{"outcome": ...}`); a 2xx that is not one (a
//! health check, a static page) is `other`, which is not an error.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ordered,
    SoldOut,
    AlreadyOrdered,
    /// A response that is neither a buy answer nor an error status (e.g. 200 from nginx).
    Other,
    Http4xx,
    Http5xx,
    /// No complete answer within the per-request timeout.
    Timeout,
    /// The TCP connection (or the HTTP handshake) could not be made.
    ConnectError,
    /// An open connection broke before the answer was complete.
    IoError,
}

impl Outcome {
    /// Whether the server answered (so the latency is meaningful and recorded).
    pub fn answered(self) -> bool {
        !matches!(self, Self::Timeout | Self::ConnectError | Self::IoError)
    }

    /// Whether the request counts as an error in the summaries.
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Self::Http4xx | Self::Http5xx | Self::Timeout | Self::ConnectError | Self::IoError
        )
    }

    /// The outcome's name in per-buyer files (`--buyers-out`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ordered => "ordered",
            Self::SoldOut => "sold_out",
            Self::AlreadyOrdered => "already_ordered",
            Self::Other => "other",
            Self::Http4xx => "4xx",
            Self::Http5xx => "5xx",
            Self::Timeout => "timeout",
            Self::ConnectError => "connect_error",
            Self::IoError => "io_error",
        }
    }
}

/// One request's fate as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub outcome: Outcome,
    /// The HTTP status; `None` when no complete answer came.
    pub status: Option<u16>,
    /// The user id the body names, if any.
    pub user: Option<u64>,
    /// The order id the body carries, kept only when asked for (it costs an allocation).
    pub order_id: Option<Box<str>>,
}

impl Answer {
    /// A request that got no complete answer (timeout, connect or I/O error).
    pub fn failed(outcome: Outcome) -> Self {
        Self {
            outcome,
            status: None,
            user: None,
            order_id: None,
        }
    }
}

/// Counts per outcome class. Field names are the JSON report's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes {
    pub ordered: u64,
    pub sold_out: u64,
    pub already_ordered: u64,
    pub other: u64,
    pub http_4xx: u64,
    pub http_5xx: u64,
    pub timeout: u64,
    pub connect_error: u64,
    pub io_error: u64,
}

impl Outcomes {
    pub fn record(&mut self, outcome: Outcome) {
        let slot = match outcome {
            Outcome::Ordered => &mut self.ordered,
            Outcome::SoldOut => &mut self.sold_out,
            Outcome::AlreadyOrdered => &mut self.already_ordered,
            Outcome::Other => &mut self.other,
            Outcome::Http4xx => &mut self.http_4xx,
            Outcome::Http5xx => &mut self.http_5xx,
            Outcome::Timeout => &mut self.timeout,
            Outcome::ConnectError => &mut self.connect_error,
            Outcome::IoError => &mut self.io_error,
        };
        *slot += 1;
    }

    pub fn add(&mut self, other: &Outcomes) {
        self.ordered += other.ordered;
        self.sold_out += other.sold_out;
        self.already_ordered += other.already_ordered;
        self.other += other.other;
        self.http_4xx += other.http_4xx;
        self.http_5xx += other.http_5xx;
        self.timeout += other.timeout;
        self.connect_error += other.connect_error;
        self.io_error += other.io_error;
    }

    /// Requests that got an HTTP response of any status.
    pub fn answered(&self) -> u64 {
        self.ordered
            + self.sold_out
            + self.already_ordered
            + self.other
            + self.http_4xx
            + self.http_5xx
    }

    pub fn errors(&self) -> u64 {
        self.http_4xx + self.http_5xx + self.timeout + self.connect_error + self.io_error
    }

    pub fn total(&self) -> u64 {
        self.answered() + self.timeout + self.connect_error + self.io_error
    }

    /// Every count with its field name, in report order.
    pub fn by_name(&self) -> [(&'static str, u64); 9] {
        [
            ("ordered", self.ordered),
            ("sold_out", self.sold_out),
            ("already_ordered", self.already_ordered),
            ("other", self.other),
            ("http_4xx", self.http_4xx),
            ("http_5xx", self.http_5xx),
            ("timeout", self.timeout),
            ("connect_error", self.connect_error),
            ("io_error", self.io_error),
        ]
    }
}

#[derive(Deserialize)]
struct BuyAnswer<'a> {
    #[serde(borrow)]
    outcome: Cow<'a, str>,
    user_id: Option<u64>,
    #[serde(borrow, default)]
    order_id: Option<Cow<'a, str>>,
}

/// Classifies one HTTP answer, with the user id the body names; with `keep_order_id`, also
/// the order id it carries.
pub fn classify(status: u16, body: &[u8], keep_order_id: bool) -> Answer {
    let plain = |outcome| Answer {
        outcome,
        status: Some(status),
        user: None,
        order_id: None,
    };
    match status {
        // Only a JSON object can be a buy answer; skip the parser for anything else.
        200..=299 if body.trim_ascii_start().first() != Some(&b'{') => plain(Outcome::Other),
        200..=299 => match serde_json::from_slice::<BuyAnswer>(body) {
            Ok(answer) => {
                let outcome = match answer.outcome.as_ref() {
                    "ordered" => Outcome::Ordered,
                    "sold_out" => Outcome::SoldOut,
                    "already_ordered" => Outcome::AlreadyOrdered,
                    _ => Outcome::Other,
                };
                Answer {
                    outcome,
                    status: Some(status),
                    user: answer.user_id,
                    order_id: answer
                        .order_id
                        .filter(|_| keep_order_id)
                        .map(|id| id.into_owned().into_boxed_str()),
                }
            }
            Err(_) => plain(Outcome::Other),
        },
        400..=499 => plain(Outcome::Http4xx),
        500..=599 => plain(Outcome::Http5xx),
        _ => plain(Outcome::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buy_answers_are_classified_by_their_outcome() {
        let ordered = br#"{"outcome":"ordered","order_id":"a","user_id":42}"#;
        let answer = classify(200, ordered, true);
        assert_eq!(
            (answer.outcome, answer.user, answer.order_id.as_deref()),
            (Outcome::Ordered, Some(42), Some("a"))
        );
        assert_eq!(classify(200, ordered, false).order_id, None);
        let sold = br#"{"outcome":"sold_out","user_id":43}"#;
        let answer = classify(200, sold, true);
        assert_eq!(
            (answer.outcome, answer.user, answer.order_id),
            (Outcome::SoldOut, Some(43), None)
        );
        let again = br#"{"outcome":"already_ordered","order_id":"a\"b","user_id":1}"#;
        let answer = classify(200, again, true);
        assert_eq!(answer.outcome, Outcome::AlreadyOrdered);
        assert_eq!(
            answer.order_id.as_deref(),
            Some("a\"b"),
            "escapes are decoded"
        );
    }

    #[test]
    fn non_buy_bodies_and_statuses_are_classified() {
        let outcome = |status, body: &[u8]| classify(status, body, true).outcome;
        assert_eq!(outcome(200, b"ok"), Outcome::Other);
        assert_eq!(outcome(200, br#"{"outcome":"maybe"}"#), Outcome::Other);
        assert_eq!(outcome(302, b""), Outcome::Other);
        assert_eq!(outcome(400, br#"{"error":"x"}"#), Outcome::Http4xx);
        assert_eq!(outcome(504, br#"{"error":"x"}"#), Outcome::Http5xx);
        assert_eq!(classify(503, b"", false).status, Some(503));
    }

    #[test]
    fn counts_add_up_to_the_total() {
        let mut o = Outcomes::default();
        for outcome in [
            Outcome::Ordered,
            Outcome::Timeout,
            Outcome::Http5xx,
            Outcome::Other,
        ] {
            o.record(outcome);
        }
        assert_eq!((o.total(), o.answered(), o.errors()), (4, 3, 2));
    }
}
