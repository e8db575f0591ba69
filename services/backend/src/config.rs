//! The backend's configuration: every field a flag and a `FLASHSALE_*` environment variable.

use std::fmt;
use std::net::SocketAddr;

use clap::Parser;
use order_core::Strategy;

#[derive(Clone, Parser)]
#[command(name = "backend", version, about = "Flash-sale HTTP order backend")]
pub struct Config {
    /// Address to listen on (use 0.0.0.0:3000 in a container).
    #[arg(long, env = "FLASHSALE_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Where orders live: a `mongodb://` URI, or a file path for the embedded SQLite store.
    #[arg(long, env = "FLASHSALE_STORE", default_value = "flashsale.db")]
    pub store: String,

    /// Bearer token for `POST /admin/sale`; without one the admin API is off.
    #[arg(long, env = "FLASHSALE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Stock of the sale created when the store holds none yet.
    #[arg(long, env = "FLASHSALE_STOCK", default_value_t = 100)]
    pub stock: u64,

    /// Strategy of the sale created when the store holds none yet.
    #[arg(long, env = "FLASHSALE_STRATEGY", value_enum, default_value_t = Strategy::CountInsert)]
    pub strategy: Strategy,
}

impl Config {
    /// The store spec with any password in a MongoDB URI masked.
    pub fn store_for_logs(&self) -> String {
        order_core::redact::redact_url(&self.store)
    }
}

// Hand-written so the admin token and store passwords never reach a log line.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("store", &self.store_for_logs())
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("stock", &self.stock)
            .field("strategy", &self.strategy)
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
        assert_eq!(config.stock, 100);
        assert_eq!(config.strategy, Strategy::CountInsert);
        assert!(config.admin_token.is_none());
    }
}
