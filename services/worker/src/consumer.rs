//! The consume loop: connect (to the first broker of the list that answers), declare,
//! consume, answer; reconnect with backoff, failing over to the next broker, when the
//! connection goes away; drain on shutdown.
//!
//! Two ways to answer, chosen by `--batch`:
//! - **unbatched** (`--batch 1`, the original): each delivery is answered by its own task
//!   through the strategy's own store calls; at most `prefetch` are in hand at once (the
//!   broker enforces it), so with prefetch 1 every buy is serialized, which is why the
//!   original experiment never oversold on this route;
//! - **batched** (`--batch N`): the deliveries already waiting, up to N, are taken at once
//!   (never waiting for more: a lone buyer is served at once), decided in arrival order in
//!   ONE store transaction, replied to, then acknowledged with one `multiple` ack. Batches
//!   never overlap within a worker, so one worker never oversells, whatever the strategy.
//!   Several workers: their batches are separate transactions. On SQLite they are still
//!   serialized by the database's single write lock, on PostgreSQL by the sale row's lock
//!   each batch takes first; on MongoDB (snapshot isolation)
//!   `count-insert` batches of two workers can both count below the stock and oversell,
//!   while `conditional` batches conflict on the sale document and stay correct.
//!
//! Invariants:
//! - a delivery is settled exactly once, on its own channel, and acknowledged only after its
//!   reply is published (acking twice or on another channel gets the channel closed,
//!   lapin #327);
//! - an unparseable message is rejected without requeue (dead-lettered), never retried; in a
//!   batch it is rejected alone and the rest of the batch is served;
//! - a redelivered message (the worker died after writing the order, before the ack) is
//!   simply bought again: the one-order-per-user rule answers `already_ordered` with the
//!   order first written, so nothing is lost and nothing doubles.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use order_core::{BuyResponse, Store};
use queue_contract::connection::Backoff;
use queue_contract::message::{ErrorReply, Request};
use queue_contract::topology;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Duration, timeout};

use crate::config::Config;
use crate::metrics::Metrics;

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
    pub(crate) metrics: Arc<Metrics>,
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

impl Consumer {
    fn set_consuming(&self, consuming: bool) {
        self.consuming.send_replace(consuming);
        self.metrics.consuming.set(i64::from(consuming));
    }

    /// Consumes until `stop` turns true, reconnecting whenever the connection is lost.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new();
        // Which broker of the list to try first: after a loss, the one after the lost one.
        let mut start = 0;
        let mut connected_before = false;
        loop {
            match self
                .session(&mut stop, &mut start, &mut connected_before)
                .await
            {
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
            self.set_consuming(false);
            let delay = backoff.next_delay();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
        self.set_consuming(false);
        tracing::info!("worker stopped");
    }

    async fn session(
        self: &Arc<Self>,
        stop: &mut watch::Receiver<bool>,
        start: &mut usize,
        connected_before: &mut bool,
    ) -> anyhow::Result<SessionEnd> {
        let config = &self.config;
        let brokers = &config.amqp_url;
        let connected = tokio::select! {
            connected = brokers.connect(*start, &config.connection_name, config.connect_timeout()) => connected?,
            _ = stop.wait_for(|stop| *stop) => return Ok(SessionEnd::Shutdown),
        };
        // Whatever ends this session, the next one starts with another broker.
        *start = brokers.next_after(connected.index);
        if std::mem::replace(connected_before, true) {
            self.metrics.reconnects.inc();
        }
        let connection = connected.connection;
        let channel = connection
            .create_channel()
            .await
            .context("opening a channel")?;
        let prefetch = config.effective_prefetch();
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .context("setting the prefetch")?;
        let queue = config.request_queue();
        topology::declare_request_queue(&channel, &queue)
            .await
            .with_context(|| format!("declaring queue {:?}", queue.name))?;
        let tag = format!("{}-{}", config.connection_name, std::process::id());
        let mut deliveries = channel
            .basic_consume(
                queue.name.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("starting to consume")?;
        self.set_consuming(true);
        tracing::info!(
            broker = %connected.broker,
            queue = %queue.name,
            queue_type = queue.queue_type.as_str(),
            batch = config.batch,
            prefetch,
            "consuming"
        );

        // Its own channel: a failed passive declare closes the channel it is made on.
        let depth_channel = connection
            .create_channel()
            .await
            .context("opening a channel")?;
        let depth = tokio::spawn(poll_queue_depth(
            depth_channel,
            queue.name.clone(),
            Arc::clone(&self.metrics),
        ));
        let batch_size = usize::from(config.batch);
        let mut in_hand = JoinSet::new();
        let end = loop {
            let next = tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break SessionEnd::Shutdown,
                Some(joined) = in_hand.join_next() => {
                    log_join(joined);
                    continue;
                }
                next = deliveries.next() => next,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                // An error is always followed by the end of the stream.
                Some(Err(error)) => break SessionEnd::Lost(error.to_string()),
                None => break SessionEnd::Lost("the broker cancelled the consumer".into()),
            };
            if batch_size == 1 {
                let this = Arc::clone(self);
                let channel = channel.clone();
                in_hand.spawn(async move { this.handle(&channel, delivery).await });
                continue;
            }
            let mut batch = vec![delivery];
            // Only what has already arrived: a batch never waits to fill up.
            let mut lost = None;
            while batch.len() < batch_size {
                match deliveries.next().now_or_never() {
                    Some(Some(Ok(delivery))) => batch.push(delivery),
                    Some(Some(Err(error))) => {
                        lost = Some(error.to_string());
                        break;
                    }
                    Some(None) => {
                        lost = Some("the broker cancelled the consumer".into());
                        break;
                    }
                    None => break,
                }
            }
            // Answered here, not in a task: batches never overlap.
            self.handle_batch(&channel, batch).await;
            if let Some(reason) = lost {
                break SessionEnd::Lost(reason);
            }
        };
        self.set_consuming(false);

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
        depth.abort();
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
        let started = Instant::now();
        let Some(request) = self.parse_or_reject(&delivery).await else {
            return;
        };
        tracing::Span::current().record("user_id", request.user.get());
        let body = self.reply_body(order_core::buy(&self.store, request.user).await);
        if let Err(error) = publish_reply(channel, &request, &body).await {
            // Not acked: the broker redelivers it (to this worker after a reconnect, or to
            // another), and the one-order-per-user rule makes the retry harmless.
            tracing::warn!(%error, "publishing the reply failed; requeueing the request");
            requeue(&delivery).await;
            return;
        }
        if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
            tracing::warn!(%error, "acknowledging the request");
        }
        self.metrics.record_batch(1, started.elapsed());
    }

