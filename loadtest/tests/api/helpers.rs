//! Test servers on port 0 and shortcuts to drive the library as the binary would.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use clap::Parser as _;
use loadtest::cli::{Command, Opts, RunOpts};
use loadtest::report::Report;
use serde::Deserialize;
use serde_json::{Value, json};

/// Serves `router` on 127.0.0.1:0 for the rest of the test; returns the bound address.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// An address nobody listens on.
pub async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// `loadtest run <args>` options, parsed as the binary would.
pub fn run_opts(args: &[&str]) -> RunOpts {
    let argv = ["loadtest", "run"].iter().chain(args);
    match Opts::parse_from(argv).command {
        Command::Run(o) => o,
        _ => unreachable!(),
    }
}

/// Runs `loadtest run <args> --out <out> -q` in-process and returns the report.
pub async fn run(out: &Path, args: &[&str]) -> Report {
    let mut argv: Vec<&str> = args.to_vec();
    argv.extend([
        "--out",
        out.to_str().unwrap(),
        "-q",
        "--drain-interval-ms",
        "20",
    ]);
    loadtest::run(&run_opts(&argv)).await.unwrap().0
}

pub const TOKEN: &str = "s3cret";

/// `loadtest matrix` options against `sale`, writing into `out`, quiet, with `extra`.
pub fn matrix_opts(sale: &FakeSale, out: &Path, extra: &[&str]) -> Opts {
    let mut argv = vec![
        "loadtest",
        "matrix",
        &sale.origin,
        "--admin-token",
        TOKEN,
        "--out",
        out.to_str().unwrap(),
        "--drain-interval-ms",
        "20",
        "-q",
    ];
    argv.extend(extra);
    Opts::parse_from(argv)
}

/// Reads a matrix report.
pub fn load_matrix(path: std::path::PathBuf) -> loadtest::matrix::MatrixReport {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// How the fake sale misbehaves, to check that the accounting catches it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Answer `ordered` to even users without storing their order.
    pub lose_even_users: bool,
    /// Take this many orders beyond stock.
    pub oversell_by: u64,
    /// Store odd users' orders but answer them 503 (a commit whose answer was lost): by count
    /// alone, these hide as many lost acknowledged orders.
    pub store_odd_users_answer_503: bool,
    /// No `GET /sale/orders`: the load tester can only compare counts.
    pub no_order_list: bool,
}

#[derive(Debug, Default)]
pub struct SaleState {
    pub stock: u64,
    pub strategy: String,
    pub orders: HashSet<u64>,
    /// Every reset, in order: (stock, strategy, orders dropped).
    pub resets: Vec<(u64, String, usize)>,
    pub faults: Faults,
}

/// A small front tier with the sale contract: buy routes, `/sale`, `/admin/sale`.
#[derive(Clone)]
pub struct FakeSale {
    pub state: Arc<Mutex<SaleState>>,
    pub origin: String,
}

#[derive(Deserialize)]
struct Buyer {
    user: Option<u64>,
}

#[derive(Deserialize)]
struct Reset {
    stock: u64,
    strategy: String,
}

async fn buy(
    State(state): State<Arc<Mutex<SaleState>>>,
    Query(q): Query<Buyer>,
) -> (StatusCode, Json<Value>) {
    let Some(user) = q.user.filter(|u| *u > 0) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "user must be a positive integer"})),
        );
    };
    let mut s = state.lock().unwrap();
    if s.orders.contains(&user) {
        return (
            StatusCode::OK,
            Json(
                json!({"outcome": "already_ordered", "order_id": format!("o{user}"), "user_id": user}),
            ),
        );
    }
    let limit = s.stock + s.faults.oversell_by;
    if (s.orders.len() as u64) < limit {
        if !(s.faults.lose_even_users && user % 2 == 0) {
            s.orders.insert(user);
        }
        if s.faults.store_odd_users_answer_503 && user % 2 == 1 {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "answer lost after the commit"})),
            );
        }
        return (
            StatusCode::OK,
            Json(json!({"outcome": "ordered", "order_id": format!("o{user}"), "user_id": user})),
        );
    }
    (
        StatusCode::OK,
        Json(json!({"outcome": "sold_out", "user_id": user})),
    )
}

