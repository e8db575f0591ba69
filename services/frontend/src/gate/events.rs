//! The gate's link to the sale events exchange: one exclusive queue per front tier, bound to
//! the fanout exchange, so every front tier hears every event once. While the link is down
//! the gate is open (it could miss a reset); each new link makes the keeper re-read the sale
//! before the gate trusts itself again. Events are hints: `reset` reopens at once, `sold_out`
//! only asks the keeper to verify with the store.

use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use order_core::shutdown::Shutdown;
use queue_contract::connection::Connected;
use queue_contract::events::SaleEvent;
use queue_contract::reconnect::SessionEnd;
use queue_contract::topology;

use super::Gate;
use super::rules::Knowledge;

impl Gate {
    /// Publishes `event` to every front tier, if the link is up (else it is logged and lost:
    /// the others' rechecks cover a lost event).
    pub(super) async fn publish(&self, event: SaleEvent) {
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

    /// The event link, until `shutdown` is cancelled: reconnects with failover; without a
    /// link the gate stays open.
    pub(super) async fn link(self, shutdown: Shutdown) {
        let link = &self.inner.settings.link;
        link.run(&shutdown, |connected| {
            self.link_session(connected, &shutdown)
        })
        .await;
    }

    /// One connection's worth of events: subscribe, have the sale re-read, then apply events
    /// until the link drops or shutdown is asked for.
    async fn link_session(
        &self,
        connected: Connected,
        shutdown: &Shutdown,
    ) -> anyhow::Result<SessionEnd> {
        let settings = &self.inner.settings;
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

        let end = loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => break SessionEnd::Stopped,
                next = events.next() => next,
            };
            match next {
                Some(Ok(delivery)) => self.apply(&delivery.data),
                // An error is always followed by the end of the stream.
                Some(Err(error)) => break SessionEnd::Lost(error.to_string()),
                None => break SessionEnd::Lost("the broker cancelled the events consumer".into()),
            }
        };
        *self.inner.events.write().unwrap() = None;
        self.update(Knowledge::link_lost);
        if end == SessionEnd::Stopped {
            let limit = Duration::from_secs(2);
            let _ = tokio::time::timeout(limit, connection.close(200, "stopping".into())).await;
        } else {
            tracing::warn!("no link to the sale events exchange: the gate is open");
        }
        Ok(end)
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
