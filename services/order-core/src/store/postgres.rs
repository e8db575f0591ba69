//! The PostgreSQL store: `tokio-postgres` on a `deadpool-postgres` pool, prepared statements
//! cached per connection, and a transaction's statements pipelined (sent together, answered
//! in order) so that a lock is held for as few round trips as possible.
//!
//! Schema (version [`SCHEMA_VERSION`], recorded in `flashsale_schema`):
//! - `sale`: one row (`id = 1`) with `generation`, `stock`, `remaining` (units the
//!   `conditional` and `row-lock` strategies can still take; `CHECK remaining >= 0`, so the
//!   database itself refuses to sell a unit that is not there) and `strategy`;
//! - `orders`: primary key `(generation, user_id)`, so one order per user and sale holds in
//!   the database itself, and `order_id`.
//!
//! It is created at start-up under an advisory lock, in one transaction, so that several
//! processes starting at once on an empty database create it once; each later version is
//! one step of [`MIGRATIONS`], applied the same way.
//!
//! The strategies, statement by statement:
//! - every buy's first read (the sale, and whether the buyer already holds an order): the
//!   reads waiting at once in this process go to the server together, as one statement on
//!   an array of buyers ([`Coalescer`]: one batch in flight, and what arrives during its
//!   round trip is the next), so a crowd told `sold_out` costs one statement per round trip,
//!   not one per buyer. Each answer comes from a statement sent after the read started;
//!   nothing is cached. Only this read is coalesced: claims, counts and inserts are each
//!   buyer's own statements;
//! - `count-insert`: `SELECT count(*)`, then, in a separate statement, an `INSERT` that only
//!   checks the generation (`... FROM sale WHERE generation = $1 FOR KEY SHARE`): the race
//!   of the experiment is real, and an insert that counted before a reset is refused
//!   ([`StoreError::SaleReset`]) instead of landing in the new sale (the key-share lock makes
//!   it wait for a reset in progress, whose `FOR UPDATE` it conflicts with);
//! - `conditional`: ONE statement, `WITH claim AS (UPDATE sale SET remaining = remaining - 1
//!   WHERE remaining > 0 RETURNING generation) INSERT INTO orders ...`: the claim and the
//!   order commit together or not at all (a second order of one user fails the unique key
//!   and rolls its claim back);
//! - `row-lock`: `BEGIN; SELECT remaining, generation FROM sale WHERE id = 1 FOR UPDATE`,
//!   then (if a unit is left) `INSERT` the order, `UPDATE sale SET remaining = remaining - 1`
//!   and `COMMIT` sent together: the lock is held for one round trip and the commit's WAL
//!   flush;
//! - a batch: `FOR NO KEY UPDATE` on the sale row, the batch's held orders and (for
//!   `count-insert`) the count, decided in arrival order, then one `INSERT ... unnest`, the
//!   units taken and `COMMIT` together: one WAL flush for the whole batch. Batches of several
//!   workers are serialized by the row lock, whatever the strategy; unbatched `count-insert`
//!   inserts take no such lock and still race with them;
//! - `reset`: `FOR UPDATE` on the sale row, `DELETE FROM orders`, the new sale with the next
//!   generation, in one transaction.
//!
//! Failures are answers, not hangs: each connection has `statement_timeout` (the call
//! timeout) and `idle_in_transaction_session_timeout` (half of it), a connect timeout, TCP
//! keepalives and a TCP user timeout; the pool bounds the wait for a connection. A
//! connection leaves a call back into the pool only when the call ended cleanly
//! ([`Conn::settle`]); after an error or a timeout it is closed, so a broken connection or
//! one stuck inside a transaction is never handed out again. Closed connections are dropped
//! by the pool when next taken, and new ones made: after a server restart the store
//! recovers by itself. Only plain TCP is offered (no TLS).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{
    ClientWrapper, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
    TimeoutType,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::coalesce::Coalescer;
use super::{
    BatchLedger, ClaimOutcome, InsertOutcome, Snapshot, StoreError, StoreOptions, new_order_id,
    to_i64, to_u64,
};
use crate::domain::{
    BuyResponse, Order, OrderId, OrdersPage, SaleConfig, SaleState, Strategy, UserId,
};
use crate::redact::redact_url;
use crate::telemetry::one_line;