/// Prometheus text: orders held (a gauge) and resets (a counter).
async fn metrics(State(state): State<Arc<Mutex<SaleState>>>) -> String {
    let s = state.lock().unwrap();
    format!(
        "# TYPE sale_orders gauge\nsale_orders {}\n# TYPE sale_resets_total counter\nsale_resets_total {}\n",
        s.orders.len(),
        s.resets.len()
    )
}

async fn sale(State(state): State<Arc<Mutex<SaleState>>>) -> Json<Value> {
    let s = state.lock().unwrap();
    let orders = s.orders.len() as u64;
    Json(json!({
        "stock": s.stock,
        "orders": orders,
        "oversold": orders.saturating_sub(s.stock),
        "strategy": s.strategy,
    }))
}

#[derive(Deserialize)]
struct OrdersPage {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

async fn sale_orders(
    State(state): State<Arc<Mutex<SaleState>>>,
    Query(page): Query<OrdersPage>,
) -> (StatusCode, Json<Value>) {
    let s = state.lock().unwrap();
    if s.faults.no_order_list {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such route"})),
        );
    }
    let mut held: Vec<u64> = s
        .orders
        .iter()
        .copied()
        .filter(|u| *u > page.after)
        .collect();
    held.sort_unstable();
    let limit = page.limit.unwrap_or(10_000);
    held.truncate(limit);
    let next_after = (held.len() == limit)
        .then(|| held.last().copied())
        .flatten();
    (
        StatusCode::OK,
        Json(json!({"user_ids": held, "next_after": next_after})),
    )
}

async fn admin(
    State(state): State<Arc<Mutex<SaleState>>>,
    headers: HeaderMap,
    Json(reset): Json<Reset>,
) -> (StatusCode, Json<Value>) {
    let expected = format!("Bearer {TOKEN}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad token"})),
        );
    }
    let mut s = state.lock().unwrap();
    let dropped = s.orders.len();
    s.orders.clear();
    s.stock = reset.stock;
    s.strategy = reset.strategy.clone();
    s.resets.push((reset.stock, reset.strategy, dropped));
    (
        StatusCode::OK,
        Json(json!({"stock": s.stock, "strategy": s.strategy})),
    )
}

