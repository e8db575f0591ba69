//! Stopping a service: the signal that asks for it (Ctrl-C or SIGTERM, what `docker stop`
//! sends) and the token every task of a service drains on.
//!
//! [`Shutdown`] is the one token type of the services: cloned into each task that must stop,
//! cancelled once, awaited with `cancelled()` (usually in a `select!`). Unlike a `watch`
//! channel of `bool` it has no value to misread and no sender to keep alive, and a task that
//! starts after the cancellation sees it at once.

pub use tokio_util::sync::CancellationToken as Shutdown;

/// Resolves when the process is asked to stop.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
