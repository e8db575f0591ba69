//! `spawn_stack()`: a backend, any number of workers and a front tier on one temporary store
//! and one fresh queue, against the local broker or a test cluster's broker list. The options
//! choose the sale, the workers' batching, the queue's type and length (for both sides), the
//! front tier's timeouts, gate and extra flags, and real nginx in front of two backend
//! replicas. More front tiers and workers can join a running stack
//! ([`StackSpec::start_frontend`], [`StackSpec::start_worker`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use clap::Parser;
use order_core::metrics::test_support::sample;
use order_core::{Store, Strategy};
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub use backend::test_support::Nginx;
pub use queue_contract::test_support::*;

/// A spawned service: stop it (bounded) or let the test end.
pub struct Running<T> {
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Running<T> {
    fn spawn<F>(run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
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

#[derive(Clone)]
pub struct StackOptions {
    pub stock: u64,
    pub strategy: Strategy,
    /// How many workers start with the stack (0: none, so MQ buys wait in the queue).
    pub workers: usize,
    /// The workers' `--batch` (1: unbatched, with `prefetch`).
    pub batch: u16,
    /// The workers' `--prefetch` when unbatched.
    pub prefetch: u16,
    /// The workers' `--count-insert-pause-ms`: widens `count-insert`'s race window on the
    /// MQ route.
    pub worker_count_insert_pause_ms: u64,
    /// The backends' `--count-insert-pause-ms`: holds every count-insert buy of the HTTP
    /// route this long.
    pub backend_count_insert_pause_ms: u64,
    /// `classic` or `quorum`, for both sides.
    pub queue_type: &'static str,
    /// The request queue's maximum length, for both sides (0: unbounded).
    pub queue_max_length: u32,
    /// Broker URL list of the workers and the front tier; `None`: the local broker.
    pub amqp_url: Option<String>,
    /// The front tier's own broker URL (one nothing listens on, say); `None`: `amqp_url`.
    /// The stack does not wait for such a front tier's RPC link.
    pub frontend_amqp_url: Option<String>,
    /// Front tier's backend URL; `None` means the stack's own backend (or its nginx).
    pub backend_url: Option<String>,
    pub default_route: &'static str,
    pub timeout_ms: u64,
    pub confirm_timeout_ms: u64,
    /// Put real nginx (`scripts/nginx-native.sh`) in front of two backend replicas on the
    /// stack's store, and point the front tier at it, as the native stack and compose do.
    pub via_nginx: bool,
    /// The front tier's sold-out gate.
    pub gate: bool,
    pub gate_recheck_ms: u64,
    /// The front tier's `--target-wait-ms`. 0 (off) unless a test is about it: the other
    /// tests send all their buyers at once to check what the store decides, and a limit
    /// learned from a debug build's rate would refuse some of them.
    pub target_wait_ms: u64,
    /// More options for the front tier (e.g. `--max-in-flight-http=10`).
    pub frontend_args: Vec<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            stock: 100,
            strategy: Strategy::CountInsert,
            workers: 1,
            batch: 1,
            prefetch: 1,
            worker_count_insert_pause_ms: 0,
            backend_count_insert_pause_ms: 0,
            queue_type: "classic",
            queue_max_length: 0,
            amqp_url: None,
            frontend_amqp_url: None,
            backend_url: None,
            default_route: "http",
            timeout_ms: 5000,
            confirm_timeout_ms: 2000,
            via_nginx: false,
            gate: false,
            gate_recheck_ms: 1000,
            target_wait_ms: 0,
            frontend_args: Vec::new(),
        }
    }
}

/// What a front tier or a worker joining the stack needs to know. To put one on another
/// broker or queue, change a copy: `StackSpec { amqp_url, ..stack.spec.clone() }`.
#[derive(Clone)]
pub struct StackSpec {
    /// The front tier's backend: the stack's own, its nginx, or the test's.
    pub backend_url: String,
    pub store_path: String,
    /// The workers' broker URL list, and the front tier's unless the options give it its own.
    pub amqp_url: String,
    pub queue: String,
    pub events_exchange: String,
    pub options: StackOptions,
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

/// A running worker.
pub struct Worker {
    /// Its RabbitMQ connection name.
    pub connection: String,
    pub consuming: watch::Receiver<bool>,
    /// Its health listener (`/healthz`, `/metrics`).
    pub health: Option<SocketAddr>,
    pub running: Running<anyhow::Result<()>>,
}

pub struct TestStack {
    pub store: Store,
    pub spec: StackSpec,
    pub frontend: Frontend,
    pub workers: Vec<Worker>,
    /// The backend's own address (not through nginx).
    pub backend_addr: SocketAddr,
    pub backend: Running<std::io::Result<()>>,
    pub http: reqwest::Client,
    /// The second backend replica and nginx, with `via_nginx`: held so that they run as long
    /// as the stack, and stop when it is dropped.
    _replica: Option<Running<std::io::Result<()>>>,
    _nginx: Option<Nginx>,
    _broker_guard: Option<BrokerGuard>,
    _dir: tempfile::TempDir,
}

pub async fn spawn_stack(options: StackOptions) -> TestStack {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.db").display().to_string();
    let queue = unique("frontend");
    let events_exchange = unique("events");
    // On the local broker the queue and the exchange outlive the test unless deleted; a
    // test cluster's go with the cluster.
    let broker_guard = options
        .amqp_url
        .is_none()
        .then(|| BrokerGuard::request_queue(&queue).exchange(&events_exchange));

    let backend = start_backend(&store_path, &options).await;
    let backend_addr = backend.local_addr();
    let store = backend.store().clone();
    let backend = Running::spawn(|stop| backend.run_until(until_signalled(stop)));
    let (replica, nginx) = if options.via_nginx {
        let replica = start_backend(&store_path, &options).await;
        let nginx = Nginx::start(&[backend_addr, replica.local_addr()]).await;
        let replica = Running::spawn(|stop| replica.run_until(until_signalled(stop)));
        (Some(replica), Some(nginx))
    } else {
        (None, None)
    };

    let backend_url = match (&options.backend_url, &nginx) {
        (Some(url), _) => url.clone(),
        (None, Some(nginx)) => nginx.url(),
        (None, None) => format!("http://{backend_addr}"),
    };
    let spec = StackSpec {
        backend_url,
        store_path,
        amqp_url: options.amqp_url.clone().unwrap_or_else(amqp_url),
        queue,
        events_exchange,
        options,
    };
    let mut workers = Vec::new();
    for _ in 0..spec.options.workers {
        workers.push(spec.start_worker().await);
    }
    let frontend = spec.start_frontend().await;
    if spec.options.frontend_amqp_url.is_none() {
        frontend.wait_connected().await;
    }
    for worker in &workers {
        worker.wait_consuming().await;
    }
    TestStack {
        store,
        spec,
        frontend,
        workers,
        backend_addr,
        backend,
        http: reqwest::Client::new(),
        _replica: replica,
        _nginx: nginx,
        _broker_guard: broker_guard,
        _dir: dir,
    }
}

async fn start_backend(store_path: &str, options: &StackOptions) -> backend::Application {
    backend::Application::build(backend::Config::parse_from([
        "backend",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store_path,
        "--admin-token",
        ADMIN_TOKEN,
        "--stock",
        &options.stock.to_string(),
        "--strategy",
        options.strategy.as_str(),
        "--count-insert-pause-ms",
        &options.backend_count_insert_pause_ms.to_string(),
    ]))
    .await
    .expect("backend builds")
}

impl StackSpec {
    /// A front tier on this stack's backend, broker and queue (the stack's queue and front
    /// tier options); not waited for: see [`Frontend::wait_connected`].
    pub async fn start_frontend(&self) -> Frontend {
        let options = &self.options;
        let connection = unique("frontend");
        let amqp_url = options.frontend_amqp_url.as_ref().unwrap_or(&self.amqp_url);
        let mut args: Vec<String> = [
            "frontend",
            "--listen",
            "127.0.0.1:0",
            "--backend-url",
            &self.backend_url,
            "--amqp-url",
            amqp_url,
            "--queue",
            &self.queue,
            "--queue-type",
            options.queue_type,
            "--queue-max-length",
            &options.queue_max_length.to_string(),
            "--events-exchange",
            &self.events_exchange,
            "--sold-out-gate",
            if options.gate { "on" } else { "off" },
            "--gate-recheck-ms",
            &options.gate_recheck_ms.to_string(),
            "--default-route",
            options.default_route,
            "--timeout-ms",
            &options.timeout_ms.to_string(),
            "--confirm-timeout-ms",
            &options.confirm_timeout_ms.to_string(),
            "--target-wait-ms",
            &options.target_wait_ms.to_string(),
            "--connection-name",
            &connection,
            "--connect-timeout-ms",
            "2000",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        args.extend(options.frontend_args.iter().cloned());
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

    /// A worker on this stack's store, broker and queue (the stack's queue and worker
    /// options); not waited for: see [`Worker::wait_consuming`].
    pub async fn start_worker(&self) -> Worker {
        let options = &self.options;
        let connection = unique("worker");
        let mut args = vec![
            "worker".to_owned(),
            "--amqp-url".into(),
            self.amqp_url.clone(),
            "--queue".into(),
            self.queue.clone(),
            "--queue-type".into(),
            options.queue_type.into(),
            "--queue-max-length".into(),
            options.queue_max_length.to_string(),
            "--batch".into(),
            options.batch.to_string(),
            "--store".into(),
            self.store_path.clone(),
            "--stock".into(),
            options.stock.to_string(),
            "--strategy".into(),
            options.strategy.as_str().into(),
            "--count-insert-pause-ms".into(),
            options.worker_count_insert_pause_ms.to_string(),
            "--connection-name".into(),
            connection.clone(),
            "--connect-timeout-ms".into(),
            "2000".into(),
            "--health-listen".into(),
            "127.0.0.1:0".into(),
        ];
        if options.batch == 1 {
            args.extend(["--prefetch".into(), options.prefetch.to_string()]);
        }
        let app = worker::Application::build(worker::Config::parse_from(args))
            .await
            .expect("worker builds");
        Worker {
            connection,
            consuming: app.consuming(),
            health: app.health_addr(),
            running: Running::spawn(|stop| app.run_until(until_signalled(stop))),
        }
    }
}

impl Frontend {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn wait_connected(&self) {
        let mut connected = self.rpc.connected();
        tokio::time::timeout(DEADLINE, connected.wait_for(|c| *c))
            .await
            .expect("front tier RPC link up in time")
            .unwrap();
    }
}

impl Worker {
    pub async fn wait_consuming(&self) {
        let mut consuming = self.consuming.clone();
        tokio::time::timeout(DEADLINE, consuming.wait_for(|c| *c))
            .await
            .expect("worker consumes in time")
            .unwrap();
    }
}

impl TestStack {
    pub fn url(&self, path: &str) -> String {
        self.frontend.url(path)
    }

    /// The stack's request queue.
    pub fn queue(&self) -> &str {
        &self.spec.queue
    }

    /// GET a path of the front tier: status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        get_json(&self.http, &self.url(path)).await
    }

    /// Every buyer of `users` at once through `/mq/buy`: each answer's status and body.
    pub async fn buy_all(&self, users: impl IntoIterator<Item = u64>) -> Vec<(u16, Value)> {
        futures_util::future::join_all(
            users
                .into_iter()
                .map(|user| async move { self.get(&format!("/mq/buy?user={user}")).await }),
        )
        .await
    }

    /// The buyers the store holds an order for.
    pub async fn held_users(&self) -> BTreeSet<u64> {
        self.store
            .order_user_ids()
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    /// Stops the front tier, the workers and the backend, in that order; each must stop
    /// cleanly and in time.
    pub async fn shutdown(mut self) {
        self.frontend
            .running
            .stop()
            .await
            .expect("front tier stops cleanly");
        for worker in &mut self.workers {
            worker.running.stop().await.expect("worker stops cleanly");
        }
        self.backend.stop().await.expect("backend stops cleanly");
    }
}

/// GET `url`: status and JSON body (panics if the body is not JSON).
pub async fn get_json(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{url}: {status} {text:?} is not JSON: {e}"));
    (status, body)
}

/// How many answers are 200 with this outcome.
pub fn count_outcome(answers: &[(u16, Value)], outcome: &str) -> usize {
    answers
        .iter()
        .filter(|(status, body)| *status == 200 && body["outcome"] == outcome)
        .count()
}

/// The buyers answered 200 `ordered`.
pub fn ordered_users(answers: &[(u16, Value)]) -> BTreeSet<u64> {
    answers
        .iter()
        .filter(|(status, body)| *status == 200 && body["outcome"] == "ordered")
        .map(|(_, body)| body["user_id"].as_u64().unwrap())
        .collect()
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
