//! `backend`: the HTTP order backend. Parses options, sets up tracing, serves until a signal.
//! A failure to start (e.g. a bad or unreachable store) is one line on stderr and exit 1.

use std::process::ExitCode;

use anyhow::Context;
use backend::{Application, Config};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    order_core::telemetry::init();
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => order_core::telemetry::fatal("backend", error.as_ref()),
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config)
        .await
        .context("starting the order backend")?;
    app.run_until(order_core::shutdown::signal())
        .await
        .context("serving HTTP")
}
