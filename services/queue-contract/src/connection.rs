//! Connecting to RabbitMQ: one broker or a cluster's list of them.
//!
//! lapin's own recovery is not dependable across a broker restart (amqp-rs/lapin #450, #312)
//! and `Connection::connect` can hang on a broker that accepts TCP but never answers
//! (lapin #437). So the services reconnect themselves ([`crate::reconnect`]), from the pieces
//! here: a list of [`Brokers`] parsed once from `--amqp-url` (comma-separated), a connection
//! attempt bounded in time that walks that list ([`Brokers::connect`]), and a capped
//! exponential [`Backoff`] between rounds.
//!
//! Failover order: after losing a broker, the next attempt starts with the broker after it,
//! so a dead node is tried last, not first. Passwords never reach a log line or an error.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use order_core::redact::redact_url;

/// Why `--amqp-url` was refused. Shown by clap as a usage error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBrokers {
    #[error("no broker URL given")]
    Empty,
    #[error("broker URL {url} is not an AMQP URL: {reason}")]
    BadUrl { url: String, reason: String },
}

/// The brokers to connect to, in order of preference: one URL, or a comma-separated list
/// of the nodes of a cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct Brokers {
    urls: Vec<String>,
}

impl FromStr for Brokers {
    type Err = InvalidBrokers;

    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let urls: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            return Err(InvalidBrokers::Empty);
        }
        for url in &urls {
            AMQPUri::from_str(url).map_err(|reason| InvalidBrokers::BadUrl {
                url: redact_url(url),
                reason,
            })?;
        }
        Ok(Self { urls })
    }
}

// Both hand-written so that passwords never reach a log line.
impl fmt::Display for Brokers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self.urls.iter().map(|url| redact_url(url)).collect();
        f.write_str(&shown.join(","))
    }
}

impl fmt::Debug for Brokers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Brokers({self})")
    }
}

/// Why no broker could be reached. The URLs in it are redacted.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to RabbitMQ at {broker} timed out after {timeout:?}")]
    Timeout { broker: String, timeout: Duration },
    #[error("connecting to RabbitMQ at {broker}: {source}")]
    Amqp {
        broker: String,
        #[source]
        source: lapin::Error,
    },
}

/// A connection and which broker of the list it reached.
pub struct Connected {
    pub connection: Connection,
    /// Index of the broker in the list; pass it to [`Brokers::next_after`] after a loss.
    pub index: usize,
    /// The broker's URL without its password, for logs.
    pub broker: String,
}

impl Brokers {
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The first URL (for tools that take one broker, e.g. a test's own connection).
    pub fn first(&self) -> &str {
        &self.urls[0]
    }

    /// Where to start after losing broker `index`: the next one in the list.
    pub fn next_after(&self, index: usize) -> usize {
        (index + 1) % self.urls.len()
    }

    /// Tries every broker once, starting at `start`, each attempt bounded by `timeout`; the
    /// connection is named `name` on the broker, so that an operator (or a test) can find
    /// and close exactly it. Returns the first that answers, or the last failure.
    pub async fn connect(
        &self,
        start: usize,
        name: &str,
        timeout: Duration,
    ) -> Result<Connected, ConnectError> {
        let mut last_error = None;
        for offset in 0..self.urls.len() {
            let index = (start + offset) % self.urls.len();
            let url = &self.urls[index];
            match connect_one(url, name, timeout).await {
                Ok(connection) => {
                    return Ok(Connected {
                        connection,
                        index,
                        broker: redact_url(url),
                    });
                }
                Err(error) => {
                    if self.urls.len() > 1 {
                        tracing::warn!(%error, "broker unreachable; trying the next one");
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("a broker list is never empty"))
    }
}

async fn connect_one(url: &str, name: &str, timeout: Duration) -> Result<Connection, ConnectError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let broker = redact_url(url);
    match tokio::time::timeout(timeout, Connection::connect(url, properties)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(source)) => Err(ConnectError::Amqp { broker, source }),
        Err(_) => Err(ConnectError::Timeout { broker, timeout }),
    }
}

/// Delays between reconnection rounds: 100 ms doubling up to 5 s; reset after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The delay to wait now; the one after it is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<_> = (0..8).map(|_| backoff.next_delay()).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(delays[7], Duration::from_secs(5));
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn a_broker_list_is_comma_separated_and_shown_without_passwords() {
        let brokers: Brokers = "amqp://u:s3cret@n1:5672/%2f, amqp://u:s3cret@n2:5673/%2f,"
            .parse()
            .unwrap();
        assert_eq!(brokers.len(), 2);
        assert_eq!(brokers.first(), "amqp://u:s3cret@n1:5672/%2f");
        let shown = format!("{brokers} {brokers:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("amqp://u:***@n2:5673/%2f"), "{shown}");
    }

    #[test]
    fn failover_starts_with_the_broker_after_the_lost_one() {
        let brokers: Brokers = "amqp://a,amqp://b,amqp://c".parse().unwrap();
        assert_eq!(brokers.next_after(0), 1);
        assert_eq!(brokers.next_after(2), 0);
    }

    #[test]
    fn empty_or_malformed_lists_are_refused_without_showing_a_password() {
        assert_eq!("".parse::<Brokers>(), Err(InvalidBrokers::Empty));
        assert_eq!(" , ".parse::<Brokers>(), Err(InvalidBrokers::Empty));
        let error = "amqp://u:s3cret@host:notaport/%2f"
            .parse::<Brokers>()
            .unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
        assert!("http://host".parse::<Brokers>().is_err());
    }

    #[tokio::test]
    async fn connecting_walks_the_list_and_reports_the_last_failure() {
        // Two closed ports: both refused at once, and the error names the last broker tried.
        let brokers: Brokers = "amqp://u:pw@127.0.0.1:1/%2f,amqp://u:pw@127.0.0.1:2/%2f"
            .parse()
            .unwrap();
        let error = brokers
            .connect(0, "test", Duration::from_secs(2))
            .await
            .err()
            .expect("nothing listens on ports 1 and 2");
        let shown = error.to_string();
        assert!(shown.contains("127.0.0.1:2"), "{shown}");
        assert!(!shown.contains("pw@"), "{shown}");
    }
}
