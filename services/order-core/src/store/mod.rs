//! Where orders live. One option selects the store: a `mongodb://` URI, or a file path for the
//! embedded SQLite database (the default, so everything runs without a database server).
//!
//! Invariants every store keeps:
//! - one order per user, enforced by a unique key on the user id;
//! - the sale (stock, strategy, units left) lives in the store, so every backend replica and
//!   worker sharing the store shares one sale;
//! - `reset` replaces the sale and drops its orders in one transaction: a buy sees either the
//!   old sale or the new one, never a mix;
//! - `claim_and_insert` never lets the orders exceed the stock.

mod mongo;
mod sqlite;

pub use mongo::MongoStore;
pub use sqlite::SqliteStore;

use crate::domain::{OrderId, SaleConfig, SaleState, UserId};

/// A store failure. The cause is for logs; clients only learn that the store is unavailable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] r2d2_sqlite::rusqlite::Error),
    #[error("SQLite connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("store holds unexpected data: {0}")]
    Corrupt(String),
    #[error("cannot open store {spec:?}: {reason}")]
    Open { spec: String, reason: String },
}

/// What one read says about a buyer and the sale, before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub sale: SaleConfig,
    /// Units the conditional strategy can still claim.
    pub remaining: u64,
    pub existing_order: Option<OrderId>,
}

/// The result of a plain insert (the second step of `count-insert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted(OrderId),
    /// The unique key refused a second order; here is the first.
    Duplicate(OrderId),
}

/// The result of the conditional strategy's atomic claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Ordered(OrderId),
    AlreadyOrdered(OrderId),
    SoldOut,
}

/// The store a service was configured with. An enum rather than a trait object: there are two
/// stores, and static dispatch keeps the async methods plain.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Mongo(MongoStore),
}

macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(store) => store.$method($($arg),*).await,
            Store::Mongo(store) => store.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens the store named by `spec` (`mongodb://...` / `mongodb+srv://...`, else a file path).
    /// `initial` becomes the sale only if the store holds none yet: a replica starting
    /// against a shared store must not reset a sale in progress.
    pub async fn open(spec: &str, initial: SaleConfig) -> Result<Self, StoreError> {
        if spec.starts_with("mongodb://") || spec.starts_with("mongodb+srv://") {
            Ok(Self::Mongo(MongoStore::open(spec, initial).await?))
        } else {
            Ok(Self::Sqlite(SqliteStore::open(spec, initial).await?))
        }
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self.ping())
    }

    pub async fn snapshot(&self, user: UserId) -> Result<Snapshot, StoreError> {
        dispatch!(self.snapshot(user))
    }

    /// The first step of `count-insert`: how many orders exist, whatever the stock.
    pub async fn count_orders(&self) -> Result<u64, StoreError> {
        dispatch!(self.count_orders())
    }

    /// The second step of `count-insert`: writes an order without looking at the stock.
    pub async fn insert_order(&self, user: UserId) -> Result<InsertOutcome, StoreError> {
        dispatch!(self.insert_order(user))
    }

    /// The conditional strategy: atomically claims a unit if one is left and writes the order.
    pub async fn claim_and_insert(&self, user: UserId) -> Result<ClaimOutcome, StoreError> {
        dispatch!(self.claim_and_insert(user))
    }

    /// Replaces the sale and drops every order, in one transaction.
    pub async fn reset(&self, sale: SaleConfig) -> Result<(), StoreError> {
        dispatch!(self.reset(sale))
    }

    /// The sale as stored: stock, strategy, and the orders actually held.
    pub async fn sale(&self) -> Result<SaleState, StoreError> {
        dispatch!(self.sale())
    }

    /// Up to `limit` user ids holding an order, ascending, all greater than `after`: one page
    /// of the buyers the store holds (the load tester checks its `ordered` answers against it).
    pub async fn order_user_ids_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<u64>, StoreError> {
        // Both stores keep ids as i64: nothing is stored above i64::MAX.
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        dispatch!(self.order_user_ids_after(after, limit))
    }

    /// Every user id holding an order, ascending.
    pub async fn order_user_ids(&self) -> Result<Vec<u64>, StoreError> {
        const PAGE: u32 = 10_000;
        let mut all = Vec::new();
        loop {
            let page = self
                .order_user_ids_after(all.last().copied().unwrap_or(0), PAGE)
                .await?;
            let full = page.len() == PAGE as usize;
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }
}

/// Domain integers (u64) as the stores keep them (i64, in SQLite and in BSON alike).
pub(crate) fn to_i64(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| {
        StoreError::Corrupt(format!(
            "{n} does not fit a store integer (max {})",
            i64::MAX
        ))
    })
}

pub(crate) fn to_u64(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative value {n} in store")))
}

pub(crate) fn new_order_id() -> OrderId {
    uuid::Uuid::new_v4().simple().to_string()
}
