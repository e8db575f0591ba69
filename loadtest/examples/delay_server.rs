//! A benchmark target: answers `GET /` (and any path) with 200 "ok" after a fixed delay.
//!
//! Used to compare loadtest with siege on a server-bound target, where the server, not
//! the generator, sets the pace. Not part of the product.
//!
//! `cargo run --release -p loadtest --example delay_server -- 127.0.0.1:18090 50`

use std::time::Duration;

use axum::Router;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18090".into());
    let delay_ms: u64 = args.next().and_then(|d| d.parse().ok()).unwrap_or(50);
    let delay = Duration::from_millis(delay_ms);
    let app = Router::new().fallback(move || async move {
        tokio::time::sleep(delay).await;
        "ok"
    });
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("bind the listen address");
    eprintln!(
        "delay_server: {delay_ms} ms on http://{}",
        listener.local_addr().unwrap()
    );
    axum::serve(listener, app).await.expect("serve");
}
