//! The queues both sides of the RPC declare. One definition, used by the worker and the front
//! tier alike: RabbitMQ refuses a second declaration of a queue with different arguments
//! (`PRECONDITION_FAILED`), so the arguments must never drift apart.
//!
//! `<queue>` is durable and dead-letters into the direct exchange `<queue>.dlx`, which routes
//! to the durable queue `<queue>.dead` (bound with the request queue's name, the routing key a
//! dead-lettered message keeps). Messages land there when the worker rejects them
//! (unparseable) or when they expire unanswered (the front tier sets a per-message TTL equal
//! to its timeout, so nobody is served after their client has given up).

use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Consumer, ExchangeKind, Queue};

/// The dead-letter queue keeps at most this many messages (oldest dropped first), so a long
/// load test that times out does not fill the broker's disk.
pub const DEAD_LETTER_MAX_LENGTH: i64 = 100_000;

pub fn dead_letter_exchange(queue: &str) -> String {
    format!("{queue}.dlx")
}

pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

/// Declares the request queue and its dead-letter exchange and queue (idempotent).
/// Returns the request queue as declared (its message and consumer counts).
pub async fn declare_request_queue(channel: &Channel, queue: &str) -> lapin::Result<Queue> {
    let dlx = dead_letter_exchange(queue);
    let dead = dead_letter_queue(queue);

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

    let mut dead_args = FieldTable::default();
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
            queue.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dlx.into()),
    );
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), args)
        .await
}

/// A requester's reply queue, and the consumer of it: server-named, exclusive to this
/// connection and deleted with it, consumed without acks (a reply is read once, and one that
/// nobody waits for any more is simply dropped). Its name goes into each request's `reply_to`.
pub async fn declare_reply_queue(channel: &Channel) -> lapin::Result<(Queue, Consumer)> {
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
