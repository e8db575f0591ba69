//! The MQ route: buy requests over the RabbitMQ RPC queue, on ONE connection per process.
//!
//! A connection task owns one connection, one channel and one exclusive, server-named reply
//! queue (consumed no-ack), and keeps them up: it reconnects ([`Link::run`]) when the broker
//! goes away and re-declares everything. Requests publish on a shared channel and wait on a
//! oneshot registered under their correlation id: opening a channel or a reply queue per
//! request would cost broker round trips on every buy.
//!
//! Invariants:
//! - every entry of the pending map belongs to a request still waiting: the entry is removed
//!   when its reply arrives, when the request times out, and when the waiting future is
//!   dropped (client gone), through [`PendingEntry`]'s `Drop`;
//! - a reply with no waiting request (it timed out) is dropped and logged;
//! - while there is no usable link, calls fail at once with 503 instead of waiting;
//! - when the link is lost, waiting requests fail at once (their reply queue is gone with the
//!   connection, so no reply can reach them);
//! - a request message carries a TTL equal to the timeout, so a worker never serves a request
//!   whose client has already been answered 504.
//!
//! Publisher confirms: with a quorum queue or a bounded queue
//! ([`RequestQueue::needs_confirms`]) the channel is in confirm mode and a request counts as
//! in flight only once the broker has confirmed it (a quorum queue confirms once a majority
//! of its nodes holds the message). A nack (the queue is full: `reject-publish`; or the
//! cluster could not take it), a return (`mandatory`: no queue to route to) or no confirm
//! within `--confirm-timeout-ms` answers 503 at once, and the request leaves the pending map.
//! Without confirms (the original experiment) a publish is fire-and-forget, the fastest path.
//!
//! Requests publish on a channel of their own, apart from the reply consumer's, so that it
//! can be replaced alone: RabbitMQ 3.10 can leave a channel that first published to a quorum
//! queue while the queue was electing a new leader refusing every later publish to it,
//! although the queue is healthy again (seen when the leader's node is killed). So after a
//! nack or a missing confirm from a quorum queue the publishing channel is reopened (at most
//! once per [`REOPEN_INTERVAL`]); requests in flight keep the old one until they finish.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use order_core::shutdown::Shutdown;
use order_core::{BuyResponse, UserId};
use queue_contract::connection::Connected;
use queue_contract::message::{BuyRequest, ErrorReply};
use queue_contract::reconnect::{Link, SessionEnd};
use queue_contract::topology::{self, QueueType, RequestQueue};
use tokio::sync::{oneshot, watch};

use crate::error::ApiError;

/// Least time between two reopenings of the publishing channel.
const REOPEN_INTERVAL: Duration = Duration::from_millis(250);

/// Why an RPC did not produce a buy response.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("the message broker is not available")]
    Unavailable,
    #[error("publishing the request failed")]
    Publish(#[source] lapin::Error),
    #[error("the request queue is full")]
    QueueFull,
    #[error("the broker refused the request")]
    Refused,
    #[error("the request queue does not exist")]
    Unroutable,
    #[error("the broker did not confirm the request")]
    NotConfirmed(Duration),
    #[error("the broker connection was lost before the reply came")]
    LinkLost,
    #[error("no reply from a worker within {0:?}")]
    Timeout(Duration),
    #[error("the worker could not serve the request: {0}")]
    Worker(String),
    #[error("the worker's reply is not a buy response")]
    BadReply,
}

impl RpcError {
    /// The `reason` label when this error is a refusal at once (a 503 without waiting).
    pub fn rejection_reason(&self) -> Option<&'static str> {
        match self {
            Self::Unavailable => Some("no_link"),
            Self::Publish(_) => Some("publish_failed"),
            Self::QueueFull => Some("queue_full"),
            Self::Refused => Some("refused"),
            Self::Unroutable => Some("unroutable"),
            Self::NotConfirmed(_) => Some("not_confirmed"),
            _ => None,
        }
    }
}

