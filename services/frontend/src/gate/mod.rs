//! The sold-out gate: once the store has decided that the sale is sold out, answer every buy
//! from memory, on both routes, with no hop to nginx, the broker or the store.
//!
//! In the original protocol about 98% of all requests arrive after the last unit is gone, and
//! each of them used to cross the broker, a worker and the store only to hear `sold_out`.
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

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};
use order_core::{BuyResponse, Order, OrderId, SaleState, UserId};
use queue_contract::connection::{Backoff, Brokers};
use queue_contract::events::SaleEvent;
use queue_contract::topology;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::http_upstream::HttpUpstream;

/// Orders read per `/sale/orders` page while learning the winners.
const PAGE: u32 = 10_000;

/// Settings of the gate, taken from the front tier's configuration.
#[derive(Clone)]
pub struct GateSettings {
    pub enabled: bool,
    pub brokers: Brokers,
    pub exchange: String,
    pub connection_name: String,
    pub connect_timeout: Duration,
    pub recheck: Duration,
}

/// What the gate knows. Plain data with the rules of the gate, so they are tested alone.
#[derive(Debug, Default)]
struct Knowledge {
    /// The newest sale generation heard of: from the store, a reset, or an event.
    generation: u64,
    /// The event link is up.
    linked: bool,
    /// Counts the times the link came up. A verification that began under an earlier link
    /// (or none) may have missed a reset, so it cannot close the gate.
    link_epoch: u64,
    closed: Option<Closed>,
}

#[derive(Debug)]
struct Closed {
    generation: u64,
    winners: HashMap<u64, OrderId>,
}

impl Knowledge {
    /// The store's answer, if the gate is closed.
    fn answer(&self, user: UserId) -> Option<BuyResponse> {
        let closed = self.closed.as_ref()?;
        Some(match closed.winners.get(&user.get()) {
            Some(order_id) => BuyResponse::already_ordered(user, order_id.clone()),
            None => BuyResponse::sold_out(user),
        })
    }

    /// A sale of `generation` exists: anything closed for an older one reopens.
    fn heard_of(&mut self, generation: u64) {
        if generation > self.generation {
            self.generation = generation;
        }
        if self
            .closed
            .as_ref()
            .is_some_and(|closed| closed.generation < self.generation)
        {
            self.closed = None;
        }
    }

    /// Closes for `generation` with its final `winners`, read by a verification that began
    /// under link `epoch`, unless a newer sale is known or the link was not up all along.
    /// Returns whether it closed.
    fn close(&mut self, generation: u64, winners: HashMap<u64, OrderId>, epoch: u64) -> bool {
        self.heard_of(generation);
        if !self.linked || epoch != self.link_epoch || generation < self.generation {
            return false;
        }
        self.closed = Some(Closed {
            generation,
            winners,
        });
        true
    }

    fn link_up(&mut self) {
        self.linked = true;
        self.link_epoch += 1;
    }

    fn link_lost(&mut self) {
        self.linked = false;
        self.closed = None;
    }
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

    async fn publish(&self, event: SaleEvent) {
        let channel = self.inner.events.read().unwrap().clone();
        let Some(channel) = channel else {
            tracing::warn!(
                ?event,
                "no link to the sale events exchange: the event is not sent"
            );
            return;
        };
        let sent = async {
            channel
                .basic_publish(
                    self.inner.settings.exchange.as_str().into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    &event.to_json(),
                    BasicProperties::default().with_content_type("application/json".into()),
                )
                .await?
                .await
        };
        if let Err(error) = sent.await {
            tracing::warn!(%error, ?event, "publishing a sale event failed");
        }
    }

    /// Keeps the event link up and the gate honest until `stop` turns true: the event link
    /// (reconnecting with backoff and failover) and the keeper (verifications and rechecks).
    pub async fn run(self, stop: watch::Receiver<bool>) {
        tokio::join!(self.clone().link(stop.clone()), self.keep(stop));
    }

