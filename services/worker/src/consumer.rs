//! The consume loop: connect, declare, consume, answer; reconnect with backoff when RabbitMQ
//! goes away; drain on shutdown.
//!
//! Invariants:
//! - a delivery is acknowledged exactly once, on its own channel, and only after its reply is
//!   published (acking twice or on another channel gets the channel closed, lapin #327);
//! - an unparseable message is rejected without requeue (dead-lettered), never retried;
//! - at most `prefetch` deliveries are in hand at once (the broker enforces it), and they are
//!   processed concurrently: with prefetch 1 every buy is serialized, which is why the
//!   original experiment never oversold on this route;
//! - a redelivered message (the worker died after writing the order, before the ack) is
//!   simply bought again: the one-order-per-user rule answers `already_ordered`.

use std::sync::Arc;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use order_core::Store;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Duration, timeout};

use crate::config::Config;
use crate::connection::{self, Backoff};
use crate::message::{ErrorReply, Request};
use crate::topology;

/// How long shutdown waits for the deliveries in hand before closing anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on each step of closing (cancel, channel close, connection close).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything a consume session needs, shared with the per-delivery tasks.
pub(crate) struct Consumer {
    pub(crate) config: Config,
    pub(crate) store: Store,
    /// `true` while a consumer is registered with the broker.
    pub(crate) consuming: watch::Sender<bool>,
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

impl Consumer {
    /// Consumes until `stop` turns true, reconnecting whenever the connection is lost.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new();
        loop {
            match self.session(&mut stop).await {
                Ok(SessionEnd::Shutdown) => break,
                Ok(SessionEnd::Lost(reason)) => {
                    // The session had been consuming: start the next one quickly.
                    backoff.reset();
                    tracing::warn!(%reason, "lost the RabbitMQ connection; reconnecting");
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "cannot consume; will retry");
                }
            }
            self.consuming.send_replace(false);
            let delay = backoff.next_delay();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
        self.consuming.send_replace(false);
        tracing::info!("worker stopped");
    }

    async fn session(
        self: &Arc<Self>,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<SessionEnd> {
        let config = &self.config;
        let connection = tokio::select! {
            connection = connection::connect(
                &config.amqp_url, &config.connection_name, config.connect_timeout()) => connection?,
            _ = stop.wait_for(|stop| *stop) => return Ok(SessionEnd::Shutdown),
        };
        let channel = connection
            .create_channel()
            .await
            .context("opening a channel")?;
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .context("setting the prefetch")?;
        topology::declare_request_queue(&channel, &config.queue)
            .await
            .with_context(|| format!("declaring queue {:?}", config.queue))?;
        let tag = format!("{}-{}", config.connection_name, std::process::id());
        let mut deliveries = channel
            .basic_consume(
                config.queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("starting to consume")?;
        self.consuming.send_replace(true);
        tracing::info!(queue = %config.queue, prefetch = config.prefetch, "consuming");

        let mut in_hand = JoinSet::new();
        let end = loop {
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break SessionEnd::Shutdown,
                Some(joined) = in_hand.join_next() => log_join(joined),
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => {
                        let this = Arc::clone(self);
                        let channel = channel.clone();
                        in_hand.spawn(async move { this.handle(&channel, delivery).await });
                    }
                    // An error is always followed by the end of the stream.
                    Some(Err(error)) => break SessionEnd::Lost(error.to_string()),
                    None => break SessionEnd::Lost("the broker cancelled the consumer".into()),
                },
            }
        };
        self.consuming.send_replace(false);

        if let SessionEnd::Shutdown = end {
            // Stop taking deliveries first; prefetched ones not yet in hand are requeued by the
            // broker when the channel closes.
            let cancel = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default());
            if let Ok(Err(error)) = timeout(CLOSE_TIMEOUT, cancel).await {
                tracing::warn!(%error, "cancelling the consumer");
            }
            tracing::info!(in_hand = in_hand.len(), "finishing the deliveries in hand");
        }
        let drained = timeout(DRAIN_TIMEOUT, async {
            while let Some(joined) = in_hand.join_next().await {
                log_join(joined);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = in_hand.len(),
                "deliveries still in hand after the drain timeout"
            );
        }
        if let SessionEnd::Shutdown = end {
            close(&channel, &connection).await;
        }
        Ok(end)
    }

    /// Answers one delivery: parse, buy, reply, then ack (or reject if it is not a request).
    #[tracing::instrument(skip_all, fields(
        user_id,
        delivery_tag = delivery.delivery_tag,
        redelivered = delivery.redelivered,
    ))]
    async fn handle(&self, channel: &Channel, delivery: Delivery) {
        let request = match Request::parse(&delivery.properties, &delivery.data) {
            Ok(request) => request,
            Err(reason) => {
                tracing::warn!(%reason, "rejecting a malformed message (dead-lettered)");
                if let Err(error) = delivery.reject(BasicRejectOptions { requeue: false }).await {
                    tracing::warn!(%error, "rejecting the message");
                }
                return;
            }
        };
        tracing::Span::current().record("user_id", request.user.get());

        let body = match order_core::buy(&self.store, request.user).await {
            Ok(response) => {
                tracing::debug!(outcome = ?response.outcome, "bought");
                serde_json::to_vec(&response)
            }
            Err(error) => {
                // Answer rather than requeue: a requeued request against a broken store would
                // spin, and the front tier turns this reply into a 502 at once.
                tracing::error!(%error, "the store failed; replying with an error");
                serde_json::to_vec(&ErrorReply {
                    error: "store unavailable".into(),
                })
            }
        }
        .expect("serializing a reply cannot fail");

        if let Err(error) = publish_reply(channel, &request, &body).await {
            // Not acked: the broker redelivers it (to this worker after a reconnect, or to
            // another), and the one-order-per-user rule makes the retry harmless.
            tracing::warn!(%error, "publishing the reply failed; requeueing the request");
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            if let Err(error) = delivery.nack(requeue).await {
                tracing::debug!(%error, "requeueing the request");
            }
            return;
        }
        if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
            tracing::warn!(%error, "acknowledging the request");
        }
    }
}

async fn publish_reply(channel: &Channel, request: &Request, body: &[u8]) -> lapin::Result<()> {
    let properties = BasicProperties::default()
        .with_correlation_id(request.correlation_id.as_str().into())
        .with_content_type("application/json".into());
    channel
        .basic_publish(
            "".into(),
            request.reply_to.as_str().into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await?
        .await?;
    Ok(())
}

async fn close(channel: &Channel, connection: &Connection) {
    if let Ok(Err(error)) =
        timeout(CLOSE_TIMEOUT, channel.close(200, "worker stopping".into())).await
    {
        tracing::debug!(%error, "closing the channel");
    }
    if let Ok(Err(error)) = timeout(
        CLOSE_TIMEOUT,
        connection.close(200, "worker stopping".into()),
    )
    .await
    {
        tracing::debug!(%error, "closing the connection");
    }
}

fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        tracing::error!(%error, "a delivery task failed");
    }
}
