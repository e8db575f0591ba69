//! `worker`: consumes buy requests from RabbitMQ and answers each one through the order core.

use clap::Parser;
use worker::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    order_core::telemetry::init();
    let config = Config::parse();
    let app = Application::build(config).await?;
    app.run_until(order_core::shutdown::signal()).await
}
