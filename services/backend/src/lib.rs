//! The HTTP order backend: `GET /buy/{user_id}` on the shared order core, plus the sale's
//! state and its admin reset. Normally reached through nginx, several replicas on one store.

mod config;
mod error;
pub mod metrics;
mod routes;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use config::Config;
pub use error::ApiError;

use crate::metrics::Metrics;

use std::future::Future;
use std::net::SocketAddr;

use std::sync::Arc;

use anyhow::Context;
use order_core::Store;
use tokio::net::TcpListener;

/// A backend bound to its port, with its store open: ready to serve.
pub struct Application {
    listener: TcpListener,
    store: Store,
    router: axum::Router,
}

impl Application {
    /// Opens the store and binds the listener. Bind port 0 to get a free port
    /// ([`Application::local_addr`] says which).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let store = config
            .store
            .open()
            .await
            .context("opening the store")?
            .with_timings(metrics.store_timings());
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        if config.admin_token.is_none() {
            tracing::warn!("no admin token configured: POST /admin/sale is disabled");
        }
        let router = routes::router(routes::AppState::new(
            store.clone(),
            config.admin_token,
            config.max_in_flight,
            metrics,
        ));
        Ok(Self {
            listener,
            store,
            router,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` resolves, then drains the requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(addr = %self.local_addr(), "order backend listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}
