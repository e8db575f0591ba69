//! The RabbitMQ RPC worker: consumes buy requests from a durable queue, runs the same order
//! core as the HTTP backend, replies to `reply_to` with the request's `correlation_id`, then
//! acknowledges.
//!
//! The wire contract (messages, declarations, connecting) is the `queue-contract` crate,
//! shared with the front tier.
//!
//! - [`config`]: options and their `FLASHSALE_*` environment variables.
//! - `consumer`: the consume session (run by queue-contract's reconnect loop) and its drain.
//! - `health`: the optional `GET /healthz`.

pub mod config;
mod consumer;
mod health;
pub mod metrics;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use order_core::Store;
use order_core::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::Config;

use crate::consumer::Consumer;
use crate::metrics::Metrics;

/// A worker built from its configuration, ready to run.
pub struct Application {
    consumer: Arc<Consumer>,
    health: Option<TcpListener>,
}

impl Application {
    /// Opens the store (creating the initial sale if it holds none) and binds the health
    /// endpoint if configured. RabbitMQ is not required yet: `run_until` connects and keeps
    /// reconnecting.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        tracing::info!(?config, "starting worker");
        config.validate()?;
        let metrics = Arc::new(Metrics::new(&config.queue.name));
        let store = config
            .store
            .open()
            .await
            .context("opening the store")?
            .with_timings(metrics.store_timings());
        let health = match config.health_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the health endpoint on {addr}"))?,
            ),
            None => None,
        };
        let (consuming, _) = watch::channel(false);
        Ok(Self {
            consumer: Arc::new(Consumer {
                config,
                store,
                consuming,
                metrics,
            }),
            health,
        })
    }

    pub fn store(&self) -> &Store {
        &self.consumer.store
    }

    /// Where `GET /healthz` listens, if configured (the real port when bound to port 0).
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Turns `true` while a consumer is registered with the broker.
    pub fn consuming(&self) -> watch::Receiver<bool> {
        self.consumer.consuming.subscribe()
    }

    /// Consumes until `shutdown` resolves, then stops taking deliveries, finishes and acks the
    /// ones in hand, and closes the connection.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = Shutdown::new();
        let health = self.health.map(|listener| {
            let router = health::router(
                self.consumer.consuming.subscribe(),
                Arc::clone(&self.consumer.metrics),
            );
            tokio::spawn(
                axum::serve(listener, router)
                    .with_graceful_shutdown(stop.clone().cancelled_owned())
                    .into_future(),
            )
        });
        let consume = tokio::spawn(Arc::clone(&self.consumer).run(stop.clone()));
        let signal = tokio::spawn({
            let stop = stop.clone();
            async move {
                shutdown.await;
                stop.cancel();
            }
        });
        consume.await.context("the consume loop panicked")?;
        signal.abort();
        if let Some(health) = health {
            health
                .await
                .context("the health endpoint panicked")?
                .context("serving the health endpoint")?;
        }
        Ok(())
    }
}