impl From<RpcError> for ApiError {
    fn from(error: RpcError) -> Self {
        let reason = error.to_string();
        match error {
            RpcError::Unavailable | RpcError::Publish(_) | RpcError::Unroutable => {
                ApiError::Unavailable(reason)
            }
            // The queue (or the cluster behind it) cannot take more right now: worth
            // another try in a moment.
            RpcError::QueueFull | RpcError::Refused | RpcError::NotConfirmed(_) => {
                ApiError::Refused(reason)
            }
            RpcError::Timeout(_) => ApiError::Timeout(reason),
            RpcError::LinkLost | RpcError::Worker(_) | RpcError::BadReply => {
                ApiError::UpstreamFailed(reason)
            }
        }
    }
}

/// Settings of the RPC client, taken from the front tier's configuration.
#[derive(Clone)]
pub struct RpcSettings {
    /// The brokers and the connection's name.
    pub link: Link,
    pub queue: RequestQueue,
    pub timeout: Duration,
    /// With confirms: longest wait for the broker's confirm of a request before answering
    /// 503 (capped at `timeout`).
    pub confirm_timeout: Duration,
}

/// What a reply delivers to its waiting request.
type Reply = Result<Vec<u8>, RpcError>;

/// The channel requests publish on and the queue replies come back to.
#[derive(Clone)]
struct Publishing {
    channel: Channel,
    reply_to: ShortString,
    /// The channel is in confirm mode.
    confirms: bool,
}

struct Inner {
    settings: RpcSettings,
    link: RwLock<Option<Publishing>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    connected: watch::Sender<bool>,
    /// Asks the connection task for a fresh publishing channel.
    reopen: tokio::sync::Notify,
}

/// A cheap handle on the process's RPC client.
#[derive(Clone)]
pub struct RpcClient {
    inner: Arc<Inner>,
}