/// The schema version this program writes and reads.
const SCHEMA_VERSION: i32 = 1;

/// `MIGRATIONS[v - 1]` brings a database from version `v - 1` to `v` (0: empty).
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = ["
    CREATE TABLE sale (
        id         smallint PRIMARY KEY CHECK (id = 1),
        generation bigint   NOT NULL CHECK (generation >= 1),
        stock      bigint   NOT NULL CHECK (stock >= 0),
        remaining  bigint   NOT NULL CHECK (remaining >= 0 AND remaining <= stock),
        strategy   text     NOT NULL
    );
    CREATE TABLE orders (
        generation bigint      NOT NULL,
        user_id    bigint      NOT NULL CHECK (user_id > 0),
        order_id   text        NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (generation, user_id)
    );
"];

/// The key of the advisory lock that serializes schema creation between processes.
const SCHEMA_LOCK: i64 = 0x666c_6173_6873_616c; // "flashsal"

/// Idle time before TCP keepalives start probing a connection nothing is sent on.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;

/// A batch whose insert met an order written meanwhile by an unbatched buy of the same user
/// is decided again (it then answers that user `already_ordered`), at most this many times.
const BATCH_ATTEMPTS: usize = 3;

/// Snapshot batches of one process in flight at once: one, on one pooled connection; the
/// reads that arrive during its round trip go together in the next. A statement costs the
/// server far more than a row of one, so the fewer statements the better; when the server
/// is slower, round trips are longer and batches grow by themselves.
const SNAPSHOT_BATCHES: usize = 1;

const BEGIN: &str = "BEGIN";
const COMMIT: &str = "COMMIT";
const ROLLBACK: &str = "ROLLBACK";

/// The sale and the orders of the current sale held by any of the buyers in `$1`, from one
/// snapshot: one row per order found, or a single row with no order. It costs the server
/// about what a lookup of one buyer does, plus a little per buyer; the planner scans a small
/// orders table once and looks the buyers up by key in a large one.
const SNAPSHOTS: &str = "
    SELECT s.stock, s.remaining, s.strategy, s.generation, o.user_id, o.order_id
      FROM sale s
      LEFT JOIN orders o ON o.generation = s.generation AND o.user_id = ANY($1)
     WHERE s.id = 1";

const READ_SALE: &str = "SELECT stock, remaining, strategy, generation FROM sale WHERE id = 1";

const COUNT_ORDERS: &str = "SELECT count(*) FROM orders WHERE generation = $1";

/// `count-insert`'s insert: only into the sale the buyer counted in; the key-share lock
/// waits for a reset in progress and then sees its new generation.
const INSERT_IN_GENERATION: &str = "
    INSERT INTO orders (generation, user_id, order_id)
    SELECT generation, $2, $3 FROM sale WHERE id = 1 AND generation = $1 FOR KEY SHARE
    ON CONFLICT (generation, user_id) DO NOTHING
    RETURNING order_id";

const FIND_ORDER: &str = "SELECT order_id FROM orders WHERE generation = $1 AND user_id = $2";

const FIND_CURRENT_ORDER: &str = "
    SELECT o.order_id FROM orders o JOIN sale s ON s.generation = o.generation
     WHERE s.id = 1 AND o.user_id = $1";

/// `conditional`: the claim and the order in one statement, so in one implicit transaction.
const CLAIM_AND_INSERT: &str = "
    WITH claim AS (
        UPDATE sale SET remaining = remaining - 1
         WHERE id = 1 AND remaining > 0
        RETURNING generation)
    INSERT INTO orders (generation, user_id, order_id)
    SELECT generation, $1, $2 FROM claim
    RETURNING order_id";

/// `row-lock`: the lock, and what is left read from the locked row.
const LOCK_SALE: &str = "SELECT remaining, generation FROM sale WHERE id = 1 FOR UPDATE";
const INSERT_ORDER: &str = "INSERT INTO orders (generation, user_id, order_id) VALUES ($1, $2, $3)";
const TAKE_UNIT: &str = "UPDATE sale SET remaining = remaining - 1 WHERE id = 1";

/// A batch's lock: it conflicts with claims, row-lock buyers, other batches and resets, not
/// with `count-insert`'s key-share inserts.
const LOCK_SALE_FOR_BATCH: &str =
    "SELECT stock, remaining, strategy, generation FROM sale WHERE id = 1 FOR NO KEY UPDATE";
const HELD_ORDERS: &str = "
    SELECT user_id, order_id FROM orders
     WHERE generation = (SELECT generation FROM sale WHERE id = 1) AND user_id = ANY($1)";
const HELD_ORDERS_IN: &str =
    "SELECT user_id, order_id FROM orders WHERE generation = $1 AND user_id = ANY($2)";
const COUNT_CURRENT_ORDERS: &str = "
    SELECT count(*) FROM orders
     WHERE generation = (SELECT generation FROM sale WHERE id = 1)";
const INSERT_ORDERS: &str = "
    INSERT INTO orders (generation, user_id, order_id)
    SELECT $1, u.user_id, u.order_id FROM unnest($2::bigint[], $3::text[]) AS u(user_id, order_id)";
const TAKE_UNITS: &str = "UPDATE sale SET remaining = remaining - $1 WHERE id = 1";

/// `reset`'s lock conflicts with everything, `count-insert`'s key-share inserts included.
const LOCK_SALE_FOR_RESET: &str = "SELECT 1 FROM sale WHERE id = 1 FOR UPDATE";
const DELETE_ORDERS: &str = "DELETE FROM orders";
const REPLACE_SALE: &str = "
    UPDATE sale SET stock = $1, remaining = $1, strategy = $2, generation = generation + 1
     WHERE id = 1
    RETURNING generation";

/// The sale and its order count, from one snapshot.
const SALE_STATE: &str = "
    SELECT s.stock, s.strategy, s.generation,
           (SELECT count(*) FROM orders o WHERE o.generation = s.generation)
      FROM sale s WHERE s.id = 1";

/// One page of the current sale's orders and its generation, from one snapshot.
const ORDERS_PAGE: &str = "
    SELECT s.generation, o.user_id, o.order_id
      FROM sale s
      LEFT JOIN LATERAL (
          SELECT user_id, order_id FROM orders
           WHERE generation = s.generation AND user_id > $1
           ORDER BY user_id LIMIT $2) o ON true
     WHERE s.id = 1
     ORDER BY o.user_id";

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Concurrent snapshot reads of this process, sent together (see [`SNAPSHOT_BATCHES`]).
    snapshots: Coalescer<i64, Snapshot>,
    /// The URL with any password masked, for logs.
    shown: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.shown)
            .field("pool", &self.pool.status())
            .finish()
    }
}

