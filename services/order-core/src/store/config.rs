//! The store options every service that holds a store takes (backend and worker alike), so
//! they are spelled, defaulted and documented once.

use std::fmt;
use std::time::Duration;

use super::{Store, StoreError};
use crate::domain::{SaleConfig, Strategy};
use crate::redact::redact_url;

#[derive(Clone, clap::Args)]
pub struct StoreConfig {
    /// Where orders live: `postgres://user@host:port/db` (PostgreSQL), `mongodb://...`
    /// (MongoDB), or `sqlite://PATH` / a file path for the embedded SQLite store (shared by
    /// the backends and the workers of one machine).
    #[arg(
        id = "store",
        long = "store",
        env = "FLASHSALE_STORE",
        default_value = "flashsale.db"
    )]
    pub spec: String,

    /// Stock of the sale created when the store holds none yet.
    #[arg(long, env = "FLASHSALE_STOCK", default_value_t = 100)]
    pub stock: u64,

    /// Strategy of the sale created when the store holds none yet.
    #[arg(long, env = "FLASHSALE_STRATEGY", value_enum, default_value_t = Strategy::CountInsert)]
    pub strategy: Strategy,

    /// Demonstrations and tests only: pause this long between `count-insert`'s count and
    /// its insert, as a slow database round trip would. The race exists without it; the
    /// pause only widens its window so that it shows on demand. 0 (the default): no pause.
    #[arg(long, env = "FLASHSALE_COUNT_INSERT_PAUSE_MS", default_value_t = 0)]
    pub count_insert_pause_ms: u64,

    /// Longest a store call may take (every store): past it the call fails and a buy is
    /// answered 503. On PostgreSQL it is also each connection's `statement_timeout`, and half
    /// of it its `idle_in_transaction_session_timeout`, so the server gives up what nobody
    /// waits for, and a client lost while holding the sale row's lock releases it before the
    /// calls waiting for that lock time out.
    #[arg(long, env = "FLASHSALE_STORE_TIMEOUT_MS", default_value_t = StoreOptions::DEFAULT.call_timeout_ms,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub store_timeout_ms: u64,

    /// PostgreSQL: connections per process (keep processes x this under the server's
    /// `max_connections`, 100 by default). Buys of one sale queue on its one row whatever
    /// the number of connections, and every waiter on that row is woken at each commit:
    /// a few connections per process serve a hot row better than many.
    #[arg(long, env = "FLASHSALE_STORE_POOL_SIZE", default_value_t = StoreOptions::DEFAULT.pool_size,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub store_pool_size: u32,

    /// PostgreSQL: longest wait for a free pooled connection before the call fails (503,
    /// "store busy"). As long as a whole call by default: the backends' and the worker's
    /// own admission limits bound how many wait; lower it to refuse sooner.
    #[arg(long, env = "FLASHSALE_STORE_POOL_WAIT_MS", default_value_t = StoreOptions::DEFAULT.pool_wait_ms)]
    pub store_pool_wait_ms: u64,

    /// PostgreSQL: longest a new connection may take (TCP connect and start-up).
    #[arg(long, env = "FLASHSALE_STORE_CONNECT_TIMEOUT_MS", default_value_t = StoreOptions::DEFAULT.connect_timeout_ms,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub store_connect_timeout_ms: u64,
}

/// How a store bounds its calls; set from [`StoreConfig`]'s options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Longest one store call may take, whatever the store.
    pub call_timeout_ms: u64,
    /// PostgreSQL: connections per process.
    pub pool_size: u32,
    /// PostgreSQL: longest wait for a free connection.
    pub pool_wait_ms: u64,
    /// PostgreSQL: longest a new connection may take.
    pub connect_timeout_ms: u64,
}

impl StoreOptions {
    pub const DEFAULT: Self = Self {
        call_timeout_ms: 5_000,
        pool_size: 8,
        pool_wait_ms: 5_000,
        connect_timeout_ms: 2_000,
    };

    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    pub fn pool_wait(&self) -> Duration {
        Duration::from_millis(self.pool_wait_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl StoreConfig {
    /// The sale created if the store holds none yet.
    pub fn initial_sale(&self) -> SaleConfig {
        SaleConfig {
            stock: self.stock,
            strategy: self.strategy,
        }
    }

    /// The store spec with any password masked, for logs.
    pub fn spec_for_logs(&self) -> String {
        redact_url(&self.spec)
    }

    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            call_timeout_ms: self.store_timeout_ms,
            pool_size: self.store_pool_size,
            pool_wait_ms: self.store_pool_wait_ms,
            connect_timeout_ms: self.store_connect_timeout_ms,
        }
    }

    /// Opens the store (creating the initial sale if it holds none).
    pub async fn open(&self) -> Result<Store, StoreError> {
        Ok(
            Store::open_with(&self.spec, self.initial_sale(), self.options())
                .await?
                .with_count_insert_pause(Duration::from_millis(self.count_insert_pause_ms)),
        )
    }
}

// Hand-written so that a store password never reaches a log line.
impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("store", &self.spec_for_logs())
            .field("stock", &self.stock)
            .field("strategy", &self.strategy)
            .field("count_insert_pause_ms", &self.count_insert_pause_ms)
            .field("options", &self.options())
            .finish()
    }
}
