//! The RabbitMQ contract between the front tier (the requester) and the worker (the
//! consumer). Neither tier depends on the other: both depend on this crate, so both sides of
//! the queue agree on the bytes, the declarations and the way to connect.
//!
//! - [`message`]: the request and reply bodies and their AMQP properties.
//! - [`topology`]: the request queue (classic or quorum), its dead-letter queue, the reply
//!   queue and the `sale_events` fanout exchange. RabbitMQ refuses a second declaration with
//!   other arguments, so there is exactly one definition of each.
//! - [`events`]: the sale events (sold out, reset) that keep every front tier's gate honest.
//! - [`connection`]: a list of brokers, bounded connection attempts, failover and backoff.
//! - [`reconnect`]: the one reconnect loop every client runs its sessions in.
//! - [`config`]: the queue options both tiers take (flags and `FLASHSALE_*` variables).

pub mod config;
pub mod connection;
pub mod events;
pub mod message;
pub mod reconnect;
#[cfg(feature = "test-support")]
pub mod test_support;
pub mod topology;

/// The local broker of the native stack and of the tests.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The request queue of the design.
pub const DEFAULT_QUEUE: &str = "buy_requests";
