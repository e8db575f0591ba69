//! The front tier's configuration: every option is a flag and a `FLASHSALE_*` variable.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use order_core::redact::redact_url;
use queue_contract::config::QueueConfig;
use queue_contract::topology::DEFAULT_SALE_EVENTS_EXCHANGE;

/// Whether the front tier answers from memory once the store has sold the sale out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GateMode {
    /// Every buy reaches the store, as in the original experiment.
    Off,
    /// After the store's own sold-out decision, answer every buy from memory.
    On,
}

/// Which path `GET /buy` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Route {
    /// Straight to the backend (normally nginx in front of the replicas).
    Http = 0,
    /// Through the RabbitMQ RPC queue and a worker.
    Mq = 1,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Mq => "mq",
        }
    }
}

#[derive(Clone, clap::Parser)]
#[command(name = "frontend", version, about)]
pub struct Config {
    /// Address to listen on (use 0.0.0.0:5000 in a container).
    #[arg(long, env = "FLASHSALE_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,

    /// The order backend for `/http/buy`, `/sale` and `/admin/sale` (nginx, or one backend).
    #[arg(
        long,
        env = "FLASHSALE_BACKEND_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    pub backend_url: String,

    /// The brokers and the request queue of `/mq/buy`, declared as the workers declare them.
    #[command(flatten)]
    pub queue: QueueConfig,

    /// With publisher confirms (a quorum queue, or a maximum length): longest wait for the
    /// broker to confirm a request before the buy is answered 503 at once. Never longer
    /// than `--timeout-ms`.
    #[arg(long, env = "FLASHSALE_CONFIRM_TIMEOUT_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub confirm_timeout_ms: u64,

    /// The route of `GET /buy`.
    #[arg(long, env = "FLASHSALE_DEFAULT_ROUTE", value_enum, default_value_t = Route::Http)]
    pub default_route: Route,

    /// Longest a buy may take on either route before it is answered 504 (below nginx's 30 s
    /// read timeout and the load tester's, so the front tier decides). Also the TTL of a
    /// request message, so a request nobody is waiting for any more is never served.
    #[arg(long, env = "FLASHSALE_TIMEOUT_MS", default_value_t = 20000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,

    /// Admission by time: each route admits at most as many buys as its upstream completes
    /// in this time (measured, window by window: Little's law), so that an admitted buy waits
    /// about this long at most, whatever the stack behind the route serves; more are
    /// answered 503 with `Retry-After` at once. The `--max-in-flight-*` limits stay as hard
    /// ceilings. 0 turns it off (the ceilings only).
    #[arg(long, env = "FLASHSALE_TARGET_WAIT_MS", default_value_t = 200)]
    pub target_wait_ms: u64,

    /// Admission's hard ceiling on the HTTP route: most buys waiting for the backend at
    /// once; more are answered 503 with `Retry-After` at once, instead of queueing behind the
    /// others. 512 lets the original experiment's highest concurrency (500) through, and is
    /// below the two backends' own limits together (2 x 512), so that the front tier, where a
    /// refusal is cheapest, refuses first.
    #[arg(long, env = "FLASHSALE_MAX_IN_FLIGHT_HTTP", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight_http: u32,

    /// Admission's hard ceiling on the MQ route: most buys waiting for a worker's reply at
    /// once (this also bounds what one front tier can put in the request queue).
    #[arg(long, env = "FLASHSALE_MAX_IN_FLIGHT_MQ", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight_mq: u32,

    /// The sold-out gate: once the store has decided that the sale is sold out (under
    /// `conditional`, the only strategy whose buyers are then final), answer both routes
    /// from memory, exactly as the store would: a winner `already_ordered` with their order,
    /// everyone else `sold_out`. `off` (the default) is the original experiment.
    #[arg(long, env = "FLASHSALE_SOLD_OUT_GATE", value_enum, default_value_t = GateMode::Off)]
    pub sold_out_gate: GateMode,

