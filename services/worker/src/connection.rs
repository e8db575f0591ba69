//! Connecting to RabbitMQ, shared by the worker and the front tier.
//!
//! lapin's own recovery is not dependable across a broker restart (amqp-rs/lapin #450, #312)
//! and `Connection::connect` can hang on a broker that accepts TCP but never answers
//! (lapin #437). So every caller owns a reconnect loop built from the two pieces here: a
//! connection attempt bounded in time, and a capped exponential [`Backoff`] between attempts.

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

/// Why one connection attempt failed. The URL is never part of the message.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to RabbitMQ timed out after {0:?}")]
    Timeout(Duration),
    #[error("connecting to RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
}

/// One connection attempt, named `name` on the broker so that an operator (or a test) can
/// find and close exactly this connection.
pub async fn connect(url: &str, name: &str, timeout: Duration) -> Result<Connection, ConnectError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(timeout, Connection::connect(url, properties)).await {
        Ok(connection) => Ok(connection?),
        Err(_) => Err(ConnectError::Timeout(timeout)),
    }
}

/// Delays between reconnection attempts: 100 ms doubling up to 5 s; reset after a success.
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
}
