//! A scripted sale: a buy server that decides who wins in an order it is told, to check
//! what the load tester's fairness measures say about it.
//!
//! It holds the buys as they arrive until `window` of them are waiting (or `window_ms` has
//! passed since the first), then decides them all at once: with `arrival`, the first to
//! arrive win (first come, first served); with `reverse`, the last; with `random`, a
//! random choice (a fixed seed, so a run is repeatable). Each buy gets the sale's usual
//! answer (`ordered` with an order id, or `sold_out`); `GET /healthz` answers at once.
//! Not part of the product.
//!
//! `cargo run --release -p loadtest --example scripted_sale -- 127.0.0.1:18091 arrival 50 200`
//! (listen address, order, stock, window).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::oneshot;

/// In which order the waiting buys win.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Arrival,
    Reverse,
    Random,
}

/// What the server does.
#[derive(Debug, Clone, Copy)]
pub struct Script {
    pub order: Order,
    pub stock: usize,
    /// Buys decided together.
    pub window: usize,
    /// Longest wait for a window to fill, from its first buy.
    pub window_ms: u64,
}

struct Sale {
    script: Script,
    left: usize,
    /// Waiting buys in arrival order: (user, where its answer goes).
    waiting: Vec<(u64, oneshot::Sender<String>)>,
    /// Generation of the current window, so a timer only closes its own window.
    window: u64,
    rng: u64,
}

impl Sale {
    /// Decides every waiting buy.
    fn decide(&mut self) {
        let waiting = std::mem::take(&mut self.waiting);
        self.window += 1;
        let n = waiting.len();
        let wins = self.left.min(n);
        let mut winners = vec![false; n];
        match self.script.order {
            Order::Arrival => winners[..wins].fill(true),
            Order::Reverse => winners[n - wins..].fill(true),
            Order::Random => {
                // A partial Fisher-Yates shuffle of the indices (xorshift64, fixed seed).
                let mut idx: Vec<usize> = (0..n).collect();
                for i in 0..wins {
                    self.rng ^= self.rng << 13;
                    self.rng ^= self.rng >> 7;
                    self.rng ^= self.rng << 17;
                    let j = i + (self.rng % (n - i) as u64) as usize;
                    idx.swap(i, j);
                    winners[idx[i]] = true;
                }
            }
        }
        self.left -= wins;
        for ((user, answer), won) in waiting.into_iter().zip(winners) {
            let body = if won {
                format!(r#"{{"outcome":"ordered","order_id":"o{user}","user_id":{user}}}"#)
            } else {
                format!(r#"{{"outcome":"sold_out","user_id":{user}}}"#)
            };
            let _ = answer.send(body);
        }
    }
}

#[derive(Deserialize)]
struct Buyer {
    user: u64,
}

async fn buy(State(sale): State<Arc<Mutex<Sale>>>, Query(q): Query<Buyer>) -> String {
    let (tx, rx) = oneshot::channel();
    let timer = {
        let mut s = sale.lock().unwrap();
        s.waiting.push((q.user, tx));
        if s.waiting.len() >= s.script.window {
            s.decide();
            None
        } else {
            (s.waiting.len() == 1).then_some((s.window, s.script.window_ms))
        }
    };
    if let Some((window, ms)) = timer {
        let sale = sale.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let mut s = sale.lock().unwrap();
            if s.window == window {
                s.decide();
            }
        });
    }
    rx.await.unwrap_or_default()
}

/// Serves the script on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, script: Script) {
    let sale = Arc::new(Mutex::new(Sale {
        script,
        left: script.stock,
        waiting: Vec::new(),
        window: 0,
        rng: 0x9E37_79B9_7F4A_7C15,
    }));
    let app = Router::new()
        .route("/buy", get(buy))
        .route("/http/buy", get(buy))
        .route("/mq/buy", get(buy))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(sale);
    axum::serve(listener, app).await.expect("serve");
}

/// Starts the script on 127.0.0.1, on a free port.
pub async fn start(script: Script) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(serve(listener, script));
    addr
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18091".into());
    let order = match args.next().as_deref() {
        Some("reverse") => Order::Reverse,
        Some("random") => Order::Random,
        _ => Order::Arrival,
    };
    let stock = args.next().and_then(|s| s.parse().ok()).unwrap_or(50);
    let window = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("bind the listen address");
    eprintln!(
        "scripted_sale: {order:?}, stock {stock}, window {window} on http://{}",
        listener.local_addr().unwrap()
    );
    serve(
        listener,
        Script {
            order,
            stock,
            window,
            window_ms: 2_000,
        },
    )
    .await;
}
