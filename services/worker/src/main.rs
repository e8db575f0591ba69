//! `worker`: consumes buy requests from RabbitMQ and answers each one through the order core.
//! A failure to start (e.g. a bad or unreachable store) is one line on stderr and exit 1.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use worker::{Application, Config};

#[tokio::main]
async fn main() -> ExitCode {
    order_core::telemetry::init();
    let config = Config::parse();
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => order_core::telemetry::fatal("worker", error.as_ref()),
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config)
        .await
        .context("starting the worker")?;
    app.run_until(order_core::shutdown::signal()).await
}
