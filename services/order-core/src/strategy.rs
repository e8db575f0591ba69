//! How a buy is decided. The same function serves the HTTP backend and the RabbitMQ worker.
//!
//! Both strategies first read the sale and the buyer's existing order (a read: no write lock).
//! A buyer who already ordered is answered `already_ordered`, whatever the stock.
//!
//! - `count-insert` then counts the orders and, if below stock, inserts. Count and insert are
//!   two separate store operations on purpose: that gap is the race the original experiment
//!   measured, and concurrent buyers who all counted 99 all insert.
//! - `conditional` answers `sold_out` straight from that read when nothing is left, so a sale
//!   that is over never queues for the write lock; otherwise one atomic conditional claim
//!   (which re-checks the stock itself) takes a unit and writes the order.
//! - `row-lock` answers `sold_out` from the read in the same way (units left only go down
//!   within a sale); otherwise it locks the sale row, reads the units left from the locked
//!   row, and only then writes the order and takes the unit: check-then-act, made correct by
//!   the lock.

use crate::domain::{BuyResponse, Strategy, UserId};
use crate::store::{ClaimOutcome, InsertOutcome, Store, StoreError};

/// Decides a batch of buys in arrival order, in one store transaction (the batched worker).
/// See [`Store::buy_batch`]: both strategies apply their rule inside the transaction, so a
/// batch is never raced by itself; what races with it is said in the worker's docs.
pub async fn buy_batch(store: &Store, users: &[UserId]) -> Result<Vec<BuyResponse>, StoreError> {
    store.buy_batch(users).await
}

/// Buys one unit for `user` under the sale's current strategy.
#[tracing::instrument(skip_all, fields(user_id = user.get()))]
pub async fn buy(store: &Store, user: UserId) -> Result<BuyResponse, StoreError> {
    let snapshot = store.snapshot(user).await?;
    if let Some(order_id) = snapshot.existing_order {
        return Ok(BuyResponse::already_ordered(user, order_id));
    }
    match snapshot.sale.strategy {
        Strategy::CountInsert => {
            count_then_insert(store, user, snapshot.sale.stock, snapshot.generation).await
        }
        Strategy::Conditional | Strategy::RowLock => {
            if snapshot.remaining == 0 {
                return Ok(BuyResponse::sold_out(user));
            }
            let decided = if snapshot.sale.strategy == Strategy::RowLock {
                store.lock_and_insert(user).await?
            } else {
                store.claim_and_insert(user).await?
            };
            Ok(match decided {
                ClaimOutcome::Ordered(order_id) => BuyResponse::ordered(user, order_id),
                ClaimOutcome::AlreadyOrdered(order_id) => {
                    BuyResponse::already_ordered(user, order_id)
                }
                ClaimOutcome::SoldOut => BuyResponse::sold_out(user),
            })
        }
    }
}

async fn count_then_insert(
    store: &Store,
    user: UserId,
    stock: u64,
    generation: u64,
) -> Result<BuyResponse, StoreError> {
    // Operation 1 of 2. Between this count and the insert below, other buyers may insert.
    if store.count_orders(generation).await? >= stock {
        return Ok(BuyResponse::sold_out(user));
    }
    let pause = store.count_insert_pause();
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    // Operation 2 of 2. Only the unique key on the user id is enforced here, not the stock.
    Ok(match store.insert_order(user, generation).await? {
        InsertOutcome::Inserted(order_id) => BuyResponse::ordered(user, order_id),
        InsertOutcome::Duplicate(order_id) => BuyResponse::already_ordered(user, order_id),
    })
}