/// A pooled connection that goes back to the pool only through [`Conn::settle`] with a
/// clean result. Dropped any other way (an error, a timeout that dropped the call) it may
/// be broken or still inside a transaction, so it is closed instead.
struct Conn(Option<Object>);

impl Conn {
    fn client(&self) -> &ClientWrapper {
        self.0
            .as_ref()
            .expect("a connection until settled or dropped")
    }

    /// Gives the connection back to the pool if `result` is a success (every call returns a
    /// success only with its transaction, if any, committed or rolled back), and passes
    /// `result` on.
    fn settle<T>(mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_ok() {
            drop(self.0.take());
        }
        result
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            // Detached from the pool and dropped: the connection closes.
            drop(Object::take(object));
        }
    }
}

impl PostgresStore {
    pub async fn open(
        url: &str,
        initial: SaleConfig,
        options: &StoreOptions,
    ) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let open_error = |reason: String| StoreError::Open {
            spec: shown.clone(),
            reason,
        };
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| open_error(format!("not a PostgreSQL URL: {}", one_line(&e))))?;
        let timeout_ms = options.call_timeout_ms;
        // A live client is idle inside a transaction only between the pipelined statements
        // of one call: a round trip and its own decision. One that vanished mid-call (killed,
        // or cut off by a partition) must release the sale row's lock before the calls queued
        // behind it reach their own timeout, so that they are served instead of failed: half
        // the call timeout.
        let idle_ms = (timeout_ms / 2).max(1);
        let server_side = format!(
            "-c statement_timeout={timeout_ms} -c idle_in_transaction_session_timeout={idle_ms}"
        );
        let server_side = match config.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} {server_side}"),
            _ => server_side,
        };
        config
            .options(server_side)
            .connect_timeout(options.connect_timeout())
            .tcp_user_timeout(options.call_timeout())
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES);
        if config.get_application_name().is_none() {
            config.application_name("flashsale");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // A closed connection is noticed without a round trip; one that fails in a
                // call is never put back (see `Conn`).
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size as usize)
            .wait_timeout(Some(options.pool_wait()))
            .create_timeout(Some(options.connect_timeout()))
            .recycle_timeout(Some(options.connect_timeout()))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| open_error(e.to_string()))?;
        let snapshots = {
            let pool = pool.clone();
            Coalescer::new(SNAPSHOT_BATCHES, options.call_timeout(), move |user_ids| {
                let pool = pool.clone();
                async move { snapshots(&pool, user_ids).await }
            })
        };
        let store = Self {
            pool,
            snapshots,
            shown: shown.clone(),
        };
        store
            .migrate(initial)
            .await
            .map_err(|e| open_error(one_line(&e)))?;
        tracing::info!(
            store = %shown,
            pool_size = options.pool_size,
            schema_version = SCHEMA_VERSION,
            "PostgreSQL store open"
        );
        Ok(store)
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        conn(&self.pool).await
    }

    /// Creates or upgrades the schema and creates the first sale if there is none, in one
    /// transaction under an advisory lock: processes starting at once take turns, and the
    /// later ones find everything done.
    async fn migrate(&self, initial: SaleConfig) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        let result = migrate_on(conn.client(), initial).await;
        conn.settle(result)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        let result = conn
            .client()
            .simple_query("SELECT 1")
            .await
            .map(drop)
            .map_err(StoreError::from);
        conn.settle(result)
    }

    /// The sale and the buyer's order, read together with the snapshots other buyers of
    /// this process wait for (one statement for all of them, see [`Coalescer`]).
    pub async fn snapshot(&self, user: UserId) -> Result<Snapshot, StoreError> {
        self.snapshots.load(to_i64(user.get())?).await
    }

    pub async fn count_orders(&self, generation: u64) -> Result<u64, StoreError> {
        let generation = to_i64(generation)?;
        let conn = self.conn().await?;
        let result = async {
            let c = conn.client();
            let row = c
                .query_one(&c.prepare_cached(COUNT_ORDERS).await?, &[&generation])
                .await?;
            to_u64(row.try_get(0)?)
        }
        .await;
        conn.settle(result)
    }

    pub async fn insert_order(
        &self,
        user: UserId,
        generation: u64,
    ) -> Result<InsertOutcome, StoreError> {
        let (user_id, generation) = (to_i64(user.get())?, to_i64(generation)?);
        let conn = self.conn().await?;
        let result = insert_order_on(conn.client(), user_id, generation).await;
        conn.settle(result)
    }

    pub async fn claim_and_insert(&self, user: UserId) -> Result<ClaimOutcome, StoreError> {
        let user_id = to_i64(user.get())?;
        let conn = self.conn().await?;
        let result = claim_and_insert_on(conn.client(), user_id).await;
        conn.settle(result)
    }

    pub async fn lock_and_insert(&self, user: UserId) -> Result<ClaimOutcome, StoreError> {
        let user_id = to_i64(user.get())?;
        let conn = self.conn().await?;
        let result = lock_and_insert_on(conn.client(), user_id).await;
        conn.settle(result)
    }

    /// A batch in one transaction (see [`super::Store::buy_batch`]), answered from a plain
    /// read, without a lock, once nothing can be ordered.
    pub async fn buy_batch(&self, users: &[UserId]) -> Result<Vec<BuyResponse>, StoreError> {
        let ids = users
            .iter()
            .map(|user| to_i64(user.get()))
            .collect::<Result<Vec<_>, _>>()?;
        for attempt in 1.. {
            let conn = self.conn().await?;
            let result = buy_batch_on(conn.client(), users, &ids).await;
            match conn.settle(result)? {
                BatchOutcome::Decided(answers) => return Ok(answers),
                BatchOutcome::Again(why) if attempt < BATCH_ATTEMPTS => {
                    tracing::debug!(attempt, why, "deciding the batch again");
                }
                BatchOutcome::Again(why) => {
                    return Err(StoreError::Corrupt(format!(
                        "a batch could not be decided in {BATCH_ATTEMPTS} attempts: {why}"
                    )));
                }
            }
        }
        unreachable!("the loop returns")
    }

    pub async fn reset(&self, sale: SaleConfig) -> Result<SaleState, StoreError> {
        let conn = self.conn().await?;
        let result = reset_on(conn.client(), sale).await;
        conn.settle(result)
    }

    pub async fn sale(&self) -> Result<SaleState, StoreError> {
        let conn = self.conn().await?;
        let result = async {
            let c = conn.client();
            let row = c
                .query_one(&c.prepare_cached(SALE_STATE).await?, &[])
                .await?;
            let config = SaleConfig {
                stock: to_u64(row.try_get(0)?)?,
                strategy: parse_strategy(row.try_get(1)?)?,
            };
            Ok(SaleState::new(
                config,
                to_u64(row.try_get(3)?)?,
                to_u64(row.try_get(2)?)?,
            ))
        }
        .await;
        conn.settle(result)
    }

    pub async fn orders_page(&self, after: i64, limit: u32) -> Result<OrdersPage, StoreError> {
        let conn = self.conn().await?;
        let result = async {
            let c = conn.client();
            let rows = c
                .query(
                    &c.prepare_cached(ORDERS_PAGE).await?,
                    &[&after, &i64::from(limit)],
                )
                .await?;
            let generation = match rows.first() {
                Some(row) => to_u64(row.try_get(0)?)?,
                None => return Err(StoreError::Corrupt("the sale row is missing".into())),
            };
            let mut orders = Vec::with_capacity(rows.len());
            for row in &rows {
                // The one row of an empty page has no order (the lateral join found none).
                if let Some(user_id) = row.try_get::<_, Option<i64>>(1)? {
                    orders.push(Order {
                        user_id: to_u64(user_id)?,
                        order_id: row.try_get(2)?,
                    });
                }
            }
            Ok(OrdersPage { generation, orders })
        }
        .await;
        conn.settle(result)
    }
}

