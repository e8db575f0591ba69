//! The RabbitMQ RPC worker: consumes buy requests from a durable queue, runs the same order
//! core as the HTTP backend, replies to `reply_to` with the request's `correlation_id`, then
//! acknowledges.
//!
//! The wire contract (messages, declarations, connecting) is the `queue-contract` crate,
//! shared with the front tier.
//!
//! - [`config`]: options and their `FLASHSALE_*` environment variables.
//! - `consumer`: the consume loop, reconnects and graceful drain.
//! - `health`: the optional `GET /healthz`.

pub mod config;
mod consumer;
mod health;
pub mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use order_core::Store;
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
        let metrics = Arc::new(Metrics::new(&config.queue));
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
        let (stop_tx, stop_rx) = watch::channel(false);
        let health = self.health.map(|listener| {
            let mut stop = stop_rx.clone();
            let router = health::router(
                self.consumer.consuming.subscribe(),
                Arc::clone(&self.consumer.metrics),
            );
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|stop| *stop).await;
                    })
                    .await
            })
        });
        let consume = tokio::spawn(Arc::clone(&self.consumer).run(stop_rx));
        tokio::spawn(async move {
            shutdown.await;
            stop_tx.send_replace(true);
            // Keep the sender alive until the consumer has seen it.
            stop_tx.closed().await;
        });
        consume.await.context("the consume loop panicked")?;
        if let Some(health) = health {
            health
                .await
                .context("the health endpoint panicked")?
                .context("serving the health endpoint")?;
        }
        Ok(())
    }
}
