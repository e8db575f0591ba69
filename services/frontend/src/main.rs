//! `frontend`: the front tier. Routes each buy over HTTP or through the RabbitMQ RPC queue.

use clap::Parser;
use frontend::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    order_core::telemetry::init();
    let config = Config::parse();
    let app = Application::build(config).await?;
    app.run_until(order_core::shutdown::signal()).await
}
