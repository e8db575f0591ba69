//! The vocabulary of a flash sale: who buys, what they are answered, what the sale is.
//!
//! These types are the wire contract too: [`BuyResponse`] and [`SaleState`] serialize to the
//! JSON bodies of the design (`{"outcome": "ordered", "order_id": "...", "user_id": 42}`).

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A buyer. Always a positive integer up to `i64::MAX` (the widest integer both stores keep):
/// 0, negatives, letters and overflow are rejected at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(NonZeroU64);

impl UserId {
    pub const MAX: u64 = i64::MAX as u64;

    pub fn new(id: u64) -> Result<Self, InvalidUserId> {
        if id > Self::MAX {
            return Err(InvalidUserId::TooLarge(id.to_string()));
        }
        NonZeroU64::new(id).map(Self).ok_or(InvalidUserId::Zero)
    }

    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a user id was refused; the message is what a client sees in a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUserId {
    #[error("user id is empty")]
    Empty,
    #[error("user id must be a positive integer, got 0")]
    Zero,
    #[error("user id must be a positive integer, got {0:?}")]
    NotANumber(String),
    #[error("user id {0:?} is too large (max {max})", max = UserId::MAX)]
    TooLarge(String),
}

impl FromStr for UserId {
    type Err = InvalidUserId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(InvalidUserId::Empty);
        }
        // Only plain ASCII digits: `u64::from_str` would also accept a leading `+`.
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidUserId::NotANumber(s.to_owned()));
        }
        let id: u64 = s
            .parse()
            .map_err(|_| InvalidUserId::TooLarge(s.to_owned()))?;
        Self::new(id)
    }
}

/// How the sale decides whether a buyer gets a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The original experiment: count orders, then insert if below stock. Two separate store
    /// operations, so concurrent buyers interleave between them and the sale oversells.
    #[default]
    CountInsert,
    /// One atomic conditional update claims a unit only if one is left; never oversells.
    Conditional,
    /// The original author's fix: lock the sale row, read what is left from it, insert the
    /// order and take the unit, commit. Check-then-act made correct by the lock; never
    /// oversells. (On SQLite the lock is the whole database's write lock.)
    RowLock,
}

impl Strategy {
    /// Every strategy, in the order the reports list them.
    pub const ALL: [Self; 3] = [Self::CountInsert, Self::Conditional, Self::RowLock];

    /// Whether the store itself refuses a unit that is not there (so a sold-out sale's
    /// buyers are final). Only `count-insert` can oversell.
    pub fn never_oversells(self) -> bool {
        !matches!(self, Self::CountInsert)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CountInsert => "count-insert",
            Self::Conditional => "conditional",
            Self::RowLock => "row-lock",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "count-insert" => Ok(Self::CountInsert),
            "conditional" => Ok(Self::Conditional),
            "row-lock" => Ok(Self::RowLock),
            other => Err(format!(
                "unknown strategy {other:?}: expected \"count-insert\", \"conditional\" or \"row-lock\""
            )),
        }
    }
}

/// An order's id, opaque to clients.
pub type OrderId = String;

/// What a buy came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ordered,
    SoldOut,
    AlreadyOrdered,
}

/// The answer to a buy, identical on every route (backend, front tier, RPC reply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyResponse {
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    pub user_id: u64,
}

impl BuyResponse {
    pub fn ordered(user: UserId, order_id: OrderId) -> Self {
        Self {
            outcome: Outcome::Ordered,
            order_id: Some(order_id),
            user_id: user.get(),
        }
    }

    pub fn already_ordered(user: UserId, order_id: OrderId) -> Self {
        Self {
            outcome: Outcome::AlreadyOrdered,
            order_id: Some(order_id),
            user_id: user.get(),
        }
    }

    pub fn sold_out(user: UserId) -> Self {
        Self {
            outcome: Outcome::SoldOut,
            order_id: None,
            user_id: user.get(),
        }
    }
}

/// What `POST /admin/sale` sets: the whole sale is replaced, orders dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleConfig {
    pub stock: u64,
    pub strategy: Strategy,
}

