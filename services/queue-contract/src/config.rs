//! The queue options both tiers take, declared once and flattened into the worker's and the
//! front tier's configuration (`#[command(flatten)]`): the brokers, the request queue's name,
//! type and length, and the connect timeout. Both sides declare the request queue from these
//! values, and RabbitMQ refuses a second declaration with other arguments, so they must never
//! drift apart: one struct, one set of flags and `FLASHSALE_*` variables.

use std::time::Duration;

use order_core::metrics::IntCounter;

use crate::connection::Brokers;
use crate::reconnect::Link;
use crate::topology::{QueueType, RequestQueue};
use crate::{DEFAULT_AMQP_URL, DEFAULT_QUEUE};

/// Where the request queue is and how it is declared.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct QueueConfig {
    /// RabbitMQ URL, or a comma-separated list of a cluster's nodes: connects to the first
    /// that answers and fails over to the others (passwords are never logged).
    #[arg(long = "amqp-url", env = "FLASHSALE_AMQP_URL", value_name = "AMQP_URL",
          default_value = DEFAULT_AMQP_URL)]
    pub brokers: Brokers,

    /// The durable request queue (its dead-letter queue is `<queue>.dead`).
    #[arg(long = "queue", env = "FLASHSALE_QUEUE", value_name = "QUEUE",
          default_value = DEFAULT_QUEUE)]
    pub name: String,

    /// `classic` (one node) or `quorum` (replicated over a cluster). With `quorum` the front
    /// tier publishes with confirms: a buy is in flight only once the cluster has it.
    #[arg(long, env = "FLASHSALE_QUEUE_TYPE", value_enum, default_value_t = QueueType::Classic)]
    pub queue_type: QueueType,

    /// Most requests the queue holds; publishes beyond it are refused (the front tier
    /// publishes with confirms and answers 503 at once). 0: unbounded.
    #[arg(
        long = "queue-max-length",
        env = "FLASHSALE_QUEUE_MAX_LENGTH",
        value_name = "QUEUE_MAX_LENGTH",
        default_value_t = 0
    )]
    pub max_length: u32,

    /// How long one RabbitMQ connection attempt may take before it counts as failed.
    #[arg(long, env = "FLASHSALE_CONNECT_TIMEOUT_MS", default_value_t = 3000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout_ms: u64,
}

impl QueueConfig {
    /// The request queue as both sides declare it.
    pub fn request_queue(&self) -> RequestQueue {
        RequestQueue {
            name: self.name.clone(),
            queue_type: self.queue_type,
            max_length: (self.max_length > 0).then_some(self.max_length),
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// A link to these brokers under the connection name `name`, counting its reconnects in
    /// `reconnects` if given.
    pub fn link(&self, name: impl Into<String>, reconnects: Option<IntCounter>) -> Link {
        Link {
            brokers: self.brokers.clone(),
            connection_name: name.into(),
            connect_timeout: self.connect_timeout(),
            reconnects,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Tier {
        #[command(flatten)]
        queue: QueueConfig,
    }

    #[test]
    fn defaults_are_the_original_experiments_queue() {
        let queue = Tier::try_parse_from(["tier"]).unwrap().queue;

        assert_eq!(queue.brokers, DEFAULT_AMQP_URL.parse().unwrap());
        assert_eq!(queue.request_queue(), RequestQueue::classic("buy_requests"));
        assert_eq!(queue.connect_timeout(), Duration::from_secs(3));
    }

    #[test]
    fn the_flags_set_the_declared_queue() {
        let queue = Tier::try_parse_from([
            "tier",
            "--amqp-url",
            "amqp://a:1/%2f,amqp://b:2/%2f",
            "--queue",
            "q",
            "--queue-type",
            "quorum",
            "--queue-max-length",
            "5",
        ])
        .unwrap()
        .queue;

        assert_eq!(queue.brokers.len(), 2);
        assert_eq!(
            queue.request_queue(),
            RequestQueue {
                name: "q".into(),
                queue_type: QueueType::Quorum,
                max_length: Some(5),
            }
        );
    }

    #[test]
    fn a_bad_broker_url_or_a_zero_connect_timeout_is_a_usage_error() {
        assert!(Tier::try_parse_from(["tier", "--amqp-url", "http://a"]).is_err());
        assert!(Tier::try_parse_from(["tier", "--connect-timeout-ms", "0"]).is_err());
    }

    #[test]
    fn debug_output_hides_the_password() {
        let queue = Tier::try_parse_from(["tier", "--amqp-url", "amqp://u:s3cret@h:5672/%2f"])
            .unwrap()
            .queue;
        let shown = format!("{queue:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
