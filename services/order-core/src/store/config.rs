//! The store options every service that holds a store takes (backend and worker alike), so
//! they are spelled, defaulted and documented once.

use std::fmt;
use std::time::Duration;

use super::{Store, StoreError};
use crate::domain::{SaleConfig, Strategy};
use crate::redact::redact_url;

#[derive(Clone, clap::Args)]
pub struct StoreConfig {
    /// Where orders live: a `mongodb://` URI, or a file path for the embedded SQLite store
    /// (shared by the backends and the workers of one machine).
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

    /// Opens the store (creating the initial sale if it holds none).
    pub async fn open(&self) -> Result<Store, StoreError> {
        Ok(Store::open(&self.spec, self.initial_sale())
            .await?
            .with_count_insert_pause(Duration::from_millis(self.count_insert_pause_ms)))
    }
}

// Hand-written so that a MongoDB password never reaches a log line.
impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("store", &self.spec_for_logs())
            .field("stock", &self.stock)
            .field("strategy", &self.strategy)
            .field("count_insert_pause_ms", &self.count_insert_pause_ms)
            .finish()
    }
}
