//! The MongoDB store, used by docker compose.
//!
//! Layout: collection `orders` (`_id` = order id, `user_id`, `generation`: the sale it
//! belongs to; unique on `(user_id, generation)`) and collection `sale` holding one document
//! `{_id: "current", stock, remaining, strategy, generation}`.
//!
//! - The conditional claim is one `find_one_and_update` guarded by `remaining > 0`: MongoDB
//!   applies it atomically to the one document, so no two buyers take the same last unit.
//!   If the order insert then hits the unique key, the unit is given back.
//! - Every order carries the generation of the sale it was decided in, and every read is
//!   filtered by the current generation. A claim made just before a reset whose insert lands
//!   just after it therefore lands in the old sale, invisible to the new one, instead of
//!   adding an unclaimed order to the new sale (the edge case of the first version).
//! - `reset` and a worker's batch are multi-document transactions, which MongoDB only offers
//!   on a replica set: docker compose runs `mongo` as a replica set for that reason.
//! - Writes use majority write concern with retryable writes, reads majority read concern
//!   (unless the URI says otherwise), so an acknowledged order survives the loss of the
//!   primary of a replica set.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use mongodb::bson::{self, doc};
use mongodb::error::{
    ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT, WriteFailure,
};
use mongodb::options::{ClientOptions, IndexOptions, ReadConcern, ReturnDocument, WriteConcern};
use mongodb::{Client, ClientSession, Collection, IndexModel};
use serde::{Deserialize, Serialize};

use super::{
    BatchLedger, ClaimOutcome, InsertOutcome, Snapshot, StoreError, new_order_id, to_i64, to_u64,
};
use crate::domain::{
    BuyResponse, Order, OrderId, OrdersPage, SaleConfig, SaleState, Strategy, UserId,
};

const SALE_ID: &str = "current";
/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;
/// A transaction that keeps meeting write conflicts is given up after this many tries.
const TRANSACTION_ATTEMPTS: usize = 10;

/// Orders and sales written before generations existed belong to generation 1.
fn first_generation() -> i64 {
    1
}

#[derive(Debug, Serialize, Deserialize)]
struct OrderDoc {
    #[serde(rename = "_id")]
    order_id: OrderId,
    user_id: i64,
    #[serde(default = "first_generation")]
    generation: i64,
    created_at: bson::DateTime,
}

