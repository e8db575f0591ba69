//! The sold-out gate: once the store has decided that the sale is sold out, answer every buy
//! from memory, on both routes, with no hop to nginx, the broker or the store.
//!
//! In a flash sale almost every buyer arrives after the last unit is gone (in the original
//! protocol, 100 units for 500 x 10 requests: 98%), and each of them would otherwise cross
//! the broker, a worker and the store only to hear `sold_out`.
//!
//! Exactness. After a sell-out the set of buyers is final and at most `stock` long, so the
//! front tier holds it: a winner who asks again is answered `already_ordered` with their
//! order id, everyone else `sold_out` — what the store would answer. The gate never answers a
//! false `sold_out` because it closes only on the store's own word:
//! - only a `conditional` sale's buyers are ever final (`buyers_final` in `/sale`); under
//!   `count-insert` a buy that counted before the last unit went may still insert (the race
//!   the original experiment measured), so with `count-insert` the gate never closes;
//! - before closing, the gate re-reads `/sale` and every order (`/sale/orders?order_ids=true`)
//!   from the store, all of one generation; a `sold_out` answer or event is only a hint;
//! - every sale has a generation (incremented by every reset): the gate closes for one
//!   generation, and hearing of a later one (a reset event, a re-read) reopens it, so a stale
//!   event can never close a newer sale's gate;
//! - without a link to the `sale_events` exchange the gate is open (every buy goes to the
//!   store): it could miss a reset. On start and after every reconnect it re-reads the sale
//!   before it trusts itself again.
//!
//! Events (fanout exchange `sale_events`, one exclusive queue per front tier): a front tier
//! that closes its gate publishes `sold_out` so the others verify and close too; a front tier
//! that passes a reset through `POST /admin/sale` publishes `reset`, which reopens every gate.
//! How long a reset takes to reopen every gate: one event delivery (milliseconds) when the
//! reset goes through a front tier; at most `--gate-recheck-ms` (1 s by default) when it
//! bypasses the front tiers or its event is lost, because a closed gate re-reads the sale's
//! generation that often.
//!
//! - `rules`: what the gate knows and how news changes it (pure, tested alone);
//! - `keeper`: re-reads the store on a hint, and while closed, at every recheck;
//! - `events`: the link to the sale events exchange (subscribe, apply, publish).

mod events;
mod keeper;
mod rules;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use lapin::Channel;
use order_core::shutdown::Shutdown;
use order_core::{BuyResponse, UserId};
use queue_contract::events::SaleEvent;
use queue_contract::reconnect::Link;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::http_upstream::HttpUpstream;
use rules::Knowledge;

/// Settings of the gate, taken from the front tier's configuration.
#[derive(Clone)]
pub struct GateSettings {
    pub enabled: bool,
    /// The event link's brokers and connection name.
    pub link: Link,
    pub exchange: String,
    pub recheck: Duration,
}

/// The gate's state as `GET /sale` on the front tier shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateStatus {
    pub enabled: bool,
    /// `closed` (answering from memory) or `open` (every buy goes to the store).
    pub state: String,
    /// The newest sale generation the gate knows of.
    pub generation: u64,
    /// The generation the gate closed for, while closed.
    pub closed_generation: Option<u64>,
    /// Winners held in memory while closed.
    pub winners: usize,
    /// Whether the link to the sale events exchange is up.
    pub event_link: bool,
}

struct Inner {
    settings: GateSettings,
    http: HttpUpstream,
    knowledge: RwLock<Knowledge>,
    /// A hint that the sale may be sold out: the keeper re-reads the store.
    verify: Notify,
    /// The event link's channel, for publishing; `None` while the link is down.
    events: RwLock<Option<Channel>>,
    /// Whether the gate is closed, for whoever watches it change (tests, logs).
    closed: watch::Sender<bool>,
}

/// A cheap handle on the front tier's gate.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

impl Gate {
    pub fn new(settings: GateSettings, http: HttpUpstream) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                http,
                knowledge: RwLock::new(Knowledge::default()),
                verify: Notify::new(),
                events: RwLock::new(None),
                closed: watch::channel(false).0,
            }),
        }
    }

    /// Changes what the gate knows; every change goes through here, so that the watchers of
    /// [`Gate::closed_changes`] see each opening and closing.
    fn update<T>(&self, change: impl FnOnce(&mut Knowledge) -> T) -> T {
        let mut knowledge = self.inner.knowledge.write().unwrap();
        let was_closed = knowledge.closed.is_some();
        let result = change(&mut knowledge);
        let closed = knowledge.closed.is_some();
        drop(knowledge);
        if closed != was_closed {
            self.inner.closed.send_replace(closed);
        }
        result
    }

    /// Turns `true` when the gate closes and `false` when it opens.
    pub fn closed_changes(&self) -> watch::Receiver<bool> {
        self.inner.closed.subscribe()
    }

    /// The store's answer to `user` from memory, while the gate is closed.
    pub fn answer(&self, user: UserId) -> Option<BuyResponse> {
        if !self.inner.settings.enabled {
            return None;
        }
        self.inner.knowledge.read().unwrap().answer(user)
    }

    /// The store just answered `sold_out`: time to check whether the sale is over for good.
    pub fn saw_sold_out(&self) {
        if self.inner.settings.enabled && !self.is_closed() {
            self.inner.verify.notify_one();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.inner.knowledge.read().unwrap().closed.is_some()
    }

    pub fn status(&self) -> GateStatus {
        let knowledge = self.inner.knowledge.read().unwrap();
        GateStatus {
            enabled: self.inner.settings.enabled,
            state: if knowledge.closed.is_some() {
                "closed"
            } else {
                "open"
            }
            .into(),
            generation: knowledge.generation,
            closed_generation: knowledge.closed.as_ref().map(|c| c.generation),
            winners: knowledge.closed.as_ref().map_or(0, |c| c.winners.len()),
            event_link: knowledge.linked,
        }
    }

    /// A reset passed through this front tier: reopen here at once, and tell every other
    /// front tier.
    pub async fn reset_passed(&self, generation: u64) {
        self.update(|k| k.heard_of(generation));
        self.publish(SaleEvent::Reset { generation }).await;
    }

    /// Keeps the event link up and the gate honest until `shutdown` is cancelled: the event
    /// link (reconnecting with failover) and the keeper (verifications and rechecks).
    pub async fn run(self, shutdown: Shutdown) {
        tokio::join!(self.clone().link(shutdown.clone()), self.keep(shutdown));
    }
}
