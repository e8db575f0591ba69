//! The MongoDB store, used by docker compose.
//!
//! Layout: collection `orders` (`_id` = order id, `user_id` with a unique index) and collection
//! `sale` holding one document `{_id: "current", stock, remaining, strategy}`.
//!
//! - The conditional claim is one `find_one_and_update` guarded by `remaining > 0`: MongoDB
//!   applies it atomically to the one document, so no two buyers take the same last unit.
//!   If the order insert then hits the unique key, the unit is given back.
//! - `reset` is a multi-document transaction, which MongoDB only offers on a replica set:
//!   docker compose runs `mongo` as a single-node replica set for that reason.

use mongodb::bson::{self, doc};
use mongodb::error::{
    ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT, WriteFailure,
};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Client, ClientSession, Collection, IndexModel};
use serde::{Deserialize, Serialize};

use super::{ClaimOutcome, InsertOutcome, Snapshot, StoreError, new_order_id, to_i64, to_u64};
use crate::domain::{OrderId, SaleConfig, SaleState, Strategy, UserId};

const SALE_ID: &str = "current";
/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;
/// A transaction that keeps meeting write conflicts is given up after this many tries.
const TRANSACTION_ATTEMPTS: usize = 10;

#[derive(Debug, Serialize, Deserialize)]
struct OrderDoc {
    #[serde(rename = "_id")]
    order_id: OrderId,
    user_id: i64,
    created_at: bson::DateTime,
}

#[derive(Debug, Serialize, Deserialize)]
struct SaleDoc {
    #[serde(rename = "_id")]
    id: String,
    stock: i64,
    remaining: i64,
    strategy: Strategy,
}

impl SaleDoc {
    fn new(config: SaleConfig) -> Result<Self, StoreError> {
        let stock = to_i64(config.stock)?;
        Ok(Self {
            id: SALE_ID.to_owned(),
            stock,
            remaining: stock,
            strategy: config.strategy,
        })
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
        let client = Client::with_uri_str(uri).await?;
        let db = client
            .default_database()
            .unwrap_or_else(|| client.database("flashsale"));
        let store = Self {
            orders: db.collection("orders"),
            sale: db.collection("sale"),
            client,
        };

        store
            .orders
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "user_id": 1 })
                    .options(
                        IndexOptions::builder()
                            .unique(true)
                            .name("one_order_per_user".to_owned())
                            .build(),
                    )
                    .build(),
            )
            .await?;
        // Only the first process to start creates the sale; later ones join it.
        let first = SaleDoc::new(initial)?;
        store
            .sale
            .update_one(
                doc! { "_id": SALE_ID },
                doc! { "$setOnInsert": {
                    "stock": first.stock, "remaining": first.remaining, "strategy": first.strategy.as_str(),
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

    async fn find_order(&self, user_id: i64) -> Result<Option<OrderId>, StoreError> {
        Ok(self
            .orders
            .find_one(doc! { "user_id": user_id })
            .await?
            .map(|o| o.order_id))
    }

    async fn existing_order(&self, user_id: i64) -> Result<OrderId, StoreError> {
        self.find_order(user_id).await?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "unique key refused user {user_id}, but no order found"
            ))
        })
    }

    pub async fn snapshot(&self, user: UserId) -> Result<Snapshot, StoreError> {
        let user_id = to_i64(user.get())?;
        let (sale, existing_order) =
            tokio::try_join!(self.current_sale(), self.find_order(user_id))?;
        Ok(Snapshot {
            sale: sale.config()?,
            remaining: to_u64(sale.remaining.max(0))?,
            existing_order,
        })
    }

    pub async fn count_orders(&self) -> Result<u64, StoreError> {
        Ok(self.orders.count_documents(doc! {}).await?)
    }

    /// Inserts an order; the unique index answers for a repeat buyer.
    async fn insert(&self, user_id: i64) -> Result<InsertOutcome, StoreError> {
        let order = OrderDoc {
            order_id: new_order_id(),
            user_id,
            created_at: bson::DateTime::now(),
        };
        match self.orders.insert_one(&order).await {
            Ok(_) => Ok(InsertOutcome::Inserted(order.order_id)),
            Err(e) if is_duplicate_key(&e) => Ok(InsertOutcome::Duplicate(
                self.existing_order(user_id).await?,
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn insert_order(&self, user: UserId) -> Result<InsertOutcome, StoreError> {
        self.insert(to_i64(user.get())?).await
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
        if claimed.is_none() {
            return Ok(ClaimOutcome::SoldOut);
        }
        match self.insert(user_id).await {
            Ok(InsertOutcome::Inserted(order_id)) => Ok(ClaimOutcome::Ordered(order_id)),
            Ok(InsertOutcome::Duplicate(order_id)) => {
                self.give_back_unit().await?;
                Ok(ClaimOutcome::AlreadyOrdered(order_id))
            }
            Err(e) => {
                // The order was not written: return the unit so the sale does not undersell.
                if let Err(give_back) = self.give_back_unit().await {
                    tracing::error!(error = %give_back, "cannot give back a claimed unit");
                }
                Err(e)
            }
        }
    }

    async fn give_back_unit(&self) -> Result<(), StoreError> {
        self.sale
            .update_one(doc! { "_id": SALE_ID }, doc! { "$inc": { "remaining": 1 } })
            .await?;
        Ok(())
    }

    pub async fn reset(&self, sale: SaleConfig) -> Result<(), StoreError> {
        let new_sale = SaleDoc::new(sale)?;
        let mut session = self.client.start_session().await?;
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            match self.reset_in(&mut session, &new_sale).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < TRANSACTION_ATTEMPTS && is_retryable_transaction_error(&e) => {
                    tracing::debug!(attempt, error = %e, "sale reset conflicted, retrying");
                }
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn reset_in(
        &self,
        session: &mut ClientSession,
        sale: &SaleDoc,
    ) -> mongodb::error::Result<()> {
        session.start_transaction().await?;
        let work = async {
            self.orders
                .delete_many(doc! {})
                .session(&mut *session)
                .await?;
            self.sale
                .replace_one(doc! { "_id": SALE_ID }, sale)
                .upsert(true)
                .session(&mut *session)
                .await?;
            Ok::<_, mongodb::error::Error>(())
        }
        .await;
        match work {
            Ok(()) => session.commit_transaction().await,
            Err(e) => {
                let _ = session.abort_transaction().await;
                Err(e)
            }
        }
    }

    pub async fn sale(&self) -> Result<SaleState, StoreError> {
        let (sale, orders) = tokio::try_join!(self.current_sale(), self.count_orders())?;
        Ok(SaleState::new(sale.config()?, orders))
    }

    pub async fn order_user_ids_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<u64>, StoreError> {
        use futures_util::TryStreamExt;
        let orders: Vec<OrderDoc> = self
            .orders
            .find(doc! { "user_id": { "$gt": after } })
            .sort(doc! { "user_id": 1 })
            .limit(i64::from(limit))
            .await?
            .try_collect()
            .await?;
        orders.into_iter().map(|o| to_u64(o.user_id)).collect()
    }
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    matches!(&*error.kind, ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == DUPLICATE_KEY)
}

fn is_retryable_transaction_error(error: &mongodb::error::Error) -> bool {
    error.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || error.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
}
