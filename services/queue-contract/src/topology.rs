//! The queues and exchanges both sides of the RPC declare. One definition, used by the worker
//! and the front tier alike: RabbitMQ refuses a second declaration of a queue with different
//! arguments (`PRECONDITION_FAILED`), so the arguments must never drift apart.
//!
//! `<queue>` is durable and dead-letters into the direct exchange `<queue>.dlx`, which routes
//! to the durable queue `<queue>.dead` (bound with the request queue's name, the routing key a
//! dead-lettered message keeps). Messages land there when the worker rejects them
//! (unparseable) or when they expire unanswered (the front tier sets a per-message TTL equal
//! to its timeout, so nobody is served after their client has given up).
//!
//! - `classic` (the default, the original experiment): one node holds the queue.
//! - `quorum`: the queue and its dead-letter queue are Raft-replicated over the cluster's
//!   nodes, so a buy accepted by a majority survives the loss of a node. A queue's type is
//!   fixed when it is first declared: switching type needs the old queue deleted.
//! - `max_length`: the request queue holds at most that many requests and refuses more
//!   (`x-overflow: reject-publish`): a publisher in confirm mode gets a nack at once, which
//!   the front tier answers 503. Without it the queue grows without bound under overload.
//!
//! Sale events travel on the fanout exchange `sale_events` (name configurable): each front
//! tier reads them through its own exclusive, server-named queue.

use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Consumer, ExchangeKind, Queue};

/// The dead-letter queue keeps at most this many messages (oldest dropped first), so a long
/// load test that times out does not fill the broker's disk.
pub const DEAD_LETTER_MAX_LENGTH: i64 = 100_000;

/// The sale events exchange of the design.
pub const DEFAULT_SALE_EVENTS_EXCHANGE: &str = "sale_events";

/// How the request queue is replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum QueueType {
    /// One node holds the queue (the original experiment).
    #[default]
    Classic,
    /// Raft-replicated over the cluster (survives the loss of a minority of nodes).
    Quorum,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
        }
    }
}

/// The request queue as both sides declare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestQueue {
    pub name: String,
    pub queue_type: QueueType,
    /// Most requests waiting at once; further publishes are refused. `None`: unbounded.
    pub max_length: Option<u32>,
}

impl RequestQueue {
    /// A classic, unbounded queue: the original experiment's.
    pub fn classic(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            queue_type: QueueType::Classic,
            max_length: None,
        }
    }

    /// Whether publishers must use confirms: a quorum queue only has a request once a
    /// majority has it, and a full queue's refusal only reaches a publisher as a nack.
    pub fn needs_confirms(&self) -> bool {
        self.queue_type == QueueType::Quorum || self.max_length.is_some()
    }
}

pub fn dead_letter_exchange(queue: &str) -> String {
    format!("{queue}.dlx")
}

pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

fn durable_args(queue_type: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    if queue_type == QueueType::Quorum {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    args
}

/// Declares the request queue and its dead-letter exchange and queue (idempotent).
/// Returns the request queue as declared (its message and consumer counts).
pub async fn declare_request_queue(
    channel: &Channel,
    queue: &RequestQueue,
) -> lapin::Result<Queue> {
    let name = queue.name.as_str();
    let dlx = dead_letter_exchange(name);
    let dead = dead_letter_queue(name);

    channel
        .exchange_declare(
            dlx.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;

    let mut dead_args = durable_args(queue.queue_type);
    dead_args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(DEAD_LETTER_MAX_LENGTH),
    );
    channel
        .queue_declare(
            dead.as_str().into(),
            QueueDeclareOptions::durable(),
            dead_args,
        )
        .await?;
    channel
        .queue_bind(
            dead.as_str().into(),
            dlx.as_str().into(),
            name.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let mut args = durable_args(queue.queue_type);
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dlx.into()),
    );
    if let Some(max_length) = queue.max_length {
        args.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(i64::from(max_length)),
        );
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
    }
    channel
        .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
        .await
}

/// A server-named queue, exclusive to this connection and deleted with it, and its
/// consumer, without acks (a message read once is done with).
async fn declare_private_queue(channel: &Channel) -> lapin::Result<(Queue, Consumer)> {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let consumer = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((queue, consumer))
}

/// A requester's reply queue, and the consumer of it: server-named, exclusive to this
/// connection and deleted with it, consumed without acks (a reply is read once, and one that
/// nobody waits for any more is simply dropped). Its name goes into each request's `reply_to`.
pub async fn declare_reply_queue(channel: &Channel) -> lapin::Result<(Queue, Consumer)> {
    declare_private_queue(channel).await
}

/// Declares the sale events fanout exchange (idempotent); publishers and subscribers alike.
pub async fn declare_sale_events(channel: &Channel, exchange: &str) -> lapin::Result<()> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

/// One subscriber's queue on the sale events exchange: exclusive to its connection, so an
/// event reaches every front tier once, and a front tier that is gone leaves nothing behind.
pub async fn subscribe_sale_events(
    channel: &Channel,
    exchange: &str,
) -> lapin::Result<(Queue, Consumer)> {
    declare_sale_events(channel, exchange).await?;
    let (queue, consumer) = declare_private_queue(channel).await?;
    channel
        .queue_bind(
            queue.name().as_str().into(),
            exchange.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((queue, consumer))
}