async fn migrate_on(c: &ClientWrapper, initial: SaleConfig) -> Result<(), StoreError> {
    c.batch_execute(BEGIN).await?;
    c.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS flashsale_schema (
             id      smallint PRIMARY KEY CHECK (id = 1),
             version integer  NOT NULL
         )",
    )
    .await?;
    let found: i32 = match c
        .query_opt("SELECT version FROM flashsale_schema WHERE id = 1", &[])
        .await?
    {
        Some(row) => row.try_get(0)?,
        None => 0,
    };
    if found > SCHEMA_VERSION {
        c.batch_execute(ROLLBACK).await?;
        return Err(StoreError::Corrupt(format!(
            "the database's schema is version {found}, newer than this program's \
             ({SCHEMA_VERSION}): run a newer build"
        )));
    }
    let applied = usize::try_from(found.max(0)).unwrap_or(0);
    for step in &MIGRATIONS[applied..] {
        c.batch_execute(step).await?;
    }
    c.execute(
        "INSERT INTO flashsale_schema (id, version) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
        &[&SCHEMA_VERSION],
    )
    .await?;
    let stock = to_i64(initial.stock)?;
    c.execute(
        "INSERT INTO sale (id, generation, stock, remaining, strategy)
         VALUES (1, 1, $1, $1, $2) ON CONFLICT (id) DO NOTHING",
        &[&stock, &initial.strategy.as_str()],
    )
    .await?;
    c.batch_execute(COMMIT).await?;
    Ok(())
}

