//! The load tester's error type.
//!
//! Every variant renders as one line that says what went wrong and what to do about it,
//! because the binary prints exactly that line and exits non-zero (never a panic).

use std::path::PathBuf;

/// Everything that can stop a load test before or after the measurement.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    #[error("bad URL `{url}`: {reason}; give a full URL such as http://127.0.0.1:5000/http/buy")]
    BadUrl { url: String, reason: String },

    #[error("bad options: {0}")]
    BadOptions(String),

    #[error(
        "cannot reach {target} ({reason}); start the stack or point loadtest at a running server"
    )]
    Unreachable { target: String, reason: String },

    #[error(
        "the admin token was refused by {origin} (401); pass the server's token with --admin-token or FLASHSALE_ADMIN_TOKEN"
    )]
    AdminTokenRefused { origin: String },

    #[error(
        "the admin API is off at {origin} (404); start the backend with an admin token, or run without --admin-token"
    )]
    AdminApiOff { origin: String },

    #[error("resetting the sale at {origin} failed: HTTP {status}: {body}")]
    AdminFailed {
        origin: String,
        status: u16,
        body: String,
    },

    #[error("reading {url} failed: {reason}")]
    Control { url: String, reason: String },

    #[error(
        "cannot write to output directory {}: {cause}; pick a writable directory with --out", path.display()
    )]
    OutputDir {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("cannot write the buyers file {}: {cause}; pick a writable --buyers-out path", path.display())]
    BuyersOut {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("cannot read report {}: {reason}; pass a JSON report written by loadtest", path.display())]
    ReadReport { path: PathBuf, reason: String },

    #[error("cannot start the generator threads: {0}")]
    Runtime(String),

    #[error("report histogram is unusable: {0}")]
    Histogram(String),

    #[error("usage: {0}")]
    Usage(String),

    #[error(
        "scraping metrics from {url} failed: {reason}; pass a Prometheus text endpoint with --metrics"
    )]
    Metrics { url: String, reason: String },

    #[error("cannot read the marks file {}: {reason}", path.display())]
    Marks { path: PathBuf, reason: String },

    #[error("--reconfigure failed: {0}")]
    Reconfigure(String),

    #[error("cannot draw the {name} plot: {reason}")]
    Plot { name: String, reason: String },
}
