//! The front tier: every buy goes either straight to the order backend over HTTP (through
//! nginx) or through the RabbitMQ RPC queue to a worker, so the two architectures of the
//! original experiment are measured behind one address.
//!
//! - [`config`]: options and their `FLASHSALE_*` environment variables.
//! - [`admission`]: how many buys each route admits, bounded by the target wait.
//! - [`routes`]: the HTTP surface and the user-id counter.
//! - [`http_upstream`]: the pooled keep-alive client for the HTTP route and the sale API.
//! - [`rpc`]: the MQ route: one connection, a reply queue, a correlation-id map.
//! - [`gate`]: the sold-out gate, and the sale events link every front tier shares.
//! - [`error`]: the status code each failure answers with.

pub mod admission;
pub mod config;
pub mod error;
pub mod gate;
pub mod http_upstream;
pub mod metrics;
pub mod routes;
pub mod rpc;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use order_core::shutdown::Shutdown;
use tokio::net::TcpListener;

pub use config::{Config, GateMode, Route};

use crate::admission::Admission;
use crate::gate::{Gate, GateSettings};
use crate::http_upstream::HttpUpstream;
use crate::metrics::Metrics;
use crate::rpc::{RpcClient, RpcSettings};

/// A front tier bound to its port, ready to serve.
pub struct Application {
    listener: TcpListener,
    rpc: RpcClient,
    gate: Gate,
    router: axum::Router,
}

impl Application {
    /// Binds the listener and prepares both routes. Neither upstream needs to be up yet:
    /// `run_until` connects to RabbitMQ (and keeps reconnecting); the HTTP client connects
    /// per request from its pool.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        tracing::info!(?config, "starting front tier");
        let http = HttpUpstream::new(config.backend_base(), config.timeout())
            .context("building the HTTP client")?;
        let metrics = Arc::new(Metrics::new());
        let rpc = RpcClient::new(RpcSettings {
            link: config.queue.link(
                config.connection_name.as_str(),
                Some(metrics.reconnects.clone()),
            ),
            queue: config.queue.request_queue(),
            confirm_timeout: config.confirm_timeout(),
            timeout: config.timeout(),
        });
        let gate = Gate::new(
            GateSettings {
                enabled: config.sold_out_gate == GateMode::On,
                link: config
                    .queue
                    .link(format!("{}-events", config.connection_name), None),
                exchange: config.events_exchange.clone(),
                recheck: Duration::from_millis(config.gate_recheck_ms),
            },
            http.clone(),
        );
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let router = routes::router(routes::AppState::new(
            http,
            rpc.clone(),
            gate.clone(),
            config.default_route,
            [config.max_in_flight_http, config.max_in_flight_mq]
                .map(|ceiling| Admission::new(config.target_wait(), ceiling)),
            Arc::clone(&metrics),
        ));
        Ok(Self {
            listener,
            rpc,
            gate,
            router,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The MQ route's client (its connection state and pending requests, for tests).
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    /// The sold-out gate (its state, for tests).
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Serves until `shutdown` resolves and the requests in flight are answered, then closes
    /// the RabbitMQ connection (after the HTTP drain, since draining requests may be waiting
    /// for replies).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = Shutdown::new();
        let link = tokio::spawn(self.rpc.clone().run(stop.clone()));
        let events = tokio::spawn(self.gate.clone().run(stop.clone()));
        tracing::info!(addr = %self.local_addr(), "front tier listening");
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP");
        stop.cancel();
        link.await.context("the RPC link task panicked")?;
        events.await.context("the sale events task panicked")?;
        served
    }
}
