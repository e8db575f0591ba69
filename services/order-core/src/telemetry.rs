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

/// Reports the error that stops `program` as ONE line on stderr, `program: error: what:
/// why: cause`, the whole chain of causes included, and returns the exit code 1. A service
/// that cannot start (a bad store URL, an unreachable server) says so in a line a script
/// or an operator can read at once.
pub fn fatal(program: &str, error: &(dyn std::error::Error + 'static)) -> std::process::ExitCode {
    eprintln!("{program}: error: {}", one_line(error));
    std::process::ExitCode::FAILURE
}

/// `error` and its causes, `what: why: cause`, on one line.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        // Wrapping errors often repeat their cause's text: say it once.
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = next.source();
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}
