//! Where orders live. One option selects the store ([`StoreSpec`]): a `postgres://` URL
//! (PostgreSQL), a `mongodb://` URI (MongoDB), or a file path for the embedded SQLite
//! database (the default, so everything runs without a database server).
//!
//! Invariants every store keeps:
//! - one order per user and sale, enforced by a unique key in the database;
//! - the sale (stock, strategy, units left, generation) lives in the store, so every backend
//!   replica and worker sharing the store shares one sale;
//! - `reset` replaces the sale and drops its orders in one transaction: a buy sees either the
//!   old sale or the new one, never a mix;
//! - `claim_and_insert` and `lock_and_insert` never let the orders exceed the stock;
//! - no call outlives [`StoreOptions::call_timeout_ms`]: a stuck store is an error, not a hang.

mod coalesce;
mod config;
mod mongo;
mod postgres;
mod spec;
mod sqlite;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use config::{StoreConfig, StoreOptions};
pub use mongo::MongoStore;
pub use postgres::PostgresStore;
pub use spec::{BadStoreSpec, StoreSpec};
pub use sqlite::SqliteStore;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::{BuyResponse, OrderId, OrdersPage, SaleConfig, SaleState, Strategy, UserId};

/// A store failure. The cause is for logs; clients only learn [`StoreError::reason`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] r2d2_sqlite::rusqlite::Error),
    #[error("SQLite connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL connection pool: {0}")]
    PostgresPool(#[from] deadpool_postgres::PoolError),
    #[error("store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("store holds unexpected data: {0}")]
    Corrupt(String),
    #[error("cannot open store {spec}: {reason}")]
    Open { spec: String, reason: String },
    /// The call did not finish within the store's call timeout.
    #[error("the store did not answer within {0:?}")]
    Timeout(Duration),
    /// What was asked is not offered by this store (e.g. `row-lock` on MongoDB).
    #[error("{0}")]
    Unsupported(String),
    /// The sale was reset between a buy's read and its write: the buy belonged to a sale
    /// that no longer exists, so nothing was kept. The buyer may simply try again.
    #[error("the sale was reset during this buy")]
    SaleReset,
    /// The failure of a coalesced read's batch, shared by every read that was in it.
    #[error("{0}")]
    Shared(Arc<StoreError>),
    /// A coalesced read's batch stopped without an answer (its task panicked, or the runtime
    /// is shutting down).
    #[error("the batched read this call waited for stopped without an answer")]
    BatchLost,
}

impl StoreError {
    /// What a client may be told: a short reason with no internal detail (no host, no
    /// password, no SQL).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SaleReset => "the sale was reset during this buy; try again",
            Self::Timeout(_) => "the store did not answer in time",
            Self::Unsupported(_) => "not offered by this store",
            Self::PostgresPool(error) => postgres::pool_error_reason(error),
            Self::Postgres(error) => postgres::error_reason(error),
            Self::Shared(error) => error.reason(),
            _ => "store unavailable",
        }
    }
}
/// What one read says about a buyer and the sale, before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub sale: SaleConfig,
    /// The sale this read saw; the buy's writes are only for this sale.
    pub generation: u64,
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

/// The result of the conditional strategy's atomic claim, or of `row-lock`'s locked one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Ordered(OrderId),
    AlreadyOrdered(OrderId),
    SoldOut,
}

/// The store a service was configured with, plus how its calls are observed.
#[derive(Clone)]
pub struct Store {
    engine: Engine,
    /// Longest any call may take (see [`StoreOptions::call_timeout_ms`]).
    call_timeout: Duration,
    /// Added between `count-insert`'s count and its insert (0 by default). The race is real
    /// without it; a pause only widens its window, as a slow database round trip would, so
    /// that a test or a demo can show it on demand.
    count_insert_pause: Duration,
    timings: Option<OperationTimings>,
}