    /// Answers a batch: malformed messages are rejected one by one, the requests are decided
    /// in one store transaction, every reply is published, then one `multiple` ack settles
    /// the whole batch.
    #[tracing::instrument(skip_all, fields(size = deliveries.len()))]
    async fn handle_batch(&self, channel: &Channel, deliveries: Vec<Delivery>) {
        let started = Instant::now();
        let mut requests = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            if let Some(request) = self.parse_or_reject(&delivery).await {
                requests.push((delivery, request));
            }
        }
        let Some((last, _)) = requests.last() else {
            return;
        };
        let last_tag = last.delivery_tag;
        let users: Vec<_> = requests.iter().map(|(_, request)| request.user).collect();
        let bodies: Vec<Vec<u8>> = match order_core::buy_batch(&self.store, &users).await {
            Ok(answers) => answers
                .into_iter()
                .map(|a| self.reply_body(Ok(a)))
                .collect(),
            Err(error) => {
                let body = self.reply_body(Err(error));
                vec![body; users.len()]
            }
        };

        for ((delivery, request), body) in requests.iter().zip(&bodies) {
            if let Err(error) = publish_reply(channel, request, body).await {
                // The channel is failing: settle nothing more by `multiple`; requeue every
                // request of the batch. The decisions are committed, so each redelivery is
                // answered `already_ordered` (or `sold_out`) as decided here.
                tracing::warn!(%error, tag = delivery.delivery_tag, "publishing a reply failed; requeueing the batch");
                for (delivery, _) in &requests {
                    requeue(delivery).await;
                }
                return;
            }
        }
        let (last, _) = requests.last().expect("checked above");
        let ack = last.ack(BasicAckOptions { multiple: true }).await;
        if let Err(error) = ack {
            tracing::warn!(%error, last_tag, "acknowledging the batch");
        }
        self.metrics.record_batch(users.len(), started.elapsed());
    }

    /// The request in `delivery`, or `None` once the delivery is rejected (dead-lettered)
    /// because it is not one.
    async fn parse_or_reject(&self, delivery: &Delivery) -> Option<Request> {
        match Request::parse(&delivery.properties, &delivery.data) {
            Ok(request) => Some(request),
            Err(reason) => {
                self.metrics.malformed.inc();
                tracing::warn!(%reason, tag = delivery.delivery_tag, "rejecting a malformed message (dead-lettered)");
                if let Err(error) = delivery.reject(BasicRejectOptions { requeue: false }).await {
                    tracing::warn!(%error, "rejecting the message");
                }
                None
            }
        }
    }

    /// The reply to a buy: its answer, or `{"error": ...}` when the store failed. Answered
    /// rather than requeued: a requeued request against a broken store would spin, and the
    /// front tier turns this reply into a 5xx at once.
    fn reply_body(&self, answer: Result<BuyResponse, order_core::StoreError>) -> Vec<u8> {
        match answer {
            Ok(response) => {
                tracing::debug!(outcome = ?response.outcome, "bought");
                self.metrics.record_answer(response.outcome);
                serde_json::to_vec(&response)
            }
            Err(error) => {
                tracing::error!(%error, "the store failed; replying with an error");
                self.metrics.store_errors.inc();
                serde_json::to_vec(&ErrorReply {
                    error: error.reason().into(),
                })
            }
        }
        .expect("serializing a reply cannot fail")
    }
}

/// Keeps `flashsale_queue_messages_ready` current: a passive declare every second.
async fn poll_queue_depth(channel: Channel, queue: String, metrics: Arc<Metrics>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        match channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
        {
            Ok(declared) => metrics.queue_ready.set(i64::from(declared.message_count())),
            // The channel is going away with its session, which aborts this task.
            Err(_) => return,
        }
    }
}

async fn requeue(delivery: &Delivery) {
    let requeue = BasicNackOptions {
        requeue: true,
        ..Default::default()
    };
    if let Err(error) = delivery.nack(requeue).await {
        tracing::debug!(%error, "requeueing the request");
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