/// `GET /sale`: the sale as the store sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleState {
    pub stock: u64,
    pub orders: u64,
    pub oversold: u64,
    pub strategy: Strategy,
    /// Which sale this is: every reset increments it, so answers and events about an earlier
    /// sale can be told apart from the current one.
    pub generation: u64,
    /// The orders have reached the stock: every new buyer is answered `sold_out`.
    pub sold_out: bool,
    /// Sold out, and the set of buyers can no longer change. Only `conditional` and
    /// `row-lock` get here: under `count-insert` a buy that counted before the last unit
    /// went may still insert (the race the original experiment measured), so its buyers are
    /// never final.
    pub buyers_final: bool,
}

impl SaleState {
    pub fn new(config: SaleConfig, orders: u64, generation: u64) -> Self {
        let sold_out = orders >= config.stock;
        Self {
            stock: config.stock,
            orders,
            oversold: orders.saturating_sub(config.stock),
            strategy: config.strategy,
            generation,
            sold_out,
            buyers_final: sold_out && config.strategy.never_oversells(),
        }
    }
}

/// One order as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub user_id: u64,
    pub order_id: OrderId,
}

/// One page of the orders of one sale, ascending by user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrdersPage {
    pub generation: u64,
    pub orders: Vec<Order>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_id_is_a_positive_integer_and_nothing_else() {
        assert_eq!("42".parse::<UserId>().unwrap().get(), 42);
        assert_eq!(
            "9223372036854775807".parse::<UserId>().unwrap().get(),
            UserId::MAX
        );
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "abc",
            "1.5",
            " 1",
            "9223372036854775808",
            "18446744073709551616",
            "１",
        ] {
            assert!(bad.parse::<UserId>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn responses_serialize_to_the_designed_json() {
        let user = UserId::new(42).unwrap();
        let ordered = serde_json::to_value(BuyResponse::ordered(user, "o1".into())).unwrap();
        assert_eq!(
            ordered,
            serde_json::json!({"outcome": "ordered", "order_id": "o1", "user_id": 42})
        );
        let sold_out = serde_json::to_value(BuyResponse::sold_out(user)).unwrap();
        assert_eq!(
            sold_out,
            serde_json::json!({"outcome": "sold_out", "user_id": 42})
        );
        let state = SaleState::new(
            SaleConfig {
                stock: 100,
                strategy: Strategy::CountInsert,
            },
            103,
            4,
        );
        assert_eq!(
            serde_json::to_value(state).unwrap(),
            serde_json::json!({
                "stock": 100, "orders": 103, "oversold": 3, "strategy": "count-insert",
                "generation": 4, "sold_out": true, "buyers_final": false,
            })
        );
    }

    #[test]
    fn only_a_sold_out_sale_that_never_oversells_has_final_buyers() {
        let state = |strategy, orders| SaleState::new(SaleConfig { stock: 2, strategy }, orders, 1);
        for strategy in [Strategy::Conditional, Strategy::RowLock] {
            assert!(!state(strategy, 1).sold_out);
            assert!(!state(strategy, 1).buyers_final);
            assert!(state(strategy, 2).sold_out);
            assert!(state(strategy, 2).buyers_final, "{strategy}");
        }
        assert!(state(Strategy::CountInsert, 2).sold_out);
        assert!(!state(Strategy::CountInsert, 2).buyers_final);
    }

    #[test]
    fn every_strategy_is_spelled_the_same_in_json_on_the_command_line_and_in_text() {
        use clap::ValueEnum;
        for strategy in Strategy::ALL {
            let text = strategy.as_str();
            assert_eq!(text.parse::<Strategy>().unwrap(), strategy);
            assert_eq!(serde_json::to_value(strategy).unwrap(), text);
            assert_eq!(
                <Strategy as ValueEnum>::from_str(text, false).unwrap(),
                strategy
            );
        }
        assert_eq!(Strategy::RowLock.as_str(), "row-lock");
        assert!("rowlock".parse::<Strategy>().is_err());
    }
}