async fn conn(pool: &Pool) -> Result<Conn, StoreError> {
    Ok(Conn(Some(pool.get().await?)))
}

/// One snapshot per element of `user_ids`, in its order, from one statement.
async fn snapshots(pool: &Pool, user_ids: Vec<i64>) -> Result<Vec<Snapshot>, StoreError> {
    let conn = conn(pool).await?;
    let result = async {
        let c = conn.client();
        let rows = c
            .query(&c.prepare_cached(SNAPSHOTS).await?, &[&user_ids])
            .await?;
        let Some(first) = rows.first() else {
            return Err(StoreError::Corrupt("the sale row is missing".into()));
        };
        let (sale, remaining, generation) = read_sale_row(first)?;
        let generation = to_u64(generation)?;
        let mut held = HashMap::new();
        for row in &rows {
            if let Some(user_id) = row.try_get::<_, Option<i64>>(4)? {
                held.insert(user_id, row.try_get::<_, OrderId>(5)?);
            }
        }
        Ok(user_ids
            .iter()
            .map(|user_id| Snapshot {
                sale,
                generation,
                remaining,
                existing_order: held.get(user_id).cloned(),
            })
            .collect())
    }
    .await;
    conn.settle(result)
}

async fn insert_order_on(
    c: &ClientWrapper,
    user_id: i64,
    generation: i64,
) -> Result<InsertOutcome, StoreError> {
    let order_id = new_order_id();
    let inserted = c
        .query_opt(
            &c.prepare_cached(INSERT_IN_GENERATION).await?,
            &[&generation, &user_id, &order_id],
        )
        .await?;
    if inserted.is_some() {
        return Ok(InsertOutcome::Inserted(order_id));
    }
    // Nothing inserted: either the buyer already holds an order of this sale, or the sale
    // is gone (reset since the count).
    match find_order(c, generation, user_id).await? {
        Some(existing) => Ok(InsertOutcome::Duplicate(existing)),
        None => Err(StoreError::SaleReset),
    }
}