    /// The fanout exchange on which front tiers tell each other about sell-outs and resets.
    #[arg(long, env = "FLASHSALE_EVENTS_EXCHANGE", default_value = DEFAULT_SALE_EVENTS_EXCHANGE)]
    pub events_exchange: String,

    /// While the gate is closed, re-read the sale this often, so that a reset that did not
    /// pass through any front tier (straight to a backend) still reopens the gate.
    #[arg(long, env = "FLASHSALE_GATE_RECHECK_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub gate_recheck_ms: u64,

    /// Connection name shown by RabbitMQ (`rabbitmqctl list_connections client_properties`).
    #[arg(
        long,
        env = "FLASHSALE_CONNECTION_NAME",
        default_value = "flashsale-frontend"
    )]
    pub connection_name: String,
}

impl Config {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The wait admission bounds; `None` when off.
    pub fn target_wait(&self) -> Option<Duration> {
        (self.target_wait_ms > 0).then(|| Duration::from_millis(self.target_wait_ms))
    }

    /// The confirm timeout, capped at the buy timeout.
    pub fn confirm_timeout(&self) -> Duration {
        Duration::from_millis(self.confirm_timeout_ms.min(self.timeout_ms))
    }

    /// The backend URL without a trailing slash, so paths can be appended.
    pub fn backend_base(&self) -> String {
        self.backend_url.trim_end_matches('/').to_owned()
    }
}

// Hand-written so that passwords in URLs never reach a log line.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("backend_url", &redact_url(&self.backend_url))
            .field("queue", &self.queue)
            .field("confirm_timeout_ms", &self.confirm_timeout_ms)
            .field("default_route", &self.default_route)
            .field("target_wait_ms", &self.target_wait_ms)
            .field("max_in_flight_http", &self.max_in_flight_http)
            .field("max_in_flight_mq", &self.max_in_flight_mq)
            .field("sold_out_gate", &self.sold_out_gate)
            .field("events_exchange", &self.events_exchange)
            .field("gate_recheck_ms", &self.gate_recheck_ms)
            .field("timeout_ms", &self.timeout_ms)
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
        let config = Config::try_parse_from(["frontend"]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(config.backend_url, "http://127.0.0.1:8000");
        assert_eq!(config.queue.name, "buy_requests");
        assert_eq!(config.default_route, Route::Http);
        assert_eq!(config.sold_out_gate, GateMode::Off);
        assert_eq!(config.events_exchange, "sale_events");
        assert_eq!(config.target_wait(), Some(Duration::from_millis(200)));
        assert_eq!(
            (config.max_in_flight_http, config.max_in_flight_mq),
            (512, 512)
        );
    }

    #[test]
    fn a_target_wait_of_zero_turns_admission_by_time_off() {
        let config = Config::try_parse_from(["frontend", "--target-wait-ms", "0"]).unwrap();
        assert_eq!(config.target_wait(), None);
        assert!(Config::try_parse_from(["frontend", "--target-wait-ms", "-1"]).is_err());
    }

    #[test]
    fn routes_are_spelled_http_and_mq() {
        let config = Config::try_parse_from(["frontend", "--default-route", "mq"]).unwrap();
        assert_eq!(config.default_route, Route::Mq);
        assert!(Config::try_parse_from(["frontend", "--default-route", "amqp"]).is_err());
    }

    #[test]
    fn the_confirm_timeout_is_never_longer_than_the_buy_timeout() {
        let config = Config::try_parse_from(["frontend"]).unwrap();
        assert_eq!(config.confirm_timeout(), Duration::from_millis(2000));
        let config = Config::try_parse_from(["frontend", "--timeout-ms", "500"]).unwrap();
        assert_eq!(config.confirm_timeout(), Duration::from_millis(500));
        assert!(Config::try_parse_from(["frontend", "--confirm-timeout-ms", "0"]).is_err());
    }

    #[test]
    fn debug_output_hides_passwords() {
        let config = Config::try_parse_from([
            "frontend",
            "--amqp-url",
            "amqp://app:s3cret@rabbit:5672/%2f",
        ])
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