impl RpcClient {
    /// A client with no connection yet; [`RpcClient::run`] connects and keeps it connected.
    pub fn new(settings: RpcSettings) -> Self {
        let (connected, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                settings,
                link: RwLock::new(None),
                pending: Mutex::new(HashMap::new()),
                connected,
                reopen: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Requests waiting for a reply right now.
    pub fn pending(&self) -> usize {
        self.inner.pending.lock().unwrap().len()
    }

    /// Turns `true` while requests can be published and replies received.
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.inner.connected.subscribe()
    }

    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

    /// Buys through a worker, within the configured timeout.
    pub async fn buy(&self, user: UserId) -> Result<BuyResponse, RpcError> {
        let link = self
            .inner
            .link
            .read()
            .unwrap()
            .clone()
            .ok_or(RpcError::Unavailable)?;
        let timeout = self.inner.settings.timeout;
        let correlation_id = uuid::Uuid::new_v4().simple().to_string();
        let (entry, reply) = PendingEntry::register(&self.inner, correlation_id.clone());
        let body = serde_json::to_vec(&BuyRequest {
            user_id: user.get(),
        })
        .expect("a buy request serializes");
        let properties = BasicProperties::default()
            .with_reply_to(link.reply_to.clone())
            .with_correlation_id(correlation_id.into())
            .with_content_type("application/json".into())
            .with_expiration(timeout.as_millis().to_string().into());

        let exchange = async {
            let confirm = link
                .channel
                .basic_publish(
                    "".into(),
                    self.inner.settings.queue.name.as_str().into(),
                    // Mandatory only with confirms: the return then comes with the confirm.
                    // (Without confirms lapin would keep returned messages nobody reads.)
                    BasicPublishOptions {
                        mandatory: link.confirms,
                        ..Default::default()
                    },
                    &body,
                    properties,
                )
                .await
                .map_err(RpcError::Publish)?;
            if link.confirms {
                self.confirmed(confirm).await?;
            } else {
                // Not requested: resolves at once.
                confirm.await.map_err(RpcError::Publish)?;
            }
            // The sender lives in the map until a reply, the link's loss, or our entry's drop.
            reply.await.unwrap_or(Err(RpcError::LinkLost))
        };
        let outcome = tokio::time::timeout(timeout, exchange).await;
        drop(entry);
        let body = outcome.map_err(|_| RpcError::Timeout(timeout))??;
        parse_reply(&body)
    }

    /// Waits (bounded) for the broker's confirm of one publish.
    async fn confirmed(&self, confirm: lapin::PublisherConfirm) -> Result<(), RpcError> {
        let settings = &self.inner.settings;
        let bound = settings.confirm_timeout.min(settings.timeout);
        // Awaited in a task of its own, which outlives a timeout or a client that went away:
        // lapin keeps a confirm dropped unresolved until the channel closes, so dropping one
        // per timed-out request would pile them up.
        let confirmation = tokio::spawn(confirm);
        let outcome = match tokio::time::timeout(bound, confirmation).await {
            Err(_) => Err(RpcError::NotConfirmed(bound)),
            // The task cannot panic; treat a failure to join as a lost link.
            Ok(Err(_)) => Err(RpcError::LinkLost),
            Ok(Ok(Err(error))) => Err(RpcError::Publish(error)),
            Ok(Ok(Ok(confirmation))) => check_confirmation(confirmation, &settings.queue),
        };
        let suspect = matches!(
            outcome,
            Err(RpcError::QueueFull | RpcError::Refused | RpcError::NotConfirmed(_))
        );
        if suspect && settings.queue.queue_type == QueueType::Quorum {
            self.inner.reopen.notify_one();
        }
        outcome
    }

    /// Keeps the link up until `shutdown` is cancelled, then closes the connection.
    pub async fn run(self, shutdown: Shutdown) {
        let link = &self.inner.settings.link;
        link.run(&shutdown, |connected| self.session(connected, &shutdown))
            .await;
    }

    /// One connection's worth of RPC: the reply queue and the publishing channel, until the
    /// connection is lost or shutdown is asked for. Requests still waiting then fail at once.
    async fn session(
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
        let confirms = settings.queue.needs_confirms();
        let publisher = open_publisher(&connection, confirms).await?;
        topology::declare_request_queue(&channel, &settings.queue)
            .await
            .with_context(|| format!("declaring queue {:?}", settings.queue.name))?;
        let (reply_queue, mut replies) = topology::declare_reply_queue(&channel)
            .await
            .context("declaring and consuming the reply queue")?;

        // The session keeps no handle on a publishing channel: an abandoned one closes once
        // the requests still using it are done.
        let link = |channel| Publishing {
            channel,
            reply_to: reply_queue.name().clone(),
            confirms,
        };
        *self.inner.link.write().unwrap() = Some(link(publisher));
        self.inner.connected.send_replace(true);
        tracing::info!(
            broker = %connected.broker,
            queue = %settings.queue.name,
            reply_queue = %reply_queue.name(),
            confirms,
            "RPC link up"
        );

        // A reopening asked for is done at once, or when REOPEN_INTERVAL has passed since
        // the last one.
        let mut reopened = tokio::time::Instant::now();
        let mut wanted = false;
        let end = loop {
            let reopen = tokio::select! {
                () = shutdown.cancelled() => break SessionEnd::Stopped,
                () = self.inner.reopen.notified(), if !wanted => {
                    wanted = true;
                    false
                }
                () = tokio::time::sleep_until(reopened + REOPEN_INTERVAL), if wanted => true,
                next = replies.next() => match next {
                    Some(Ok(delivery)) => {
                        self.dispatch(delivery);
                        false
                    }
                    // An error is always followed by the end of the stream.
                    Some(Err(error)) => break SessionEnd::Lost(error.to_string()),
                    None => break SessionEnd::Lost("the reply consumer was cancelled".into()),
                },
            };
            if reopen {
                wanted = false;
                reopened = tokio::time::Instant::now();
                match open_publisher(&connection, confirms).await {
                    Ok(publisher) => {
                        tracing::warn!(
                            "the request queue refused or did not confirm a publish; \
                             reopened the publishing channel"
                        );
                        *self.inner.link.write().unwrap() = Some(link(publisher));
                    }
                    Err(error) => break SessionEnd::Lost(format!("{error:#}")),
                }
            }
        };

        *self.inner.link.write().unwrap() = None;
        self.inner.connected.send_replace(false);
        self.fail_pending();
        if let SessionEnd::Stopped = end {
            close(&channel, &connection).await;
        }
        Ok(end)
    }

    fn dispatch(&self, delivery: lapin::message::Delivery) {
        let Some(correlation_id) = delivery.properties.correlation_id().as_ref() else {
            tracing::warn!("dropping a reply without a correlation id");
            return;
        };
        let waiting = self
            .inner
            .pending
            .lock()
            .unwrap()
            .remove(correlation_id.as_str());
        match waiting {
            Some(waiting) => {
                // The request may have just given up; then the reply is dropped here.
                let _ = waiting.send(Ok(delivery.data));
            }
            None => tracing::warn!(
                correlation_id = %correlation_id,
                "dropping a late reply: its request has already been answered"
            ),
        }
    }

    /// The reply queue died with the link: nobody waiting can get a reply any more.
    fn fail_pending(&self) {
        let waiting: Vec<_> = self.inner.pending.lock().unwrap().drain().collect();
        if !waiting.is_empty() {
            tracing::warn!(
                requests = waiting.len(),
                "failing requests waiting on a lost link"
            );
        }
        for (_, sender) in waiting {
            let _ = sender.send(Err(RpcError::LinkLost));
        }
    }
}

/// A request's slot in the pending map, removed when this guard drops, whatever happened.
struct PendingEntry<'a> {
    inner: &'a Inner,
    correlation_id: String,
}