async fn claim_and_insert_on(c: &ClientWrapper, user_id: i64) -> Result<ClaimOutcome, StoreError> {
    let order_id = new_order_id();
    let claimed = c
        .query_opt(
            &c.prepare_cached(CLAIM_AND_INSERT).await?,
            &[&user_id, &order_id],
        )
        .await;
    match claimed {
        Ok(Some(_)) => Ok(ClaimOutcome::Ordered(order_id)),
        Ok(None) => Ok(ClaimOutcome::SoldOut),
        // The statement failed whole, its claim with it: the unit is still in the sale.
        Err(e) if is_unique_violation(&e) => Ok(ClaimOutcome::AlreadyOrdered(
            current_order(c, user_id).await?,
        )),
        Err(e) => Err(e.into()),
    }
}

async fn lock_and_insert_on(c: &ClientWrapper, user_id: i64) -> Result<ClaimOutcome, StoreError> {
    let (begin, lock, insert, take, commit, rollback) = tokio::try_join!(
        c.prepare_cached(BEGIN),
        c.prepare_cached(LOCK_SALE),
        c.prepare_cached(INSERT_ORDER),
        c.prepare_cached(TAKE_UNIT),
        c.prepare_cached(COMMIT),
        c.prepare_cached(ROLLBACK),
    )?;
    // One round trip: the transaction opens, and the sale row comes back once locked.
    let (_, sale) = tokio::try_join!(c.execute(&begin, &[]), c.query_one(&lock, &[]))?;
    let remaining: i64 = sale.try_get(0)?;
    let generation: i64 = sale.try_get(1)?;
    if remaining <= 0 {
        c.execute(&rollback, &[]).await?;
        return Ok(ClaimOutcome::SoldOut);
    }
    // One more: the order, the unit and the commit. If the insert fails (the buyer's order
    // is already there), the update fails too and COMMIT ends the aborted transaction as a
    // rollback: the unit stays in the sale.
    let order_id = new_order_id();
    let order: [&(dyn ToSql + Sync); 3] = [&generation, &user_id, &order_id];
    let (inserted, taken, committed) = tokio::join!(
        c.execute(&insert, &order),
        c.execute(&take, &[]),
        c.execute(&commit, &[]),
    );
    committed?;
    match inserted {
        Ok(_) => {
            taken?;
            Ok(ClaimOutcome::Ordered(order_id))
        }
        Err(e) if is_unique_violation(&e) => Ok(ClaimOutcome::AlreadyOrdered(
            find_order(c, generation, user_id)
                .await?
                .ok_or(StoreError::SaleReset)?,
        )),
        Err(e) => Err(e.into()),
    }
}

