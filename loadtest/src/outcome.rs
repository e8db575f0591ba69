//! Classification of every request's fate, and the counts per class.
//!
//! Each request sent ends in exactly one class, so the counts add up to the requests sent.
//! A 2xx body is read as a buy answer (`{"outcome": ...}`); a 2xx that is not one (a
//! health check, a static page) is `other`, which is not an error.

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
}

#[derive(Deserialize)]
struct BuyAnswer<'a> {
    #[serde(borrow)]
    outcome: &'a str,
    user_id: Option<u64>,
}

/// Classifies one HTTP answer; also returns the user id the body names, if any.
pub fn classify(status: u16, body: &[u8]) -> (Outcome, Option<u64>) {
    match status {
        // Only a JSON object can be a buy answer; skip the parser for anything else.
        200..=299 if body.trim_ascii_start().first() != Some(&b'{') => (Outcome::Other, None),
        200..=299 => match serde_json::from_slice::<BuyAnswer>(body) {
            Ok(answer) => {
                let outcome = match answer.outcome {
                    "ordered" => Outcome::Ordered,
                    "sold_out" => Outcome::SoldOut,
                    "already_ordered" => Outcome::AlreadyOrdered,
                    _ => Outcome::Other,
                };
                (outcome, answer.user_id)
            }
            Err(_) => (Outcome::Other, None),
        },
        400..=499 => (Outcome::Http4xx, None),
        500..=599 => (Outcome::Http5xx, None),
        _ => (Outcome::Other, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buy_answers_are_classified_by_their_outcome() {
        let ordered = br#"{"outcome":"ordered","order_id":"a","user_id":42}"#;
        assert_eq!(classify(200, ordered), (Outcome::Ordered, Some(42)));
        let sold = br#"{"outcome":"sold_out","user_id":43}"#;
        assert_eq!(classify(200, sold), (Outcome::SoldOut, Some(43)));
        let again = br#"{"outcome":"already_ordered","order_id":"a","user_id":1}"#;
        assert_eq!(classify(200, again).0, Outcome::AlreadyOrdered);
    }

    #[test]
    fn non_buy_bodies_and_statuses_are_classified() {
        assert_eq!(classify(200, b"ok").0, Outcome::Other);
        assert_eq!(classify(200, br#"{"outcome":"maybe"}"#).0, Outcome::Other);
        assert_eq!(classify(302, b"").0, Outcome::Other);
        assert_eq!(classify(400, br#"{"error":"x"}"#).0, Outcome::Http4xx);
        assert_eq!(classify(504, br#"{"error":"x"}"#).0, Outcome::Http5xx);
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
