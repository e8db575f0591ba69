//! The reconnect loop of every RabbitMQ client of the services (the worker's consumer, the
//! front tier's RPC link and its sale events link), written once: connect to the next broker,
//! run a session, back off, stop on shutdown. Each client passes in only its session: what it
//! does with one connection until the connection is lost or shutdown is asked for.
//!
//! Invariants:
//! - the loop stops as soon as the [`Shutdown`] token is cancelled, while connecting, while
//!   backing off, or in a session (a session returns [`SessionEnd::Stopped`] on it);
//! - after a session the next attempt starts with the broker after the one it reached, so a
//!   lost node is tried last, not first;
//! - a session that ends because its connection was lost had worked, so the next attempt
//!   comes quickly (backoff reset); a failure to connect or to set a session up doubles the
//!   delay, up to [`Backoff`]'s cap, so a broker that is down is not hammered.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use order_core::metrics::IntCounter;
use order_core::shutdown::Shutdown;

use crate::connection::{Backoff, Brokers, Connected};

/// How a session ended without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// Shutdown was asked for; the session closed its connection.
    Stopped,
    /// The connection (or the session's consumer) went away, for this reason.
    Lost(String),
}

/// Where a client connects and under which name.
#[derive(Clone)]
pub struct Link {
    pub brokers: Brokers,
    /// The connection's name on the broker (`rabbitmqctl list_connections client_properties`),
    /// so that an operator or a test can find and close exactly it; also in every log line.
    pub connection_name: String,
    /// Longest one connection attempt may take.
    pub connect_timeout: Duration,
    /// Counts the connections made after the first, if given.
    pub reconnects: Option<IntCounter>,
}

impl Link {
    /// Runs `session` on one connection after another until `shutdown` is cancelled or a
    /// session returns [`SessionEnd::Stopped`]. A session's error is logged (with its cause
    /// chain: `{:#}`) and followed by a new connection after a backoff.
    pub async fn run<S, F, E>(&self, shutdown: &Shutdown, mut session: S)
    where
        S: FnMut(Connected) -> F,
        F: Future<Output = Result<SessionEnd, E>>,
        E: fmt::Display,
    {
        let name = self.connection_name.as_str();
        let mut backoff = Backoff::new();
        let mut start = 0;
        let mut connected_before = false;
        loop {
            let attempt = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                attempt = self.brokers.connect(start, name, self.connect_timeout) => attempt,
            };
            match attempt {
                Err(error) => {
                    tracing::warn!(connection = name, %error, "cannot connect to RabbitMQ; will retry");
                }
                Ok(connected) => {
                    // Whatever ends this session, the next one starts with another broker.
                    start = self.brokers.next_after(connected.index);
                    if std::mem::replace(&mut connected_before, true)
                        && let Some(reconnects) = &self.reconnects
                    {
                        reconnects.inc();
                    }
                    match session(connected).await {
                        Ok(SessionEnd::Stopped) => break,
                        Ok(SessionEnd::Lost(reason)) => {
                            backoff.reset();
                            tracing::warn!(connection = name, %reason, "lost the RabbitMQ connection; reconnecting");
                        }
                        Err(error) => {
                            let error = format!("{error:#}");
                            tracing::warn!(
                                connection = name,
                                error,
                                "the RabbitMQ session failed; will retry"
                            );
                        }
                    }
                }
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
        tracing::info!(connection = name, "RabbitMQ link stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable_link(reconnects: Option<IntCounter>) -> Link {
        Link {
            // Nothing listens on port 1: every attempt is refused at once.
            brokers: "amqp://guest:guest@127.0.0.1:1/%2f".parse().unwrap(),
            connection_name: "test".into(),
            connect_timeout: Duration::from_secs(1),
            reconnects,
        }
    }

    #[tokio::test]
    async fn a_cancelled_token_stops_the_loop_while_it_cannot_connect() {
        let link = unreachable_link(None);
        let shutdown = Shutdown::new();
        let mut sessions = 0;
        let stopper = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                shutdown.cancel();
            })
        };

        let run = link.run(&shutdown, |_connected| {
            sessions += 1;
            async { Ok::<_, String>(SessionEnd::Stopped) }
        });
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("the loop stops once the token is cancelled");

        stopper.await.unwrap();
        assert_eq!(sessions, 0, "no broker answered, so no session ran");
    }

    #[tokio::test]
    async fn after_a_lost_session_the_loop_reconnects_and_counts_it() {
        let url = std::env::var("FLASHSALE_TEST_AMQP_URL")
            .unwrap_or_else(|_| crate::DEFAULT_AMQP_URL.into());
        let reconnects = IntCounter::new("reconnects", "test").unwrap();
        let link = Link {
            brokers: url.parse().unwrap(),
            connection_name: "queue-contract-reconnect-test".into(),
            connect_timeout: Duration::from_secs(3),
            reconnects: Some(reconnects.clone()),
        };
        let shutdown = Shutdown::new();
        let mut sessions = 0;

        let run = link.run(&shutdown, |connected| {
            sessions += 1;
            let last = sessions == 3;
            async move {
                let _ = connected.connection.close(200, "test".into()).await;
                Ok::<_, String>(if last {
                    SessionEnd::Stopped
                } else {
                    SessionEnd::Lost("closed by the test".into())
                })
            }
        });
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("three sessions within the deadline");

        assert_eq!(sessions, 3);
        assert_eq!(reconnects.get(), 2, "every connection after the first");
    }

    #[tokio::test]
    async fn an_already_cancelled_token_stops_the_loop_before_it_connects() {
        let link = unreachable_link(None);
        let shutdown = Shutdown::new();
        shutdown.cancel();

        tokio::time::timeout(
            Duration::from_secs(1),
            link.run(&shutdown, |_connected| async {
                Ok::<_, String>(SessionEnd::Stopped)
            }),
        )
        .await
        .expect("stops at once");
    }
}