impl FakeSale {
    pub async fn start(stock: u64, faults: Faults) -> Self {
        let state = Arc::new(Mutex::new(SaleState {
            stock,
            strategy: "count-insert".into(),
            faults,
            ..SaleState::default()
        }));
        let router = Router::new()
            .route("/http/buy", get(buy))
            .route("/mq/buy", get(buy))
            .route("/buy", get(buy))
            .route("/healthz", get(|| async { "ok" }))
            .route("/metrics", get(metrics))
            .route("/sale", get(sale))
            .route("/sale/orders", get(sale_orders))
            .route("/admin/sale", post(admin))
            .with_state(state.clone());
        let addr = serve(router).await;
        Self {
            state,
            origin: format!("http://{addr}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    pub fn orders(&self) -> HashSet<u64> {
        self.state.lock().unwrap().orders.clone()
    }

    pub fn resets(&self) -> Vec<(u64, String, usize)> {
        self.state.lock().unwrap().resets.clone()
    }
}

/// What a raw test server sends for one request.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub bytes: Vec<u8>,
    /// Close the connection after sending (without saying so unless `bytes` does).
    pub close: bool,
    /// Send the first `n` bytes, wait this long, then the rest (a slow body).
    pub pause: Option<(usize, std::time::Duration)>,
    /// Never answer (the connection stays open until the client gives up).
    pub hang: bool,
}

impl Reply {
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: bytes.into(),
            ..Self::default()
        }
    }

    /// `200` with a `Content-Length` body.
    pub fn with_length(body: &str) -> Self {
        Self::bytes(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    /// `200` with `body` sent as chunks of at most `chunk` bytes.
    pub fn chunked(body: &str, chunk: usize) -> Self {
        let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for part in body.as_bytes().chunks(chunk) {
            out.extend(format!("{:x}\r\n", part.len()).as_bytes());
            out.extend(part);
            out.extend(b"\r\n");
        }
        out.extend(b"0\r\n\r\n");
        Self::bytes(out)
    }
}

/// What a raw test server has seen.
#[derive(Debug, Default)]
pub struct RawStats {
    /// Requests carrying a user id (buys).
    pub buys: std::sync::atomic::AtomicU64,
    /// Connections accepted.
    pub connections: std::sync::atomic::AtomicU64,
    /// Connections accepted when the first buy arrived (`u64::MAX` before it).
    pub connections_at_first_buy: std::sync::atomic::AtomicU64,
}

/// A raw HTTP/1.1 test server on 127.0.0.1:0: reads each request head and sends what
/// `respond(user, nth request on this connection)` says (user 0 for a request without
/// one). Returns the address and what it has seen.
pub async fn raw_server<F>(respond: F) -> (SocketAddr, Arc<RawStats>)
where
    F: Fn(u64, u64) -> Reply + Send + Sync + 'static,
{
    raw_server_slow_to_accept(std::time::Duration::ZERO, respond).await
}

/// As [`raw_server`], taking `accept_pause` after each connection it accepts (a busy
/// server whose accept queue fills).
pub async fn raw_server_slow_to_accept<F>(
    accept_pause: std::time::Duration,
    respond: F,
) -> (SocketAddr, Arc<RawStats>)
where
    F: Fn(u64, u64) -> Reply + Send + Sync + 'static,
{
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(RawStats::default());
    stats
        .connections_at_first_buy
        .store(u64::MAX, Ordering::SeqCst);
    let respond = Arc::new(respond);
    let shared = stats.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            shared.connections.fetch_add(1, Ordering::SeqCst);
            if !accept_pause.is_zero() {
                tokio::time::sleep(accept_pause).await;
            }
            let (respond, seen) = (respond.clone(), shared.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut nth = 0;
                loop {
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    buf.drain(..head_end);
                    let user = head
                        .split_once("user=")
                        .map(|(_, rest)| {
                            rest.chars()
                                .take_while(char::is_ascii_digit)
                                .collect::<String>()
                        })
                        .and_then(|d| d.parse().ok())
                        .unwrap_or(0);
                    // Control calls (`GET /sale` after the run) carry no user id.
                    if head.contains("user=") {
                        let open = seen.connections.load(Ordering::SeqCst);
                        let _ = seen.connections_at_first_buy.compare_exchange(
                            u64::MAX,
                            open,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        );
                        seen.buys.fetch_add(1, Ordering::SeqCst);
                    }
                    let reply = respond(user, nth);
                    nth += 1;
                    if reply.hang {
                        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                        return;
                    }
                    let sent = match reply.pause {
                        Some((n, pause)) => {
                            let n = n.min(reply.bytes.len());
                            let first = socket.write_all(&reply.bytes[..n]).await;
                            tokio::time::sleep(pause).await;
                            match first {
                                Ok(()) => socket.write_all(&reply.bytes[n..]).await,
                                e => e,
                            }
                        }
                        None => socket.write_all(&reply.bytes).await,
                    };
                    if sent.is_err() || reply.close {
                        return;
                    }
                }
            });
        }
    });
    (addr, stats)
}

/// A buy answer body.
pub fn buy_body(outcome: &str, user: u64) -> String {
    json!({"outcome": outcome, "order_id": format!("o{user}"), "user_id": user}).to_string()
}