    /// The keeper: re-reads the store when told to, and, while closed, every recheck
    /// interval, so a reset that bypassed the front tiers still reopens the gate.
    async fn keep(self, mut stop: watch::Receiver<bool>) {
        let mut recheck = tokio::time::interval(self.inner.settings.recheck);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        enum Wake {
            Verify,
            Recheck,
        }
        loop {
            let wake = tokio::select! {
                _ = stop.wait_for(|stop| *stop) => return,
                () = self.inner.verify.notified() => Wake::Verify,
                _ = recheck.tick() => Wake::Recheck,
            };
            match wake {
                Wake::Verify => {
                    if let Err(error) = self.try_close().await {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "cannot verify the sale's state; the gate stays open"
                        );
                    }
                }
                Wake::Recheck if self.is_closed() => {
                    if let Err(error) = self.recheck().await {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "cannot re-read the sale while closed"
                        );
                    }
                }
                Wake::Recheck => {}
            }
        }
    }

    /// Reads the sale; closes if the store says its buyers are final, learning them first.
    async fn try_close(&self) -> anyhow::Result<()> {
        let http = &self.inner.http;
        let epoch = self.inner.knowledge.read().unwrap().link_epoch;
        let sale: SaleState = http.get_json("/sale").await.context("reading /sale")?;
        self.update(|k| k.heard_of(sale.generation));
        if !self.inner.settings.enabled || !sale.buyers_final {
            return Ok(());
        }
        let mut winners = HashMap::new();
        let mut after = 0;
        loop {
            let page: OrdersPage = http
                .get_json(&format!(
                    "/sale/orders?after={after}&limit={PAGE}&order_ids=true"
                ))
                .await
                .context("reading the winners")?;
            if page.generation != sale.generation {
                // A reset between the reads: that sale is gone, and this one is not over.
                self.update(|k| k.heard_of(page.generation));
                return Ok(());
            }
            winners.extend(page.orders.into_iter().map(|o| (o.user_id, o.order_id)));
            match page.next_after {
                Some(next) => after = next,
                None => break,
            }
        }
        if winners.len() as u64 != sale.orders {
            anyhow::bail!(
                "the store listed {} winners for {} orders",
                winners.len(),
                sale.orders
            );
        }
        let count = winners.len();
        let closed = self.update(|k| k.close(sale.generation, winners, epoch));
        if closed {
            tracing::info!(
                generation = sale.generation,
                winners = count,
                "sold out: the gate is closed"
            );
            self.publish(SaleEvent::SoldOut {
                generation: sale.generation,
            })
            .await;
        }
        Ok(())
    }

    async fn recheck(&self) -> anyhow::Result<()> {
        let sale: SaleState = self
            .inner
            .http
            .get_json("/sale")
            .await
            .context("reading /sale")?;
        let reopened = self.update(|k| {
            let was_closed = k.closed.is_some();
            k.heard_of(sale.generation);
            was_closed && k.closed.is_none()
        });
        if reopened {
            tracing::info!(
                generation = sale.generation,
                "a newer sale exists: the gate is open"
            );
        }
        Ok(())
    }

    /// The event link: subscribe, re-read the sale, then apply events until the link drops.
    async fn link(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new();
        let mut start = 0;
        loop {
            match self.link_session(&mut stop, &mut start).await {
                Ok(true) => break,
                Ok(false) => backoff.reset(),
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "no link to the sale events exchange; the gate is open; will retry"
                    );
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
    }

    /// One connection's worth of events. `Ok(true)`: stopped; `Ok(false)`: the link dropped.
    async fn link_session(
        &self,
        stop: &mut watch::Receiver<bool>,
        start: &mut usize,
    ) -> anyhow::Result<bool> {
        let settings = &self.inner.settings;
        let name = format!("{}-events", settings.connection_name);
        let connected = tokio::select! {
            connected = settings.brokers.connect(*start, &name, settings.connect_timeout) => connected?,
            _ = stop.wait_for(|stop| *stop) => return Ok(true),
        };
        *start = settings.brokers.next_after(connected.index);
        let connection = connected.connection;
        let channel = connection
            .create_channel()
            .await
            .context("opening a channel")?;
        let (_, mut events) = topology::subscribe_sale_events(&channel, &settings.exchange)
            .await
            .with_context(|| format!("subscribing to {:?}", settings.exchange))?;
        *self.inner.events.write().unwrap() = Some(channel.clone());
        self.update(Knowledge::link_up);
        // Anything may have happened while unlinked: re-read before trusting the gate.
        self.inner.verify.notify_one();
        tracing::info!(exchange = %settings.exchange, broker = %connected.broker, "sale events link up");

        let stopped = loop {
            let next = tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break true,
                next = events.next() => next,
            };
            match next {
                Some(Ok(delivery)) => self.apply(&delivery.data),
                Some(Err(error)) => {
                    tracing::warn!(%error, "lost the sale events link; the gate is open");
                    break false;
                }
                None => break false,
            }
        };
        *self.inner.events.write().unwrap() = None;
        self.update(Knowledge::link_lost);
        if stopped {
            let limit = Duration::from_secs(2);
            let _ = tokio::time::timeout(limit, connection.close(200, "stopping".into())).await;
        }
        Ok(stopped)
    }

    fn apply(&self, body: &[u8]) {
        let event = match SaleEvent::parse(body) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "ignoring a malformed sale event");
                return;
            }
        };
        tracing::debug!(?event, "sale event");
        match event {
            SaleEvent::Reset { generation } => self.update(|k| k.heard_of(generation)),
            // A hint only: the keeper re-reads the store before closing. An event about an
            // older sale than the newest known is stale and ignored.
            SaleEvent::SoldOut { generation } => {
                let knowledge = self.inner.knowledge.read().unwrap();
                if generation >= knowledge.generation && knowledge.closed.is_none() {
                    self.inner.verify.notify_one();
                }
            }
        }
    }
}

