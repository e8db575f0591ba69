//! The embedded store: one SQLite file in WAL mode.
//!
//! Why SQLite: it is transactional and on disk, and unlike most pure-Rust embedded stores it is
//! safe for several processes on one file at once (backend replicas and the worker share it).
//! WAL lets readers run alongside the single writer, so `sold_out` answers never wait for the
//! write lock. `synchronous = NORMAL` in WAL mode survives a process crash (an acknowledged
//! order is in the log) and may lose the last commits only on a power loss.
//!
//! `row-lock` here is a `BEGIN IMMEDIATE` transaction: SQLite has no row locks, so "lock
//! the sale row" takes the whole database's write lock. It is correct (nothing writes
//! between the read of the units left and the order), but it serializes every writer, not
//! only the buyers of one sale row.
//!
//! Every call runs on tokio's blocking pool: SQLite calls block, and must not stall the
//! executor's worker threads.
//!
//! Writers: SQLite takes one write transaction at a time, whatever the number of
//! connections. So a process sends its writes one at a time (an async lock, [`write`]):
//! the others wait in tokio, not in SQLite's busy handler. Between processes (backend
//! replicas and workers on one file) the busy handler retries every 100 µs: SQLite's own
//! timeout sleeps up to 100 ms a try, which under contention leaves the lock idle far
//! longer than a write holds it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use r2d2_sqlite::rusqlite::{self, Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    BatchLedger, ClaimOutcome, InsertOutcome, Snapshot, StoreError, new_order_id, to_i64, to_u64,
};
use crate::domain::{
    BuyResponse, Order, OrderId, OrdersPage, SaleConfig, SaleState, Strategy, UserId,
};

