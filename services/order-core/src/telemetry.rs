//! Tracing set-up shared by every binary: `RUST_LOG` filters, `info` by default.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs a fmt subscriber on stderr. Safe to call more than once (later calls do nothing),
/// so tests that build several services in one process can call it freely.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: log files and `docker compose logs` stay plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