/// What one attempt at a batch came to.
enum BatchOutcome {
    Decided(Vec<BuyResponse>),
    /// Nothing was written (the transaction rolled back); decide the batch again.
    Again(&'static str),
}

async fn buy_batch_on(
    c: &ClientWrapper,
    users: &[UserId],
    ids: &[i64],
) -> Result<BatchOutcome, StoreError> {
    // A plain read first: once nothing can be ordered, answer from it, without the lock.
    let sale = c
        .query_one(&c.prepare_cached(READ_SALE).await?, &[])
        .await?;
    let (config, remaining, generation) = read_sale_row(&sale)?;
    let orders = match config.strategy {
        Strategy::CountInsert => {
            let row = c
                .query_one(&c.prepare_cached(COUNT_ORDERS).await?, &[&generation])
                .await?;
            to_u64(row.try_get(0)?)?
        }
        Strategy::Conditional | Strategy::RowLock => config.stock.saturating_sub(remaining),
    };
    if BatchLedger::new(config, orders, remaining).sold_out() {
        let held = held_orders(
            c.query(
                &c.prepare_cached(HELD_ORDERS_IN).await?,
                &[&generation, &ids],
            )
            .await?,
        )?;
        return Ok(BatchOutcome::Decided(
            users
                .iter()
                .zip(ids)
                .map(|(&user, id)| match held.get(id) {
                    Some(order_id) => BuyResponse::already_ordered(user, order_id.clone()),
                    None => BuyResponse::sold_out(user),
                })
                .collect(),
        ));
    }

    let (begin, lock, held_stmt, count, insert, take, commit, rollback) = tokio::try_join!(
        c.prepare_cached(BEGIN),
        c.prepare_cached(LOCK_SALE_FOR_BATCH),
        c.prepare_cached(HELD_ORDERS),
        c.prepare_cached(COUNT_CURRENT_ORDERS),
        c.prepare_cached(INSERT_ORDERS),
        c.prepare_cached(TAKE_UNITS),
        c.prepare_cached(COMMIT),
        c.prepare_cached(ROLLBACK),
    )?;
    // One round trip: the lock, then (under it) the held orders and the count if needed.
    let counting = config.strategy == Strategy::CountInsert;
    let buyers: [&(dyn ToSql + Sync); 1] = [&ids];
    let (_, locked, held, counted) = tokio::try_join!(
        c.execute(&begin, &[]),
        c.query_one(&lock, &[]),
        c.query(&held_stmt, &buyers),
        async {
            match counting {
                true => c.query_one(&count, &[]).await.map(Some),
                false => Ok(None),
            }
        },
    )?;
    let (config, remaining, generation) = read_sale_row(&locked)?;
    let orders = match (config.strategy, counted) {
        (Strategy::CountInsert, Some(row)) => to_u64(row.try_get(0)?)?,
        (Strategy::CountInsert, None) => {
            // A reset switched the sale to count-insert since the first read.
            c.execute(&rollback, &[]).await?;
            return Ok(BatchOutcome::Again("the sale changed strategy"));
        }
        (Strategy::Conditional | Strategy::RowLock, _) => config.stock.saturating_sub(remaining),
    };
    let mut held = held_orders(held)?;
    let mut ledger = BatchLedger::new(config, orders, remaining);
    let mut answers = Vec::with_capacity(users.len());
    let (mut new_users, mut new_orders) = (Vec::new(), Vec::new());
    for (&user, &id) in users.iter().zip(ids) {
        // An earlier buy, or an earlier message of this very batch, already holds an order.
        if let Some(order_id) = held.get(&id) {
            answers.push(BuyResponse::already_ordered(user, order_id.clone()));
        } else if ledger.take() {
            let order_id = new_order_id();
            held.insert(id, order_id.clone());
            new_users.push(id);
            new_orders.push(order_id.clone());
            answers.push(BuyResponse::ordered(user, order_id));
        } else {
            answers.push(BuyResponse::sold_out(user));
        }
    }
    let taken = to_i64(ledger.taken)?;
    let takes_units = ledger.strategy().never_oversells() && taken > 0;
    // One more round trip: the orders, the units, the commit (one WAL flush for the batch).
    let (inserted, took, committed) = tokio::join!(
        async {
            match new_users.is_empty() {
                true => Ok(0),
                false => {
                    c.execute(&insert, &[&generation, &new_users, &new_orders])
                        .await
                }
            }
        },
        async {
            match takes_units {
                true => c.execute(&take, &[&taken]).await,
                false => Ok(0),
            }
        },
        c.execute(&commit, &[]),
    );
    committed?;
    match inserted {
        // An unbatched buy of one of these users committed its order after the read.
        Err(e) if is_unique_violation(&e) => {
            return Ok(BatchOutcome::Again("a buyer ordered meanwhile"));
        }
        other => other?,
    };
    took?;
    Ok(BatchOutcome::Decided(answers))
}

async fn reset_on(c: &ClientWrapper, sale: SaleConfig) -> Result<SaleState, StoreError> {
    let stock = to_i64(sale.stock)?;
    let strategy = sale.strategy.as_str();
    let (begin, lock, delete, replace, commit) = tokio::try_join!(
        c.prepare_cached(BEGIN),
        c.prepare_cached(LOCK_SALE_FOR_RESET),
        c.prepare_cached(DELETE_ORDERS),
        c.prepare_cached(REPLACE_SALE),
        c.prepare_cached(COMMIT),
    )?;
    // All in one round trip; a failed step aborts the transaction, and COMMIT then rolls
    // it back.
    let new_sale: [&(dyn ToSql + Sync); 2] = [&stock, &strategy];
    let (began, locked, deleted, replaced, committed) = tokio::join!(
        c.execute(&begin, &[]),
        c.execute(&lock, &[]),
        c.execute(&delete, &[]),
        c.query_one(&replace, &new_sale),
        c.execute(&commit, &[]),
    );
    began?;
    locked?;
    deleted?;
    let replaced = replaced?;
    committed?;
    Ok(SaleState::new(sale, 0, to_u64(replaced.try_get(0)?)?))
}

/// `(config, remaining, generation)` from a row of `stock, remaining, strategy, generation`.
fn read_sale_row(row: &Row) -> Result<(SaleConfig, u64, i64), StoreError> {
    let stock: i64 = row.try_get(0)?;
    let remaining: i64 = row.try_get(1)?;
    let config = SaleConfig {
        stock: to_u64(stock)?,
        strategy: parse_strategy(row.try_get(2)?)?,
    };
    Ok((config, to_u64(remaining.clamp(0, stock))?, row.try_get(3)?))
}

fn held_orders(rows: Vec<Row>) -> Result<HashMap<i64, OrderId>, StoreError> {
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

async fn find_order(
    c: &ClientWrapper,
    generation: i64,
    user_id: i64,
) -> Result<Option<OrderId>, StoreError> {
    let row = c
        .query_opt(
            &c.prepare_cached(FIND_ORDER).await?,
            &[&generation, &user_id],
        )
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// The buyer's order in the current sale, after the unique key refused a second one.
async fn current_order(c: &ClientWrapper, user_id: i64) -> Result<OrderId, StoreError> {
    let row = c
        .query_opt(&c.prepare_cached(FIND_CURRENT_ORDER).await?, &[&user_id])
        .await?;
    // None: the sale was reset between the refusal and this read.
    Ok(row.ok_or(StoreError::SaleReset)?.try_get(0)?)
}

fn is_unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

fn parse_strategy(s: &str) -> Result<Strategy, StoreError> {
    s.parse().map_err(StoreError::Corrupt)
}

/// What a client is told about a PostgreSQL error (see [`StoreError::reason`]).
pub(super) fn error_reason(error: &tokio_postgres::Error) -> &'static str {
    let code = error.code();
    if code == Some(&SqlState::QUERY_CANCELED) || code == Some(&SqlState::LOCK_NOT_AVAILABLE) {
        "the store did not answer in time"
    } else if code == Some(&SqlState::TOO_MANY_CONNECTIONS) {
        "store busy: the database refused a connection"
    } else if error.is_closed()
        || error.as_db_error().is_none()
        || code == Some(&SqlState::ADMIN_SHUTDOWN)
        || code == Some(&SqlState::CRASH_SHUTDOWN)
        || code == Some(&SqlState::CANNOT_CONNECT_NOW)
    {
        "store unreachable"
    } else {
        "store unavailable"
    }
}

/// What a client is told about a failure to get a pooled connection.
pub(super) fn pool_error_reason(error: &PoolError) -> &'static str {
    match error {
        PoolError::Timeout(TimeoutType::Wait) => "store busy: no connection free in time",
        PoolError::Timeout(_) => "store unreachable",
        PoolError::Backend(error) => error_reason(error),
        _ => "store unavailable",
    }
}
