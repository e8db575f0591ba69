//! The backend's configuration: every field a flag and a `FLASHSALE_*` environment variable.

use std::fmt;
use std::net::SocketAddr;

use clap::Parser;
use order_core::StoreConfig;

#[derive(Clone, Parser)]
#[command(name = "backend", version, about = "Flash-sale HTTP order backend")]
pub struct Config {
    /// Address to listen on (use 0.0.0.0:3000 in a container).
    #[arg(long, env = "FLASHSALE_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub store: StoreConfig,

    /// Bearer token for `POST /admin/sale`; without one the admin API is off.
    #[arg(long, env = "FLASHSALE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Most buys this backend decides at once; more are refused at once with 503 and
    /// `Retry-After`, so a slow store cannot pile up unbounded blocking work. 512 is twice
    /// what one of two replicas sees in the original experiment at c = 500.
    #[arg(long, env = "FLASHSALE_MAX_IN_FLIGHT", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
}

// Hand-written so the admin token and store passwords never reach a log line.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("store", &self.store)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_debug_output() {
        let config = Config::parse_from([
            "backend",
            "--store",
            "mongodb://app:hunter2@mongo:27017/flashsale",
            "--admin-token",
            "s3cret",
        ]);
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(
            shown.contains("mongodb://app:***@mongo:27017/flashsale"),
            "{shown}"
        );
    }

    #[test]
    fn defaults_match_the_design() {
        let config = Config::parse_from(["backend"]);
        assert_eq!(config.listen, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(config.store.spec, "flashsale.db");
        assert_eq!(config.store.stock, 100);
        assert_eq!(config.store.strategy, order_core::Strategy::CountInsert);
        assert_eq!(config.store.count_insert_pause_ms, 0);
        assert!(config.admin_token.is_none());
    }
}
