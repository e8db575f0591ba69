//! The worker's configuration: every option is a flag and a `FLASHSALE_*` environment variable.

use std::fmt;
use std::net::SocketAddr;

use order_core::StoreConfig;
use queue_contract::config::QueueConfig;

/// How the worker connects, what it consumes and where orders go.
#[derive(Clone, clap::Parser)]
#[command(name = "worker", version, about)]
pub struct Config {
    /// The brokers and the request queue, declared as the front tier declares them.
    #[command(flatten)]
    pub queue: QueueConfig,

    /// Decide up to this many waiting requests in one store transaction, reply to each, then
    /// acknowledge them with one `multiple` ack; the prefetch becomes the batch size. A batch
    /// never waits to fill up: a lone buyer is served at once. 1 (the default) is the
    /// original experiment: one buy at a time, through the strategy's own store calls.
    #[arg(long, env = "FLASHSALE_BATCH", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: u16,

    /// Unbatched only (`--batch 1`): unacknowledged deliveries the broker may hand this
    /// worker at once; they are processed concurrently. 1 (the original experiment)
    /// serializes every buy. Default 1; with `--batch N` the prefetch is N.
    #[arg(long, env = "FLASHSALE_PREFETCH",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: Option<u16>,

    #[command(flatten)]
    pub store: StoreConfig,

    /// Optional address for `GET /healthz` (200 while consuming, else 503). Off by default.
    #[arg(long, env = "FLASHSALE_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,

    /// Connection name shown by RabbitMQ (`rabbitmqctl list_connections client_properties`).
    #[arg(
        long,
        env = "FLASHSALE_CONNECTION_NAME",
        default_value = "flashsale-worker"
    )]
    pub connection_name: String,
}

/// A setting that contradicts another.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Refuses contradicting settings before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.prefetch {
            Some(prefetch) if self.batch > 1 && prefetch != self.batch => {
                Err(ConfigError(format!(
                    "--prefetch {prefetch} contradicts --batch {}: a batched worker's prefetch is its batch size",
                    self.batch
                )))
            }
            _ => Ok(()),
        }
    }

    /// Deliveries in hand at once: the batch size when batching, else the prefetch.
    pub fn effective_prefetch(&self) -> u16 {
        if self.batch > 1 {
            self.batch
        } else {
            self.prefetch.unwrap_or(1)
        }
    }
}

// Hand-written to show the prefetch in effect rather than the option as given.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("queue", &self.queue)
            .field("batch", &self.batch)
            .field("prefetch", &self.effective_prefetch())
            .field("store", &self.store)
            .field("health_listen", &self.health_listen)
            .field("connection_name", &self.connection_name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_follow_the_design() {
        let config = Config::try_parse_from(["worker"]).unwrap();
        assert_eq!(
            config.queue.request_queue(),
            queue_contract::topology::RequestQueue::classic("buy_requests")
        );
        assert_eq!(config.batch, 1);
        assert_eq!(config.effective_prefetch(), 1);
        assert_eq!(config.store.strategy, order_core::Strategy::CountInsert);
    }

    #[test]
    fn a_prefetch_of_zero_is_refused() {
        assert!(Config::try_parse_from(["worker", "--prefetch", "0"]).is_err());
    }

    #[test]
    fn a_batched_worker_prefetches_its_batch() {
        let config = Config::try_parse_from(["worker", "--batch", "64"]).unwrap();
        assert_eq!(config.effective_prefetch(), 64);
        assert!(config.validate().is_ok());
        let config =
            Config::try_parse_from(["worker", "--batch", "64", "--prefetch", "8"]).unwrap();
        assert!(config.validate().is_err());
        assert!(Config::try_parse_from(["worker", "--batch", "0"]).is_err());
    }

    #[test]
    fn a_broker_list_is_accepted_and_a_bad_url_refused() {
        let config =
            Config::try_parse_from(["worker", "--amqp-url", "amqp://a:1/%2f,amqp://b:2/%2f"])
                .unwrap();
        assert_eq!(config.queue.brokers.len(), 2);
        assert!(Config::try_parse_from(["worker", "--amqp-url", "http://a"]).is_err());
    }

    #[test]
    fn debug_output_hides_the_password() {
        let config =
            Config::try_parse_from(["worker", "--amqp-url", "amqp://user:s3cret@broker:5672/%2f"])
                .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("amqp://user:***@broker:5672/%2f"), "{shown}");
    }
}
