//! `backend`: the HTTP order backend. Parses options, sets up tracing, serves until a signal.

use anyhow::Context;
use backend::{Application, Config};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    order_core::telemetry::init();
    let app = Application::build(config)
        .await
        .context("starting the order backend")?;
    app.run_until(order_core::shutdown::signal())
        .await
        .context("serving HTTP")
}
