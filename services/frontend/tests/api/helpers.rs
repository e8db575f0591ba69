//! `spawn_stack()`: backend + worker + front tier on one temporary store and one fresh queue.

use std::net::SocketAddr;

use clap::Parser;
use order_core::{Store, Strategy};
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub use backend::test_support::Nginx;
use order_core::metrics::test_support::sample;
pub use queue_contract::test_support::*;

/// A spawned service: stop it (bounded) or let the test end.
pub struct Running<T> {
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Running<T> {
    fn spawn<F>(run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: std::future::Future<Output = T> + Send + 'static,
    {
        let (shutdown, stop) = oneshot::channel();
        Self {
            shutdown: Some(shutdown),
            task: Some(tokio::spawn(run(stop))),
        }
    }

    pub async fn stop(&mut self) -> T {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let task = self.task.take().expect("stopped once");
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("service stops in time")
            .unwrap()
    }
}

async fn until_signalled(stop: oneshot::Receiver<()>) {
    let _ = stop.await;
}

pub struct StackOptions {
    pub stock: u64,
    pub strategy: Strategy,
    pub prefetch: u16,
    /// The worker's `--batch` (1: unbatched, with `prefetch`).
    pub batch: u16,
    pub worker: bool,
    pub default_route: &'static str,
    pub timeout_ms: u64,
    /// Front tier's backend URL; `None` means the stack's own backend.
    pub backend_url: Option<String>,
    /// Front tier's broker URL; `None` means the real broker.
    pub amqp_url: Option<String>,
    /// Put real nginx (`scripts/nginx-native.sh`) in front of two backend replicas on the
    /// stack's store, and point the front tier at it, as the native stack and compose do.
    pub via_nginx: bool,
    /// The front tier's sold-out gate.
    pub gate: bool,
    pub gate_recheck_ms: u64,
    /// The backends' `--count-insert-pause-ms`: holds every count-insert buy this long.
    pub count_insert_pause_ms: u64,
    /// More options for the front tier (e.g. `--max-in-flight-http=10`).
    pub frontend_args: Vec<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            stock: 100,
            strategy: Strategy::CountInsert,
            prefetch: 1,
            batch: 1,
            worker: true,
            default_route: "http",
            timeout_ms: 5000,
            backend_url: None,
            amqp_url: None,
            via_nginx: false,
            gate: false,
            gate_recheck_ms: 1000,
            count_insert_pause_ms: 0,
            frontend_args: Vec::new(),
        }
    }
}

pub struct TestStack {
    pub addr: SocketAddr,
    pub queue: String,
    pub store: Store,
    pub rpc: frontend::rpc::RpcClient,
    pub frontend_connection: String,
    pub worker_connection: String,
    pub worker_consuming: Option<watch::Receiver<bool>>,
    /// The worker's health listener (`/healthz`, `/metrics`).
    pub worker_health: Option<SocketAddr>,
    /// The backend's own address (not through nginx).
    pub backend_addr: SocketAddr,
    pub backend: Running<std::io::Result<()>>,
    /// The second backend replica and nginx, with `via_nginx`: held so that they run as long
    /// as the stack, and stop when it is dropped.
    _replica: Option<Running<std::io::Result<()>>>,
    _nginx: Option<Nginx>,
    pub worker: Option<Running<anyhow::Result<()>>>,
    pub frontend: Running<anyhow::Result<()>>,
    pub http: reqwest::Client,
    /// The front tier's sold-out gate.
    pub gate: frontend::gate::Gate,
    /// How the front tier was started, so that a second one can join the same stack.
    pub spec: FrontendSpec,
    _broker_guard: BrokerGuard,
    _dir: tempfile::TempDir,
}

pub async fn spawn_stack(options: StackOptions) -> TestStack {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.db");
    let store_path = store_path.to_str().unwrap();
    let queue = unique("frontend");
    let events_exchange = unique("events");
    let broker_guard = BrokerGuard::request_queue(&queue).exchange(&events_exchange);
    let stock = options.stock.to_string();

    let pause = options.count_insert_pause_ms.to_string();
    let backend = start_backend(store_path, &stock, options.strategy, &pause).await;
    let backend_addr = backend.local_addr();
    let store = backend.store().clone();
    let backend = Running::spawn(|stop| backend.run_until(until_signalled(stop)));
    let (replica, nginx) = if options.via_nginx {
        let replica = start_backend(store_path, &stock, options.strategy, &pause).await;
        let nginx = Nginx::start(&[backend_addr, replica.local_addr()]).await;
        let replica = Running::spawn(|stop| replica.run_until(until_signalled(stop)));
        (Some(replica), Some(nginx))
    } else {
        (None, None)
    };

    let worker_connection = unique("worker");
    let mut worker_consuming = None;
    let mut worker_health = None;
    let worker = if options.worker {
        let prefetch = options.prefetch.to_string();
        let batch = options.batch.to_string();
        let broker = amqp_url();
        let mut args = vec![
            "worker",
            "--amqp-url",
            &broker,
            "--queue",
            &queue,
            "--store",
            store_path,
            "--stock",
            &stock,
            "--strategy",
            options.strategy.as_str(),
            "--connection-name",
            &worker_connection,
            "--batch",
            &batch,
            "--health-listen",
            "127.0.0.1:0",
        ];
        if options.batch == 1 {
            args.extend(["--prefetch", &prefetch]);
        }
        let app = worker::Application::build(worker::Config::parse_from(args))
            .await
            .expect("worker builds");
        worker_consuming = Some(app.consuming());
        worker_health = app.health_addr();
        Some(Running::spawn(|stop| app.run_until(until_signalled(stop))))
    } else {
        None
    };

    let backend_url = match (&options.backend_url, &nginx) {
        (Some(url), _) => url.clone(),
        (None, Some(nginx)) => nginx.url(),
        (None, None) => format!("http://{backend_addr}"),
    };
    let spec = FrontendSpec {
        backend_url,
        amqp_url: options.amqp_url.clone().unwrap_or_else(amqp_url),
        queue: queue.clone(),
        events_exchange,
        default_route: options.default_route,
        timeout_ms: options.timeout_ms,
        gate: options.gate,
        gate_recheck_ms: options.gate_recheck_ms,
        extra_args: options.frontend_args.clone(),
    };
    let front = start_frontend(&spec).await;
    let (addr, rpc, gate, frontend_connection) =
        (front.addr, front.rpc, front.gate, front.connection);
    let frontend = front.running;

    let stack = TestStack {
        addr,
        queue,
        store,
        rpc,
        frontend_connection,
        worker_connection,
        worker_consuming,
        worker_health,
        backend_addr,
        backend,
        _replica: replica,
        _nginx: nginx,
        worker,
        frontend,
        http: reqwest::Client::new(),
        gate,
        spec,
        _broker_guard: broker_guard,
        _dir: dir,
    };
    if options.amqp_url.is_none() {
        stack.wait_rpc_connected(true).await;
    }
    if let Some(consuming) = &stack.worker_consuming {
        let mut consuming = consuming.clone();
        tokio::time::timeout(DEADLINE, consuming.wait_for(|c| *c))
            .await
            .expect("worker consumes in time")
            .unwrap();
    }
    stack
}

