//! The flash-sale order core, shared by the HTTP backend and the RabbitMQ worker.
//!
//! - [`domain`]: user ids, buy outcomes, the sale's configuration and state.
//! - [`strategy`]: how a buy is decided (`count-insert`, racy on purpose; `conditional` and
//!   `row-lock`, which never oversell).
//! - [`store`]: where orders live (embedded SQLite file, PostgreSQL or MongoDB), selected by
//!   one string.
//! - [`telemetry`], [`shutdown`] and [`redact`]: the process plumbing every binary shares.

pub mod domain;
pub mod metrics;
pub mod redact;
pub mod shutdown;
pub mod store;
pub mod strategy;
pub mod telemetry;

pub use domain::{
    BuyResponse, InvalidUserId, Order, OrderId, OrdersPage, Outcome, SaleConfig, SaleState,
    Strategy, UserId,
};
pub use store::{Store, StoreConfig, StoreError, StoreOptions};
pub use strategy::{buy, buy_batch};