/// One page of `/sale/orders?order_ids=true`.
#[derive(Debug, Deserialize)]
struct OrdersPage {
    generation: u64,
    orders: Vec<Order>,
    next_after: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: u64) -> UserId {
        UserId::new(id).unwrap()
    }

    fn winners(ids: &[u64]) -> HashMap<u64, OrderId> {
        ids.iter().map(|&id| (id, format!("order-{id}"))).collect()
    }

    fn linked() -> Knowledge {
        let mut knowledge = Knowledge::default();
        knowledge.link_up();
        knowledge
    }

    #[test]
    fn a_closed_gate_answers_winners_with_their_order_and_others_sold_out() {
        let mut knowledge = linked();
        assert!(knowledge.answer(user(1)).is_none(), "open: no answer");
        assert!(knowledge.close(3, winners(&[1, 2]), 1));

        let winner = knowledge.answer(user(2)).unwrap();
        assert_eq!(
            winner,
            BuyResponse::already_ordered(user(2), "order-2".into())
        );
        assert_eq!(
            knowledge.answer(user(9)).unwrap(),
            BuyResponse::sold_out(user(9))
        );
    }

    #[test]
    fn a_newer_generation_reopens_and_an_older_one_cannot_close() {
        let mut knowledge = linked();
        assert!(knowledge.close(3, winners(&[1]), 1));
        knowledge.heard_of(4);
        assert!(knowledge.answer(user(1)).is_none(), "reset to 4 reopens");
        assert!(
            !knowledge.close(3, winners(&[1]), 1),
            "3 is stale once 4 is known"
        );
        assert!(knowledge.answer(user(1)).is_none());
        knowledge.heard_of(2);
        assert_eq!(knowledge.generation, 4, "generations never go back");
    }

    #[test]
    fn without_an_event_link_the_gate_stays_open() {
        let mut knowledge = Knowledge::default();
        assert!(!knowledge.close(1, winners(&[1]), 0));
        let mut knowledge = linked();
        assert!(knowledge.close(1, winners(&[1]), 1));
        knowledge.link_lost();
        assert!(knowledge.answer(user(5)).is_none());
        assert!(!knowledge.close(1, winners(&[1]), 1), "not until relinked");
        knowledge.link_up();
        assert!(
            !knowledge.close(1, winners(&[1]), 1),
            "a verification begun before the relink may have missed a reset"
        );
        assert!(knowledge.close(1, winners(&[1]), 2));
    }
}