impl OrderDoc {
    fn new(user_id: i64, generation: i64) -> Self {
        Self {
            order_id: new_order_id(),
            user_id,
            generation,
            created_at: bson::DateTime::now(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SaleDoc {
    #[serde(rename = "_id")]
    id: String,
    stock: i64,
    remaining: i64,
    strategy: Strategy,
    #[serde(default = "first_generation")]
    generation: i64,
}

impl SaleDoc {
    fn new(config: SaleConfig, generation: i64) -> Result<Self, StoreError> {
        let stock = to_i64(config.stock)?;
        Ok(Self {
            id: SALE_ID.to_owned(),
            stock,
            remaining: stock,
            strategy: config.strategy,
            generation,
        })
    }

    fn generation(&self) -> Result<u64, StoreError> {
        to_u64(self.generation)
    }

    fn config(&self) -> Result<SaleConfig, StoreError> {
        Ok(SaleConfig {
            stock: to_u64(self.stock)?,
            strategy: self.strategy,
        })
    }
}

#[derive(Debug, Clone)]
pub struct MongoStore {
    client: Client,
    orders: Collection<OrderDoc>,
    sale: Collection<SaleDoc>,
}

impl MongoStore {
    pub async fn open(uri: &str, initial: SaleConfig) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(uri).await?;
        // Durable by default: an acknowledged order is on a majority of the replica set, and
        // the sale is read as a majority has it. The URI may still choose otherwise.
        options
            .write_concern
            .get_or_insert_with(WriteConcern::majority);
        options
            .read_concern
            .get_or_insert_with(ReadConcern::majority);
        options.retry_writes.get_or_insert(true);
        let client = Client::with_options(options)?;
        let db = client
            .default_database()
            .unwrap_or_else(|| client.database("flashsale"));
        let store = Self {
            orders: db.collection("orders"),
            sale: db.collection("sale"),
            client,
        };

        // The first version's index was unique on `user_id` alone, which would make an
        // order of an earlier sale block its buyer in every later one.
        if let Err(error) = store.orders.drop_index("one_order_per_user").await {
            tracing::debug!(%error, "no index from the first version to drop");
        }
        store
            .orders
            .create_indexes([
                IndexModel::builder()
                    .keys(doc! { "user_id": 1, "generation": 1 })
                    .options(
                        IndexOptions::builder()
                            .unique(true)
                            .name("one_order_per_user_per_sale".to_owned())
                            .build(),
                    )
                    .build(),
                IndexModel::builder()
                    .keys(doc! { "generation": 1, "user_id": 1 })
                    .options(
                        IndexOptions::builder()
                            .name("orders_of_a_sale".to_owned())
                            .build(),
                    )
                    .build(),
            ])
            .await?;
        // Only the first process to start creates the sale; later ones join it.
        let first = SaleDoc::new(initial, first_generation())?;
        store
            .sale
            .update_one(
                doc! { "_id": SALE_ID },
                doc! { "$setOnInsert": {
                    "stock": first.stock, "remaining": first.remaining,
                    "strategy": first.strategy.as_str(), "generation": first.generation,
                } },
            )
            .upsert(true)
            .await?;
        tracing::info!(database = %db.name(), "MongoDB store open");
        Ok(store)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .database("admin")
            .run_command(doc! { "ping": 1 })
            .await?;
        Ok(())
    }

    async fn current_sale(&self) -> Result<SaleDoc, StoreError> {
        self.sale
            .find_one(doc! { "_id": SALE_ID })
            .await?
            .ok_or_else(|| StoreError::Corrupt("the sale document is missing".into()))
    }

    async fn find_order(
        &self,
        user_id: i64,
        generation: i64,
    ) -> Result<Option<OrderId>, StoreError> {
        Ok(self
            .orders
            .find_one(doc! { "user_id": user_id, "generation": generation })
            .await?
            .map(|o| o.order_id))
    }

    async fn existing_order(&self, user_id: i64, generation: i64) -> Result<OrderId, StoreError> {
        self.find_order(user_id, generation).await?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "unique key refused user {user_id}, but no order found"
            ))
        })
    }

    pub async fn snapshot(&self, user: UserId) -> Result<Snapshot, StoreError> {
        let user_id = to_i64(user.get())?;
        // The buyer's orders of every generation still held (old ones linger until the next
        // reset sweeps them), read alongside the sale; the current one is picked after.
        let orders = async {
            let orders: Vec<OrderDoc> = self
                .orders
                .find(doc! { "user_id": user_id })
                .await?
                .try_collect()
                .await?;
            Ok::<_, StoreError>(orders)
        };
        let (sale, orders) = tokio::try_join!(self.current_sale(), orders)?;
        let existing_order = orders
            .into_iter()
            .find(|order| order.generation == sale.generation)
            .map(|order| order.order_id);
        Ok(Snapshot {
            sale: sale.config()?,
            generation: sale.generation()?,
            remaining: to_u64(sale.remaining.max(0))?,
            existing_order,
        })
    }

    pub async fn count_orders(&self, generation: u64) -> Result<u64, StoreError> {
        Ok(self
            .orders
            .count_documents(doc! { "generation": to_i64(generation)? })
            .await?)
    }

    /// Inserts an order of sale `generation`; the unique index answers for a repeat buyer.
    async fn insert(&self, user_id: i64, generation: i64) -> Result<InsertOutcome, StoreError> {
        let order = OrderDoc::new(user_id, generation);
        match self.orders.insert_one(&order).await {
            Ok(_) => Ok(InsertOutcome::Inserted(order.order_id)),
            Err(e) if is_duplicate_key(&e) => Ok(InsertOutcome::Duplicate(
                self.existing_order(user_id, generation).await?,
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// An order landing after a reset of its sale carries the old generation and stays
    /// invisible to the new sale: as if written just before the reset swept it away.
    pub async fn insert_order(
        &self,
        user: UserId,
        generation: u64,
    ) -> Result<InsertOutcome, StoreError> {
        self.insert(to_i64(user.get())?, to_i64(generation)?).await
    }

    pub async fn claim_and_insert(&self, user: UserId) -> Result<ClaimOutcome, StoreError> {
        let user_id = to_i64(user.get())?;
        let claimed = self
            .sale
            .find_one_and_update(
                doc! { "_id": SALE_ID, "remaining": { "$gt": 0 } },
                doc! { "$inc": { "remaining": -1 } },
            )
            .return_document(ReturnDocument::After)
            .await?;
        let Some(claimed) = claimed else {
            return Ok(ClaimOutcome::SoldOut);
        };
        let generation = claimed.generation;
        match self.insert(user_id, generation).await {
            Ok(InsertOutcome::Inserted(order_id)) => Ok(ClaimOutcome::Ordered(order_id)),
            Ok(InsertOutcome::Duplicate(order_id)) => {
                self.give_back_unit(generation).await?;
                Ok(ClaimOutcome::AlreadyOrdered(order_id))
            }
            Err(e) => {
                // The order was not written: return the unit so the sale does not undersell.
                if let Err(give_back) = self.give_back_unit(generation).await {
                    tracing::error!(error = %give_back, "cannot give back a claimed unit");
                }
                Err(e)
            }
        }
    }

    /// Returns a claimed unit to the sale it was claimed from (not to a newer one).
    async fn give_back_unit(&self, generation: i64) -> Result<(), StoreError> {
        self.sale
            .update_one(
                doc! { "_id": SALE_ID, "generation": generation },
                doc! { "$inc": { "remaining": 1 } },
            )
            .await?;
        Ok(())
    }

    /// A batch in one transaction (see [`super::Store::buy_batch`]), retried as a whole on a
    /// transient error or a write conflict: nothing is answered before the commit.
    pub async fn buy_batch(&self, users: &[UserId]) -> Result<Vec<BuyResponse>, StoreError> {
        let ids = users
            .iter()
            .map(|user| to_i64(user.get()))
            .collect::<Result<Vec<_>, _>>()?;
        // A read first: once nothing can be ordered, answer without a transaction.
        let sale = self.current_sale().await?;
        let ledger = self.ledger(&sale, None).await?;
        if ledger.sold_out() {
            let held = self.held_orders(&ids, sale.generation, None).await?;
            return Ok(users
                .iter()
                .zip(&ids)
                .map(|(&user, id)| match held.get(id) {
                    Some(order_id) => BuyResponse::already_ordered(user, order_id.clone()),
                    None => BuyResponse::sold_out(user),
                })
                .collect());
        }
        let mut session = self.client.start_session().await?;
        let mut attempt = 1;
        loop {
            match self.buy_batch_in(&mut session, users, &ids).await {
                Ok(answers) => return Ok(answers),
                Err(StoreError::Mongo(e))
                    if attempt < TRANSACTION_ATTEMPTS
                        && (is_retryable_transaction_error(&e) || is_duplicate_key(&e)) =>
                {
                    tracing::debug!(attempt, error = %e, "batch conflicted, retrying");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn buy_batch_in(
        &self,
        session: &mut ClientSession,
        users: &[UserId],
        ids: &[i64],
    ) -> Result<Vec<BuyResponse>, StoreError> {
        session.start_transaction().await?;
        let work = async {
            let sale = self
                .sale
                .find_one(doc! { "_id": SALE_ID })
                .session(&mut *session)
                .await?
                .ok_or_else(|| StoreError::Corrupt("the sale document is missing".into()))?;
            let mut ledger = self.ledger(&sale, Some(&mut *session)).await?;
            let mut held = self
                .held_orders(ids, sale.generation, Some(&mut *session))
                .await?;
            let mut answers = Vec::with_capacity(users.len());
            let mut new_orders = Vec::new();
            for (&user, &id) in users.iter().zip(ids) {
                if let Some(order_id) = held.get(&id) {
                    answers.push(BuyResponse::already_ordered(user, order_id.clone()));
                } else if ledger.take() {
                    let order = OrderDoc::new(id, sale.generation);
                    held.insert(id, order.order_id.clone());
                    answers.push(BuyResponse::ordered(user, order.order_id.clone()));
                    new_orders.push(order);
                } else {
                    answers.push(BuyResponse::sold_out(user));
                }
            }
            if !new_orders.is_empty() {
                self.orders
                    .insert_many(&new_orders)
                    .session(&mut *session)
                    .await?;
            }
            if ledger.strategy() == Strategy::Conditional && ledger.taken > 0 {
                // Touches the sale document, so a concurrent claim or reset conflicts with
                // this transaction instead of interleaving with it.
                let taken = to_i64(ledger.taken)?;
                let updated = self
                    .sale
                    .update_one(
                        doc! { "_id": SALE_ID, "generation": sale.generation,
                        "remaining": { "$gte": taken } },
                        doc! { "$inc": { "remaining": -taken } },
                    )
                    .session(&mut *session)
                    .await?;
                if updated.matched_count != 1 {
                    return Err(StoreError::Corrupt(
                        "the sale changed under a batch transaction".into(),
                    ));
                }
            }
            Ok::<_, StoreError>(answers)
        }
        .await;
        match work {
            Ok(answers) => {
                session.commit_transaction().await?;
                Ok(answers)
            }
            Err(e) => {
                let _ = session.abort_transaction().await;
                Err(e)
            }
        }
    }

    /// The sale as a batch finds it: `count-insert` counts the orders, `conditional` reads
    /// the units left.
    async fn ledger(
        &self,
        sale: &SaleDoc,
        session: Option<&mut ClientSession>,
    ) -> Result<BatchLedger, StoreError> {
        let config = sale.config()?;
        let remaining = to_u64(sale.remaining.max(0))?;
        let orders = match config.strategy {
            Strategy::Conditional | Strategy::RowLock => config.stock.saturating_sub(remaining),
            Strategy::CountInsert => {
                let count = self
                    .orders
                    .count_documents(doc! { "generation": sale.generation });
                match session {
                    Some(session) => count.session(session).await?,
                    None => count.await?,
                }
            }
        };
        Ok(BatchLedger::new(config, orders, remaining))
    }

    /// The orders of sale `generation` held by any of `ids`, by user id.
    async fn held_orders(
        &self,
        ids: &[i64],
        generation: i64,
        session: Option<&mut ClientSession>,
    ) -> Result<HashMap<i64, OrderId>, StoreError> {
        let filter = doc! { "generation": generation, "user_id": { "$in": ids } };
        let orders: Vec<OrderDoc> = match session {
            Some(session) => {
                let mut cursor = self.orders.find(filter).session(&mut *session).await?;
                let mut orders = Vec::new();
                while let Some(order) = cursor.next(&mut *session).await {
                    orders.push(order?);
                }
                orders
            }
            None => self.orders.find(filter).await?.try_collect().await?,
        };
        Ok(orders
            .into_iter()
            .map(|order| (order.user_id, order.order_id))
            .collect())
    }

    pub async fn reset(&self, sale: SaleConfig) -> Result<SaleState, StoreError> {
        let mut session = self.client.start_session().await?;
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            match self.reset_in(&mut session, sale).await {
                Ok(generation) => return Ok(SaleState::new(sale, 0, to_u64(generation)?)),
                Err(e) if attempt < TRANSACTION_ATTEMPTS && is_retryable_transaction_error(&e) => {
                    tracing::debug!(attempt, error = %e, "sale reset conflicted, retrying");
                }
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Drops the orders of every generation and starts the next one; returns its number.
    async fn reset_in(
        &self,
        session: &mut ClientSession,
        sale: SaleConfig,
    ) -> mongodb::error::Result<i64> {
        session.start_transaction().await?;
        let work = async {
            let current = self
                .sale
                .find_one(doc! { "_id": SALE_ID })
                .session(&mut *session)
                .await?
                .map_or(first_generation(), |doc| doc.generation);
            let next = SaleDoc::new(sale, current + 1)
                .map_err(|e| mongodb::error::Error::custom(format!("bad sale: {e}")))?;
            self.orders
                .delete_many(doc! {})
                .session(&mut *session)
                .await?;
            self.sale
                .replace_one(doc! { "_id": SALE_ID }, &next)
                .upsert(true)
                .session(&mut *session)
                .await?;
            Ok::<_, mongodb::error::Error>(next.generation)
        }
        .await;
        match work {
            Ok(generation) => {
                session.commit_transaction().await?;
                Ok(generation)
            }
            Err(e) => {
                let _ = session.abort_transaction().await;
                Err(e)
            }
        }
    }

    pub async fn sale(&self) -> Result<SaleState, StoreError> {
        let sale = self.current_sale().await?;
        let orders = self.count_orders(sale.generation()?).await?;
        Ok(SaleState::new(sale.config()?, orders, sale.generation()?))
    }

    pub async fn orders_page(&self, after: i64, limit: u32) -> Result<OrdersPage, StoreError> {
        let sale = self.current_sale().await?;
        let orders: Vec<OrderDoc> = self
            .orders
            .find(doc! { "generation": sale.generation, "user_id": { "$gt": after } })
            .sort(doc! { "user_id": 1 })
            .limit(i64::from(limit))
            .await?
            .try_collect()
            .await?;
        Ok(OrdersPage {
            generation: sale.generation()?,
            orders: orders
                .into_iter()
                .map(|order| {
                    Ok(Order {
                        user_id: to_u64(order.user_id)?,
                        order_id: order.order_id,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
        })
    }
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    match &*error.kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|e| e.code == DUPLICATE_KEY)),
        _ => false,
    }
}

fn is_retryable_transaction_error(error: &mongodb::error::Error) -> bool {
    error.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || error.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
}