/// How to start a front tier of a stack.
#[derive(Clone)]
pub struct FrontendSpec {
    pub backend_url: String,
    pub amqp_url: String,
    pub queue: String,
    pub events_exchange: String,
    pub default_route: &'static str,
    pub timeout_ms: u64,
    pub gate: bool,
    pub gate_recheck_ms: u64,
    pub extra_args: Vec<String>,
}

/// A running front tier.
pub struct Frontend {
    pub addr: SocketAddr,
    pub rpc: frontend::rpc::RpcClient,
    pub gate: frontend::gate::Gate,
    /// Its RabbitMQ connection name (the events link is `<name>-events`).
    pub connection: String,
    pub running: Running<anyhow::Result<()>>,
}

impl Frontend {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

pub async fn start_frontend(spec: &FrontendSpec) -> Frontend {
    let connection = unique("frontend");
    let timeout_ms = spec.timeout_ms.to_string();
    let recheck_ms = spec.gate_recheck_ms.to_string();
    let mut args: Vec<String> = [
        "frontend",
        "--listen",
        "127.0.0.1:0",
        "--backend-url",
        &spec.backend_url,
        "--amqp-url",
        &spec.amqp_url,
        "--queue",
        &spec.queue,
        "--events-exchange",
        &spec.events_exchange,
        "--sold-out-gate",
        if spec.gate { "on" } else { "off" },
        "--gate-recheck-ms",
        &recheck_ms,
        "--default-route",
        spec.default_route,
        "--timeout-ms",
        &timeout_ms,
        "--connection-name",
        &connection,
        "--connect-timeout-ms",
        "2000",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.extend(spec.extra_args.iter().cloned());
    let app = frontend::Application::build(frontend::Config::parse_from(args))
        .await
        .expect("front tier builds");
    Frontend {
        addr: app.local_addr(),
        rpc: app.rpc().clone(),
        gate: app.gate().clone(),
        connection,
        running: Running::spawn(|stop| app.run_until(until_signalled(stop))),
    }
}

async fn start_backend(
    store: &str,
    stock: &str,
    strategy: Strategy,
    count_insert_pause_ms: &str,
) -> backend::Application {
    backend::Application::build(backend::Config::parse_from([
        "backend",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store,
        "--admin-token",
        ADMIN_TOKEN,
        "--stock",
        stock,
        "--strategy",
        strategy.as_str(),
        "--count-insert-pause-ms",
        count_insert_pause_ms,
    ]))
    .await
    .expect("backend builds")
}

impl TestStack {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET a path of the front tier: status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: {status} {text:?} is not JSON: {e}"));
        (status, body)
    }

    /// Stops the front tier, the worker and the backend, in that order; each must stop
    /// cleanly and in time.
    pub async fn shutdown(mut self) {
        self.frontend
            .stop()
            .await
            .expect("front tier stops cleanly");
        if let Some(worker) = self.worker.as_mut() {
            worker.stop().await.expect("worker stops cleanly");
        }
        self.backend.stop().await.expect("backend stops cleanly");
    }

    /// Like [`TestStack::get`], for futures that must not borrow the path.
    pub async fn get_owned(&self, path: String) -> (u16, Value) {
        self.get(&path).await
    }

    pub async fn wait_rpc_connected(&self, value: bool) {
        let mut connected = self.rpc.connected();
        tokio::time::timeout(DEADLINE, connected.wait_for(|c| *c == value))
            .await
            .unwrap_or_else(|_| panic!("front tier RPC link connected={value} in time"))
            .unwrap();
    }
}

/// The value of the sample `name` with exactly these `labels` in the front tier's
/// `/metrics`, which must parse as Prometheus text.
pub async fn metric(stack: &TestStack, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = stack
        .http
        .get(stack.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sample(&text, name, labels)
}
