//! `spawn_stack()`: backend + worker + front tier on one temporary store and one fresh queue.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use order_core::{Store, Strategy};
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub const DEADLINE: Duration = Duration::from_secs(15);
pub const ADMIN_TOKEN: &str = "test-admin-token";

pub fn amqp_url() -> String {
    std::env::var("FLASHSALE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn unique(prefix: &str) -> String {
    format!("test.{prefix}.{}", uuid::Uuid::new_v4().simple())
}

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
    pub worker: bool,
    pub default_route: &'static str,
    pub timeout_ms: u64,
    /// Front tier's backend URL; `None` means the stack's own backend.
    pub backend_url: Option<String>,
    /// Front tier's broker URL; `None` means the real broker.
    pub amqp_url: Option<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            stock: 100,
            strategy: Strategy::CountInsert,
            prefetch: 1,
            worker: true,
            default_route: "http",
            timeout_ms: 5000,
            backend_url: None,
            amqp_url: None,
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
    pub backend: Running<std::io::Result<()>>,
    pub worker: Option<Running<anyhow::Result<()>>>,
    pub frontend: Running<anyhow::Result<()>>,
    pub http: reqwest::Client,
    _queue_guard: QueueGuard,
    _dir: tempfile::TempDir,
}

pub async fn spawn_stack(options: StackOptions) -> TestStack {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.db");
    let store_path = store_path.to_str().unwrap();
    let queue = unique("frontend");
    let queue_guard = QueueGuard(queue.clone());
    let stock = options.stock.to_string();

    let backend = backend::Application::build(backend::Config::parse_from([
        "backend",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store_path,
        "--admin-token",
        ADMIN_TOKEN,
        "--stock",
        &stock,
        "--strategy",
        options.strategy.as_str(),
    ]))
    .await
    .expect("backend builds");
    let backend_addr = backend.local_addr();
    let store = backend.store().clone();
    let backend = Running::spawn(|stop| backend.run_until(until_signalled(stop)));

    let worker_connection = unique("worker");
    let mut worker_consuming = None;
    let worker = if options.worker {
        let prefetch = options.prefetch.to_string();
        let app = worker::Application::build(worker::Config::parse_from([
            "worker",
            "--amqp-url",
            &amqp_url(),
            "--queue",
            &queue,
            "--prefetch",
            &prefetch,
            "--store",
            store_path,
            "--stock",
            &stock,
            "--strategy",
            options.strategy.as_str(),
            "--connection-name",
            &worker_connection,
        ]))
        .await
        .expect("worker builds");
        worker_consuming = Some(app.consuming());
        Some(Running::spawn(|stop| app.run_until(until_signalled(stop))))
    } else {
        None
    };

    let frontend_connection = unique("frontend");
    let backend_url = options
        .backend_url
        .clone()
        .unwrap_or_else(|| format!("http://{backend_addr}"));
    let frontend_amqp = options.amqp_url.clone().unwrap_or_else(amqp_url);
    let timeout_ms = options.timeout_ms.to_string();
    let app = frontend::Application::build(frontend::Config::parse_from([
        "frontend",
        "--listen",
        "127.0.0.1:0",
        "--backend-url",
        &backend_url,
        "--amqp-url",
        &frontend_amqp,
        "--queue",
        &queue,
        "--default-route",
        options.default_route,
        "--timeout-ms",
        &timeout_ms,
        "--connection-name",
        &frontend_connection,
        "--connect-timeout-ms",
        "2000",
    ]))
    .await
    .expect("front tier builds");
    let addr = app.local_addr();
    let rpc = app.rpc().clone();
    let frontend = Running::spawn(|stop| app.run_until(until_signalled(stop)));

    let stack = TestStack {
        addr,
        queue,
        store,
        rpc,
        frontend_connection,
        worker_connection,
        worker_consuming,
        backend,
        worker,
        frontend,
        http: reqwest::Client::new(),
        _queue_guard: queue_guard,
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

/// Polls `check` until it holds or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ready messages in `queue` right now (a passive declare on a short-lived connection).
pub async fn message_count(queue: &str) -> u32 {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let count = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count();
    let _ = connection.close(200, "done".into()).await;
    count
}

/// Closes, from the broker's side, the connections named `name` (only this test's).
pub async fn close_connections_named(name: &str) -> usize {
    // Plain output, one connection a line: `<pid>\t[client properties]`. (The JSON formatter
    // prints pids as `#PID<...>`, which `close_connection` does not accept.)
    let output = tokio::process::Command::new(rabbitmqctl())
        .args(["list_connections", "pid", "client_properties", "-q"])
        .output()
        .await
        .expect("rabbitmqctl runs");
    assert!(output.status.success(), "{output:?}");
    let listing = String::from_utf8_lossy(&output.stdout);
    let mut closed = 0;
    for line in listing.lines().filter(|line| line.contains(name)) {
        let pid = line.split('\t').next().unwrap();
        let status = tokio::process::Command::new(rabbitmqctl())
            .args(["close_connection", pid, "closed by a test", "-q"])
            .status()
            .await
            .unwrap();
        assert!(status.success(), "closing {pid}");
        closed += 1;
    }
    closed
}

/// Deletes the test's queues and dead-letter exchange when dropped, even on panic.
pub struct QueueGuard(pub String);

impl Drop for QueueGuard {
    fn drop(&mut self) {
        let queue = self.0.clone();
        // A fresh runtime on a plain thread: Drop may run inside a runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let Ok(Ok(connection)) = tokio::time::timeout(
                    Duration::from_secs(3),
                    Connection::connect(&amqp_url(), ConnectionProperties::default()),
                )
                .await
                else {
                    return;
                };
                if let Ok(channel) = connection.create_channel().await {
                    for name in [queue.clone(), worker::topology::dead_letter_queue(&queue)] {
                        let _ = channel
                            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                            .await;
                    }
                    let dlx = worker::topology::dead_letter_exchange(&queue);
                    let _ = channel
                        .exchange_delete(dlx.as_str().into(), Default::default())
                        .await;
                }
                let _ = connection.close(200, "test cleanup".into()).await;
            });
        })
        .join();
    }
}

/// `rabbitmqctl` from PATH, else Debian's /usr/sbin (not on a non-root user's PATH).
fn rabbitmqctl() -> String {
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("rabbitmqctl").is_file())
    });
    if on_path {
        "rabbitmqctl".into()
    } else {
        "/usr/sbin/rabbitmqctl".into()
    }
}