/// Called with an operation's name and duration after every store call (for metrics).
pub type OperationTimings = Arc<dyn Fn(&'static str, Duration) + Send + Sync>;

/// The stores. An enum rather than a trait object: there are three, and static dispatch
/// keeps the async methods plain.
#[derive(Debug, Clone)]
enum Engine {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
    Mongo(MongoStore),
}

impl Engine {
    /// Refuses a strategy this store cannot run, before anything is written.
    fn check_strategy(&self, strategy: Strategy) -> Result<(), StoreError> {
        match (self, strategy) {
            (Self::Mongo(_), Strategy::RowLock) => Err(mongo_has_no_row_lock()),
            _ => Ok(()),
        }
    }
}

/// MongoDB has no lock a transaction could wait on: two transactions writing the sale
/// document do not queue, the second aborts with a write conflict and must be retried, so
/// under a crowd of buyers `row-lock` would be a retry storm, not a lock. Its atomic
/// `find_one_and_update` (`conditional`) is the row-level operation MongoDB offers.
fn mongo_has_no_row_lock() -> StoreError {
    StoreError::Unsupported(
        "the row-lock strategy is not offered on MongoDB (it has no row lock: concurrent \
         transactions on the sale document abort instead of waiting); use conditional, \
         its atomic find_one_and_update"
            .into(),
    )
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("engine", &self.engine)
            .field("count_insert_pause", &self.count_insert_pause)
            .finish_non_exhaustive()
    }
}

macro_rules! dispatch {
    ($self:ident, $op:literal, $method:ident ( $($arg:expr),* )) => {
        $self.timed($op, async {
            match &$self.engine {
                Engine::Sqlite(store) => store.$method($($arg),*).await,
                Engine::Postgres(store) => store.$method($($arg),*).await,
                Engine::Mongo(store) => store.$method($($arg),*).await,
            }
        }).await
    };
}

impl Store {
    /// Opens the store named by `spec` (see [`StoreSpec`]) with the default options.
    pub async fn open(spec: &str, initial: SaleConfig) -> Result<Self, StoreError> {
        Self::open_with(spec, initial, StoreOptions::default()).await
    }

    /// Opens the store named by `spec` (see [`StoreSpec`]). `initial` becomes the sale only
    /// if the store holds none yet: a replica starting against a shared store must not
    /// reset a sale in progress. A bad spec, an unreachable server or a strategy the store
    /// cannot run is an error here, at start-up.
    pub async fn open_with(
        spec: &str,
        initial: SaleConfig,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let parsed: StoreSpec = spec.parse().map_err(|e: BadStoreSpec| StoreError::Open {
            spec: crate::redact::redact_url(spec),
            reason: e.to_string(),
        })?;
        if matches!(parsed, StoreSpec::Mongo(_)) && initial.strategy == Strategy::RowLock {
            return Err(mongo_has_no_row_lock());
        }
        // Each store bounds its own opening: PostgreSQL by its connect and statement
        // timeouts, SQLite by its busy timeout, MongoDB by its server selection timeout.
        let engine = match &parsed {
            StoreSpec::Sqlite(path) => Engine::Sqlite(SqliteStore::open(path, initial).await?),
            StoreSpec::Postgres(url) => {
                Engine::Postgres(PostgresStore::open(url, initial, &options).await?)
            }
            StoreSpec::Mongo(uri) => Engine::Mongo(MongoStore::open(uri, initial).await?),
        };
        Ok(Self {
            engine,
            call_timeout: options.call_timeout(),
            count_insert_pause: Duration::ZERO,
            timings: None,
        })
    }