/// How long a writer waits for another writer (in any process) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections per process: enough for the blocking pool to overlap reads with the one writer.
const POOL_SIZE: u32 = 16;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS sale (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        stock      INTEGER NOT NULL CHECK (stock >= 0),
        claimed    INTEGER NOT NULL CHECK (claimed >= 0),
        strategy   TEXT    NOT NULL,
        generation INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE IF NOT EXISTS orders (
        order_id   TEXT    PRIMARY KEY,
        user_id    INTEGER NOT NULL UNIQUE,
        created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
";

/// How long a writer sleeps between two tries at the write lock another process holds.
const BUSY_RETRY: Duration = Duration::from_micros(100);

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: Pool<SqliteConnectionManager>,
    path: PathBuf,
    /// This process's turn to write (see the module doc).
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// SQLite's busy handler: another process holds the write lock; try again shortly, for up
/// to [`BUSY_TIMEOUT`] in all.
fn retry_busy(attempts: i32) -> bool {
    let waited = BUSY_RETRY * u32::try_from(attempts).unwrap_or(u32::MAX);
    if waited >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_RETRY);
    true
}

impl SqliteStore {
    pub async fn open(path: &Path, initial: SaleConfig) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Open {
                spec: path.display().to_string(),
                reason: format!("cannot create directory {}: {e}", parent.display()),
            })?;
        }
        let manager = SqliteConnectionManager::file(&path).with_init(|conn| {
            conn.busy_handler(Some(retry_busy))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            Ok(())
        });
        let pool = tokio::task::spawn_blocking(move || {
            Pool::builder()
                .max_size(POOL_SIZE)
                .connection_timeout(BUSY_TIMEOUT)
                .build(manager)
        })
        .await??;
        let store = Self {
            pool,
            path,
            writer: Arc::default(),
        };
        store
            .run(move |conn| {
                // Several processes may start at once on a new file: the schema and the
                // first sale are created in one write transaction, and only once.
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute_batch(SCHEMA)?;
                add_generation_column(&tx)?;
                tx.execute(
                    "INSERT OR IGNORE INTO sale (id, stock, claimed, strategy) VALUES (1, ?1, 0, ?2)",
                    params![to_i64(initial.stock)?, initial.strategy.as_str()],
                )?;
                tx.commit()?;
                Ok(())
            })
            .await?;
        tracing::info!(path = %store.path.display(), "embedded store open");
        Ok(store)
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await?
    }

    /// Runs the write `f` when it is this process's turn to write. The turn is held until
    /// `f` is done on the blocking pool, even if the caller gives up meanwhile.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let turn = Arc::clone(&self.writer).lock_owned().await;
        self.run(move |conn| {
            let _turn = turn;
            f(conn)
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    pub async fn snapshot(&self, user: UserId) -> Result<Snapshot, StoreError> {
        let user_id = to_i64(user.get())?;
        self.run(move |conn| {
            // One statement, so the sale and the buyer's order come from one read snapshot.
            type Row = (i64, i64, String, i64, Option<OrderId>);
            let (stock, claimed, strategy, generation, existing_order): Row = conn
                .prepare_cached(
                    "SELECT stock, claimed, strategy, generation,
                            (SELECT order_id FROM orders WHERE user_id = ?1)
                     FROM sale WHERE id = 1",
                )?
                .query_row([user_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?;
            let sale = SaleConfig {
                stock: to_u64(stock)?,
                strategy: parse_strategy(&strategy)?,
            };
            Ok(Snapshot {
                sale,
                generation: to_u64(generation)?,
                remaining: to_u64(stock - claimed.min(stock))?,
                existing_order,
            })
        })
        .await
    }

    /// Every order held: a reset deletes the orders in the same transaction as it moves the
    /// generation on, and inserts are guarded by the generation, so all belong to one sale.
    pub async fn count_orders(&self, _generation: u64) -> Result<u64, StoreError> {
        self.run(|conn| count_orders(conn)).await
    }

    pub async fn insert_order(
        &self,
        user: UserId,
        generation: u64,
    ) -> Result<InsertOutcome, StoreError> {
        let user_id = to_i64(user.get())?;
        let expected = to_i64(generation)?;
        self.write(move |conn| {
            let order_id = new_order_id();
            // Only into the sale the buyer counted in: if it was reset since, nothing is
            // written, and the buyer is told so rather than landing in the new sale.
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO orders (order_id, user_id)
                     SELECT ?1, ?2 FROM sale WHERE id = 1 AND generation = ?3",
                )?
                .execute(params![order_id, user_id, expected]);
            match inserted {
                Ok(1) => Ok(InsertOutcome::Inserted(order_id)),
                Ok(_) => Err(StoreError::SaleReset),
                Err(e) if is_unique_violation(&e) => {
                    Ok(InsertOutcome::Duplicate(existing_order(conn, user_id)?))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    pub async fn claim_and_insert(&self, user: UserId) -> Result<ClaimOutcome, StoreError> {
        let user_id = to_i64(user.get())?;
        self.write(move |conn| {
            // IMMEDIATE takes the write lock up front, so the checks below and the writes
            // that follow them cannot interleave with another writer in any process.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(order_id) = find_order(&tx, user_id)? {
                return Ok(ClaimOutcome::AlreadyOrdered(order_id));
            }
            let claimed = tx
                .prepare_cached(
                    "UPDATE sale SET claimed = claimed + 1 WHERE id = 1 AND claimed < stock",
                )?
                .execute([])?;
            if claimed == 0 {
                return Ok(ClaimOutcome::SoldOut); // dropping `tx` rolls back
            }
            let order_id = new_order_id();
            tx.prepare_cached("INSERT INTO orders (order_id, user_id) VALUES (?1, ?2)")?
                .execute(params![order_id, user_id])?;
            tx.commit()?;
            Ok(ClaimOutcome::Ordered(order_id))
        })
        .await
    }

    /// `row-lock`: the write lock first (IMMEDIATE: the whole database, SQLite's only lock),
    /// then the units left read from the sale row, then the order and the unit taken.
    pub async fn lock_and_insert(&self, user: UserId) -> Result<ClaimOutcome, StoreError> {
        let user_id = to_i64(user.get())?;
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (sale, claimed, _) = read_sale(&tx)?;
            if claimed >= sale.stock {
                return Ok(ClaimOutcome::SoldOut);
            }
            if let Some(order_id) = find_order(&tx, user_id)? {
                return Ok(ClaimOutcome::AlreadyOrdered(order_id));
            }
            let order_id = new_order_id();
            tx.prepare_cached("INSERT INTO orders (order_id, user_id) VALUES (?1, ?2)")?
                .execute(params![order_id, user_id])?;
            tx.prepare_cached("UPDATE sale SET claimed = claimed + 1 WHERE id = 1")?
                .execute([])?;
            tx.commit()?;
            Ok(ClaimOutcome::Ordered(order_id))
        })
        .await
    }

    /// Decides a batch in one IMMEDIATE transaction (see [`super::Store::buy_batch`]). When a
    /// plain read already shows that nothing can be ordered, the batch is answered from that
    /// read, without taking the write lock: after a sell-out, most batches are that.
    pub async fn buy_batch(&self, users: &[UserId]) -> Result<Vec<BuyResponse>, StoreError> {
        let users = users.to_vec();
        self.write(move |conn| {
            {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
                let ledger = batch_ledger(&tx)?;
                if ledger.sold_out() {
                    return users
                        .iter()
                        .map(|&user| {
                            Ok(match find_order(&tx, to_i64(user.get())?)? {
                                Some(order_id) => BuyResponse::already_ordered(user, order_id),
                                None => BuyResponse::sold_out(user),
                            })
                        })
                        .collect();
                }
            }
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut ledger = batch_ledger(&tx)?;
            let mut answers = Vec::with_capacity(users.len());
            for &user in &users {
                let user_id = to_i64(user.get())?;
                // An earlier buy, or an earlier message of this very batch (the transaction
                // sees its own inserts), already holds an order: the unique key's answer.
                if let Some(order_id) = find_order(&tx, user_id)? {
                    answers.push(BuyResponse::already_ordered(user, order_id));
                    continue;
                }
                if !ledger.take() {
                    answers.push(BuyResponse::sold_out(user));
                    continue;
                }
                let order_id = new_order_id();
                tx.prepare_cached("INSERT INTO orders (order_id, user_id) VALUES (?1, ?2)")?
                    .execute(params![order_id, user_id])?;
                answers.push(BuyResponse::ordered(user, order_id));
            }
            if ledger.strategy().never_oversells() && ledger.taken > 0 {
                // The claims of the whole batch at once: no other writer ran in between.
                tx.prepare_cached("UPDATE sale SET claimed = claimed + ?1 WHERE id = 1")?
                    .execute([to_i64(ledger.taken)?])?;
            }
            tx.commit()?;
            Ok(answers)
        })
        .await
    }

    pub async fn reset(&self, sale: SaleConfig) -> Result<SaleState, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM orders", [])?;
            tx.execute(
                "UPDATE sale SET stock = ?1, claimed = 0, strategy = ?2,
                        generation = generation + 1
                 WHERE id = 1",
                params![to_i64(sale.stock)?, sale.strategy.as_str()],
            )?;
            let state = sale_state(&tx)?;
            tx.commit()?;
            Ok(state)
        })
        .await
    }

    pub async fn sale(&self) -> Result<SaleState, StoreError> {
        self.run(|conn| {
            // A read transaction, so the sale and the count come from one snapshot.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            sale_state(&tx)
        })
        .await
    }

    pub async fn orders_page(&self, after: i64, limit: u32) -> Result<OrdersPage, StoreError> {
        self.run(move |conn| {
            // One read transaction: the page and its generation come from one snapshot.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let generation: i64 =
                tx.query_row("SELECT generation FROM sale WHERE id = 1", [], |r| r.get(0))?;
            let mut stmt = tx.prepare_cached(
                "SELECT user_id, order_id FROM orders WHERE user_id > ?1 ORDER BY user_id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            let orders = rows
                .map(|row| {
                    let (user_id, order_id) = row?;
                    Ok(Order {
                        user_id: to_u64(user_id)?,
                        order_id,
                    })
                })
                .collect::<Result<_, StoreError>>()?;
            Ok(OrdersPage {
                generation: to_u64(generation)?,
                orders,
            })
        })
        .await
    }
}

/// Files created before the sale had a generation get the column (every such sale is
/// generation 1). Runs inside the opening transaction.
fn add_generation_column(conn: &Connection) -> Result<(), StoreError> {
    let has_it = conn
        .prepare("SELECT 1 FROM pragma_table_info('sale') WHERE name = 'generation'")?
        .exists([])?;
    if !has_it {
        conn.execute_batch("ALTER TABLE sale ADD COLUMN generation INTEGER NOT NULL DEFAULT 1")?;
    }
    Ok(())
}

/// The sale row: its configuration, units claimed and generation.
fn read_sale(conn: &Connection) -> Result<(SaleConfig, u64, u64), StoreError> {
    let (stock, claimed, strategy, generation): (i64, i64, String, i64) = conn
        .prepare_cached("SELECT stock, claimed, strategy, generation FROM sale WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    let config = SaleConfig {
        stock: to_u64(stock)?,
        strategy: parse_strategy(&strategy)?,
    };
    Ok((config, to_u64(claimed)?, to_u64(generation)?))
}

fn sale_state(conn: &Connection) -> Result<SaleState, StoreError> {
    let (config, _, generation) = read_sale(conn)?;
    Ok(SaleState::new(config, count_orders(conn)?, generation))
}

/// The sale as a batch's transaction finds it. Only `count-insert` needs the order count
/// (a full count, so it is skipped for `conditional`).
fn batch_ledger(conn: &Connection) -> Result<BatchLedger, StoreError> {
    let (sale, claimed, _) = read_sale(conn)?;
    let orders = match sale.strategy {
        Strategy::CountInsert => count_orders(conn)?,
        Strategy::Conditional | Strategy::RowLock => claimed,
    };
    Ok(BatchLedger::new(
        sale,
        orders,
        sale.stock.saturating_sub(claimed),
    ))
}

fn count_orders(conn: &Connection) -> Result<u64, StoreError> {
    let count: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM orders")?
        .query_row([], |r| r.get(0))?;
    to_u64(count)
}

fn find_order(conn: &Connection, user_id: i64) -> Result<Option<OrderId>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT order_id FROM orders WHERE user_id = ?1")?
        .query_row([user_id], |r| r.get(0))
        .optional()?)
}

fn existing_order(conn: &Connection, user_id: i64) -> Result<OrderId, StoreError> {
    find_order(conn, user_id)?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "unique key refused user {user_id}, but no order found"
        ))
    })
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(e, _) if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

fn parse_strategy(s: &str) -> Result<Strategy, StoreError> {
    s.parse().map_err(StoreError::Corrupt)
}
