//! The worker's configuration: every option is a flag and a `FLASHSALE_*` environment variable.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use order_core::{SaleConfig, Strategy};

use order_core::redact::redact_url;

pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_QUEUE: &str = "buy_requests";

/// How the worker connects, what it consumes and where orders go.
#[derive(Clone, clap::Parser)]
#[command(name = "worker", version, about)]
pub struct Config {
    /// RabbitMQ URL (the password is never logged).
    #[arg(long, env = "FLASHSALE_AMQP_URL", default_value = DEFAULT_AMQP_URL)]
    pub amqp_url: String,

    /// The durable request queue (its dead-letter queue is `<queue>.dead`).
    #[arg(long, env = "FLASHSALE_QUEUE", default_value = DEFAULT_QUEUE)]
    pub queue: String,

    /// Unacknowledged deliveries the broker may hand this worker at once; they are processed
    /// concurrently. 1 (the original experiment) serializes every buy.
    #[arg(long, env = "FLASHSALE_PREFETCH", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,

    /// `mongodb://...`, or a file path for the embedded SQLite store (shared with the backends).
    #[arg(long, env = "FLASHSALE_STORE", default_value = "flashsale.db")]
    pub store: String,

    /// Stock of the initial sale, used only if the store holds no sale yet.
    #[arg(long, env = "FLASHSALE_STOCK", default_value_t = 100)]
    pub stock: u64,

    /// Strategy of the initial sale, used only if the store holds no sale yet.
    #[arg(long, env = "FLASHSALE_STRATEGY", value_enum, default_value_t = Strategy::CountInsert)]
    pub strategy: Strategy,

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

    /// How long one connection attempt may take before it counts as failed.
    #[arg(long, env = "FLASHSALE_CONNECT_TIMEOUT_MS", default_value_t = 3000)]
    pub connect_timeout_ms: u64,
}

impl Config {
    pub fn initial_sale(&self) -> SaleConfig {
        SaleConfig {
            stock: self.stock,
            strategy: self.strategy,
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

// Hand-written so that the AMQP password never reaches a log line.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("amqp_url", &redact_url(&self.amqp_url))
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .field("store", &redact_url(&self.store))
            .field("stock", &self.stock)
            .field("strategy", &self.strategy)
            .field("health_listen", &self.health_listen)
            .field("connection_name", &self.connection_name)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
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
        assert_eq!(config.amqp_url, DEFAULT_AMQP_URL);
        assert_eq!(config.queue, "buy_requests");
        assert_eq!(config.prefetch, 1);
        assert_eq!(config.strategy, Strategy::CountInsert);
    }

    #[test]
    fn a_prefetch_of_zero_is_refused() {
        assert!(Config::try_parse_from(["worker", "--prefetch", "0"]).is_err());
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