impl<'a> PendingEntry<'a> {
    fn register(inner: &'a Inner, correlation_id: String) -> (Self, oneshot::Receiver<Reply>) {
        let (sender, receiver) = oneshot::channel();
        inner
            .pending
            .lock()
            .unwrap()
            .insert(correlation_id.clone(), sender);
        (
            Self {
                inner,
                correlation_id,
            },
            receiver,
        )
    }
}

impl Drop for PendingEntry<'_> {
    fn drop(&mut self) {
        self.inner
            .pending
            .lock()
            .unwrap()
            .remove(&self.correlation_id);
    }
}

/// What the broker's answer to a confirmed publish means for the request.
fn check_confirmation(confirmation: Confirmation, queue: &RequestQueue) -> Result<(), RpcError> {
    match confirmation {
        // Returned (mandatory, nothing to route to), then acked: not in any queue.
        Confirmation::Ack(Some(_)) => Err(RpcError::Unroutable),
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        // With `x-max-length` and `reject-publish`, a full queue is what nacks; otherwise
        // the queue could not take the message (e.g. a quorum queue without its majority).
        Confirmation::Nack(Some(_)) => Err(RpcError::Unroutable),
        Confirmation::Nack(None) if queue.max_length.is_some() => Err(RpcError::QueueFull),
        Confirmation::Nack(None) => Err(RpcError::Refused),
    }
}

fn parse_reply(body: &[u8]) -> Result<BuyResponse, RpcError> {
    if let Ok(response) = serde_json::from_slice::<BuyResponse>(body) {
        return Ok(response);
    }
    match serde_json::from_slice::<ErrorReply>(body) {
        Ok(ErrorReply { error }) => Err(RpcError::Worker(error)),
        Err(_) => {
            tracing::warn!(body = %String::from_utf8_lossy(body), "unexpected reply body");
            Err(RpcError::BadReply)
        }
    }
}

/// A channel for publishing requests, in confirm mode if `confirms`.
async fn open_publisher(connection: &Connection, confirms: bool) -> anyhow::Result<Channel> {
    let channel = connection
        .create_channel()
        .await
        .context("opening the publishing channel")?;
    if confirms {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enabling publisher confirms")?;
    }
    Ok(channel)
}

