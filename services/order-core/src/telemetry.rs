//! Tracing set-up shared by every binary: `RUST_LOG` filters, `info` by default.

use tracing_subscriber::EnvFilter;

/// Installs a fmt subscriber on stderr. Safe to call more than once (later calls do nothing),
/// so tests that build several services in one process can call it freely.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
