//! `spawn_app`: a real backend on 127.0.0.1:0 with a fresh store, and typed calls to it.

use std::net::SocketAddr;

use backend::{Application, Config};
use clap::Parser;
use order_core::metrics::test_support::parse;
use order_core::{BuyResponse, SaleState, Strategy};
use serde_json::Value;
use tokio::sync::oneshot;

pub use order_core::metrics::test_support::sample;

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub store: order_core::Store,
    _shutdown: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app(stock: u64, strategy: Strategy) -> TestApp {
    spawn_app_with(stock, strategy, Some(ADMIN_TOKEN)).await
}

pub async fn spawn_app_with(stock: u64, strategy: Strategy, admin_token: Option<&str>) -> TestApp {
    spawn_app_with_args(stock, strategy, admin_token, &[]).await
}

/// A backend with more options (e.g. `--max-in-flight=10`).
pub async fn spawn_app_with_args(
    stock: u64,
    strategy: Strategy,
    admin_token: Option<&str>,
    extra: &[&str],
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("orders.db");
    let mut args = vec![
        "backend".to_owned(),
        "--listen=127.0.0.1:0".to_owned(),
        format!("--store={}", store.display()),
        format!("--stock={stock}"),
        format!("--strategy={strategy}"),
    ];
    if let Some(token) = admin_token {
        args.push(format!("--admin-token={token}"));
    }
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let app = Application::build(Config::parse_from(args)).await.unwrap();
    let addr = app.local_addr();
    let store = app.store().clone();
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    TestApp {
        addr,
        client,
        store,
        _shutdown: shutdown,
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn buy(&self, user: u64) -> BuyResponse {
        let response = self
            .client
            .get(self.url(&format!("/buy/{user}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "buy for user {user}");
        response.json().await.unwrap()
    }

    pub async fn sale(&self) -> SaleState {
        self.client
            .get(self.url("/sale"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn reset(&self, token: Option<&str>, body: &str) -> (u16, Value) {
        let mut request = self
            .client
            .post(self.url("/admin/sale"))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

/// `GET url` as Prometheus text (checked to parse).
pub async fn scrape(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    parse(&text);
    text
}

/// Scrapes until the gauge `name` reads `value`; panics after a few seconds.
pub async fn wait_for_metric(
    client: &reqwest::Client,
    url: &str,
    name: &str,
    value: f64,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = scrape(client, url).await;
        if sample(&text, name, &[]) == Some(value) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never reached {value}:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