async fn close(channel: &Channel, connection: &Connection) {
    let limit = Duration::from_secs(2);
    let _ = tokio::time::timeout(limit, channel.close(200, "front tier stopping".into())).await;
    let _ = tokio::time::timeout(limit, connection.close(200, "front tier stopping".into())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> RpcClient {
        RpcClient::new(RpcSettings {
            link: Link {
                brokers: "amqp://127.0.0.1:1/%2f".parse().unwrap(),
                connection_name: "test".into(),
                connect_timeout: Duration::from_millis(100),
                reconnects: None,
            },
            queue: RequestQueue::classic("q"),
            timeout: Duration::from_millis(100),
            confirm_timeout: Duration::from_millis(100),
        })
    }

    #[tokio::test]
    async fn without_a_link_a_buy_fails_at_once_and_leaves_nothing_pending() {
        let rpc = client();
        let started = std::time::Instant::now();

        let outcome = rpc.buy(UserId::new(1).unwrap()).await;

        assert!(matches!(outcome, Err(RpcError::Unavailable)), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_millis(50));
        assert_eq!(rpc.pending(), 0);
    }

    #[test]
    fn a_pending_entry_is_removed_when_dropped() {
        let rpc = client();
        let (entry, _reply) = PendingEntry::register(&rpc.inner, "c1".into());
        assert_eq!(rpc.pending(), 1);
        drop(entry);
        assert_eq!(rpc.pending(), 0);
    }

    #[test]
    fn a_nack_is_a_full_queue_when_the_queue_is_bounded_and_a_refusal_otherwise() {
        let bounded = RequestQueue {
            max_length: Some(5),
            ..RequestQueue::classic("q")
        };
        let quorum = RequestQueue {
            queue_type: queue_contract::topology::QueueType::Quorum,
            ..RequestQueue::classic("q")
        };

        assert!(check_confirmation(Confirmation::Ack(None), &bounded).is_ok());
        assert!(check_confirmation(Confirmation::NotRequested, &quorum).is_ok());
        assert!(matches!(
            check_confirmation(Confirmation::Nack(None), &bounded),
            Err(RpcError::QueueFull)
        ));
        assert!(matches!(
            check_confirmation(Confirmation::Nack(None), &quorum),
            Err(RpcError::Refused)
        ));
    }

    #[test]
    fn every_refusal_of_a_publish_is_counted_by_its_reason() {
        let reasons = [
            RpcError::QueueFull,
            RpcError::Refused,
            RpcError::Unroutable,
            RpcError::NotConfirmed(Duration::from_secs(2)),
        ]
        .map(|error| error.rejection_reason());
        assert_eq!(
            reasons,
            [
                Some("queue_full"),
                Some("refused"),
                Some("unroutable"),
                Some("not_confirmed")
            ]
        );
    }

    #[test]
    fn every_refusal_of_a_publish_is_a_503_that_says_why() {
        let cases = [
            (RpcError::QueueFull, "the request queue is full"),
            (RpcError::Refused, "the broker refused the request"),
            (RpcError::Unroutable, "the request queue does not exist"),
            (
                RpcError::NotConfirmed(Duration::from_secs(2)),
                "the broker did not confirm the request",
            ),
        ];
        for (error, reason) in cases {
            let error = ApiError::from(error);
            assert_eq!(error.status(), 503);
            assert_eq!(error.to_string(), reason);
        }
    }

    #[test]
    fn replies_are_buy_responses_or_worker_errors() {
        let ordered = parse_reply(br#"{"outcome":"ordered","order_id":"o","user_id":3}"#);
        assert_eq!(ordered.unwrap().user_id, 3);
        let failed = parse_reply(br#"{"error":"store unavailable"}"#);
        assert!(matches!(failed, Err(RpcError::Worker(e)) if e == "store unavailable"));
        assert!(matches!(parse_reply(b"junk"), Err(RpcError::BadReply)));
    }
}