    /// The kind of store: `sqlite`, `postgres` or `mongodb`.
    pub fn kind(&self) -> &'static str {
        match &self.engine {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres(_) => "postgres",
            Engine::Mongo(_) => "mongodb",
        }
    }

    /// Widens `count-insert`'s race window by `pause` (see the field's doc).
    pub fn with_count_insert_pause(mut self, pause: Duration) -> Self {
        self.count_insert_pause = pause;
        self
    }

    pub fn count_insert_pause(&self) -> Duration {
        self.count_insert_pause
    }

    /// Reports every call's duration to `timings`.
    pub fn with_timings(mut self, timings: OperationTimings) -> Self {
        self.timings = Some(timings);
        self
    }

    /// Runs one store call, bounded by the call timeout, and reports its duration.
    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.call_timeout, call)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.call_timeout)));
        if let Some(timings) = &self.timings {
            timings(op, started.elapsed());
        }
        result
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, "ping", ping())
    }

    pub async fn snapshot(&self, user: UserId) -> Result<Snapshot, StoreError> {
        dispatch!(self, "snapshot", snapshot(user))
    }

    /// The first step of `count-insert`: how many orders sale `generation` holds, whatever
    /// the stock.
    pub async fn count_orders(&self, generation: u64) -> Result<u64, StoreError> {
        dispatch!(self, "count", count_orders(generation))
    }

    /// The second step of `count-insert`: writes an order for sale `generation` without
    /// looking at the stock. [`StoreError::SaleReset`] if that sale is gone.
    pub async fn insert_order(
        &self,
        user: UserId,
        generation: u64,
    ) -> Result<InsertOutcome, StoreError> {
        dispatch!(self, "insert", insert_order(user, generation))
    }

    /// The conditional strategy: atomically claims a unit if one is left and writes the order.
    pub async fn claim_and_insert(&self, user: UserId) -> Result<ClaimOutcome, StoreError> {
        dispatch!(self, "claim", claim_and_insert(user))
    }

    /// The `row-lock` strategy: locks the sale row, reads the units left from it, and if one
    /// is left writes the order and takes the unit, then commits (on SQLite the lock is the
    /// database's single write lock; MongoDB refuses the strategy).
    pub async fn lock_and_insert(&self, user: UserId) -> Result<ClaimOutcome, StoreError> {
        self.timed("row_lock", async {
            match &self.engine {
                Engine::Sqlite(store) => store.lock_and_insert(user).await,
                Engine::Postgres(store) => store.lock_and_insert(user).await,
                Engine::Mongo(_) => Err(mongo_has_no_row_lock()),
            }
        })
        .await
    }

    /// Decides `users` in order, inside ONE store transaction, under the sale's strategy:
    /// a buyer who already has an order (from before, or earlier in this batch) is answered
    /// `already_ordered`; the others take a unit while the strategy's rule allows. Nothing
    /// else writes between the decisions of a batch, so a batch never oversells by itself.
    pub async fn buy_batch(&self, users: &[UserId]) -> Result<Vec<BuyResponse>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, "batch", buy_batch(users))
    }

    /// Replaces the sale and drops every order, in one transaction; the sale's generation
    /// goes up by one. Returns the new sale.
    pub async fn reset(&self, sale: SaleConfig) -> Result<SaleState, StoreError> {
        self.engine.check_strategy(sale.strategy)?;
        dispatch!(self, "reset", reset(sale))
    }

    /// The sale as stored: stock, strategy, generation, and the orders actually held.
    pub async fn sale(&self) -> Result<SaleState, StoreError> {
        dispatch!(self, "sale", sale())
    }

    /// Up to `limit` orders of the current sale, ascending by user id, all with a user id
    /// greater than `after`, and the generation they belong to: one page of the buyers the
    /// store holds (the load tester checks its `ordered` answers against it; the front
    /// tier's gate learns the winners of a sold-out sale from it).
    pub async fn orders_page(&self, after: u64, limit: u32) -> Result<OrdersPage, StoreError> {
        // Every store keeps ids as i64: nothing is stored above i64::MAX.
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        dispatch!(self, "orders_page", orders_page(after, limit))
    }

    /// Every user id holding an order, ascending.
    pub async fn order_user_ids(&self) -> Result<Vec<u64>, StoreError> {
        const PAGE: u32 = 10_000;
        let mut all = Vec::new();
        loop {
            let page = self
                .orders_page(all.last().copied().unwrap_or(0), PAGE)
                .await?;
            let full = page.orders.len() == PAGE as usize;
            all.extend(page.orders.into_iter().map(|order| order.user_id));
            if !full {
                return Ok(all);
            }
        }
    }
}

/// The decision rule of a batch, shared by every store: the sale as the transaction found
/// it, updated as the batch takes units.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLedger {
    strategy: Strategy,
    stock: u64,
    /// Orders held (count-insert compares this with the stock).
    orders: u64,
    /// Units still claimable (conditional, row-lock).
    remaining: u64,
    /// Units this batch took.
    pub(crate) taken: u64,
}

impl BatchLedger {
    pub(crate) fn new(sale: SaleConfig, orders: u64, remaining: u64) -> Self {
        Self {
            strategy: sale.strategy,
            stock: sale.stock,
            orders,
            remaining,
            taken: 0,
        }
    }

    pub(crate) fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Whether nothing in this batch can be ordered: every decision is `sold_out` or
    /// `already_ordered`, so a store may answer from a read, without the write lock.
    pub(crate) fn sold_out(&self) -> bool {
        match self.strategy {
            Strategy::CountInsert => self.orders >= self.stock,
            Strategy::Conditional | Strategy::RowLock => self.remaining == 0,
        }
    }

    /// Takes a unit for a buyer with no order yet, if the strategy's rule allows one.
    pub(crate) fn take(&mut self) -> bool {
        if self.sold_out() {
            return false;
        }
        self.orders += 1;
        self.remaining = self.remaining.saturating_sub(1);
        self.taken += 1;
        true
    }
}

/// Domain integers (u64) as the stores keep them (i64, in SQLite, PostgreSQL and BSON alike).
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
