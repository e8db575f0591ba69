//! `spawn_scaled()`: a stack for the scale-out and admission tests: one backend, any number
//! of workers, a front tier, on one temporary store and one fresh queue, against a broker
//! list (a test cluster's, or the local broker), with the queue's type and length and the
//! front tier's confirm timeout chosen by the test. Extra front tiers and workers can join
//! the same store later ([`StackSpec::start_frontend`], [`StackSpec::start_worker`]).

use std::net::SocketAddr;

use clap::Parser;
use order_core::{Store, Strategy};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::helpers::{ADMIN_TOKEN, BrokerGuard, DEADLINE, amqp_url, unique};

#[derive(Clone)]
pub struct ScaledOptions {
    pub stock: u64,
    pub strategy: Strategy,
    pub workers: usize,
    /// Worker `--batch` (1: unbatched, with `prefetch`).
    pub batch: u16,
    /// Worker `--prefetch` when unbatched.
    pub prefetch: u16,
    /// Worker `--count-insert-pause-ms`: widens `count-insert`'s race window on demand.
    pub count_insert_pause_ms: u64,
    /// `classic` or `quorum`, for both sides.
    pub queue_type: &'static str,
    /// 0: unbounded.
    pub queue_max_length: u32,
    /// Broker URL list of the workers and the front tier; `None`: the local broker.
    pub amqp_url: Option<String>,
    pub timeout_ms: u64,
    pub confirm_timeout_ms: u64,
}

impl Default for ScaledOptions {
    fn default() -> Self {
        Self {
            stock: 100,
            strategy: Strategy::Conditional,
            workers: 1,
            batch: 1,
            prefetch: 1,
            count_insert_pause_ms: 0,
            queue_type: "classic",
            queue_max_length: 0,
            amqp_url: None,
            timeout_ms: 5000,
            confirm_timeout_ms: 2000,
        }
    }
}

/// A service task of the stack: stopped by [`Service::stop`], or with the test's runtime.
pub struct Service<T> {
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Service<T> {
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

/// A running front tier of the stack.
pub struct TestFrontend {
    pub addr: SocketAddr,
    pub rpc: frontend::rpc::RpcClient,
    pub service: Service<anyhow::Result<()>>,
}

/// A running worker of the stack.
pub struct TestWorker {
    pub consuming: tokio::sync::watch::Receiver<bool>,
    pub service: Service<anyhow::Result<()>>,
}

/// What a front tier or a worker joining the stack needs to know.
#[derive(Clone)]
pub struct StackSpec {
    pub backend_url: String,
    pub store_path: String,
    pub options: ScaledOptions,
}

pub struct ScaledStack {
    pub queue: String,
    pub store: Store,
    pub spec: StackSpec,
    pub frontend: TestFrontend,
    pub workers: Vec<TestWorker>,
    pub http: reqwest::Client,
    backend: Service<std::io::Result<()>>,
    _queue_guard: Option<BrokerGuard>,
    _dir: tempfile::TempDir,
}

pub async fn spawn_scaled(options: ScaledOptions) -> ScaledStack {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.db").display().to_string();
    let queue = unique("scaled");
    // On the local broker the queue outlives the test unless deleted; a test cluster's
    // queues go with the cluster.
    let queue_guard = options
        .amqp_url
        .is_none()
        .then(|| BrokerGuard::request_queue(&queue));
    let backend = backend::Application::build(backend::Config::parse_from([
        "backend",
        "--listen",
        "127.0.0.1:0",
        "--store",
        &store_path,
        "--admin-token",
        ADMIN_TOKEN,
        "--stock",
        &options.stock.to_string(),
        "--strategy",
        options.strategy.as_str(),
    ]))
    .await
    .expect("backend builds");
    let backend_url = format!("http://{}", backend.local_addr());
    let store = backend.store().clone();
    let backend = Service::spawn(|stop| backend.run_until(until_signalled(stop)));

    let amqp = options.amqp_url.clone().unwrap_or_else(amqp_url);
    let spec = StackSpec {
        backend_url,
        store_path,
        options,
    };
    let mut workers = Vec::new();
    for _ in 0..spec.options.workers {
        workers.push(spec.start_worker(&amqp, &queue).await);
    }
    let frontend = spec.start_frontend(&amqp, &queue).await;
    for worker in &mut workers {
        worker.wait_consuming().await;
    }
    wait_connected(&frontend.rpc).await;
    ScaledStack {
        queue,
        store,
        spec,
        frontend,
        workers,
        http: reqwest::Client::new(),
        backend,
        _queue_guard: queue_guard,
        _dir: dir,
    }
}

pub async fn wait_connected(rpc: &frontend::rpc::RpcClient) {
    let mut connected = rpc.connected();
    tokio::time::timeout(DEADLINE, connected.wait_for(|c| *c))
        .await
        .expect("front tier RPC link up in time")
        .unwrap();
}

impl TestWorker {
    pub async fn wait_consuming(&mut self) {
        tokio::time::timeout(DEADLINE, self.consuming.wait_for(|c| *c))
            .await
            .expect("worker consumes in time")
            .unwrap();
    }
}

impl TestFrontend {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl StackSpec {
    /// A front tier on this stack's backend, with `amqp_url` and `queue` (the stack's queue
    /// options); not waited for: see [`wait_connected`].
    pub async fn start_frontend(&self, amqp_url: &str, queue: &str) -> TestFrontend {
        let options = &self.options;
        let app = frontend::Application::build(frontend::Config::parse_from([
            "frontend",
            "--listen",
            "127.0.0.1:0",
            "--backend-url",
            &self.backend_url,
            "--amqp-url",
            amqp_url,
            "--queue",
            queue,
            "--queue-type",
            options.queue_type,
            "--queue-max-length",
            &options.queue_max_length.to_string(),
            "--timeout-ms",
            &options.timeout_ms.to_string(),
            "--confirm-timeout-ms",
            &options.confirm_timeout_ms.to_string(),
            "--connection-name",
            &unique("frontend"),
            "--connect-timeout-ms",
            "2000",
        ]))
        .await
        .expect("front tier builds");
        TestFrontend {
            addr: app.local_addr(),
            rpc: app.rpc().clone(),
            service: Service::spawn(|stop| app.run_until(until_signalled(stop))),
        }
    }

    /// A worker on this stack's store, with `amqp_url` and `queue` (the stack's queue and
    /// worker options); not waited for: see [`TestWorker::consuming`].
    pub async fn start_worker(&self, amqp_url: &str, queue: &str) -> TestWorker {
        let options = &self.options;
        let mut args = vec![
            "worker".to_owned(),
            "--amqp-url".into(),
            amqp_url.into(),
            "--queue".into(),
            queue.into(),
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
            options.count_insert_pause_ms.to_string(),
            "--connection-name".into(),
            unique("worker"),
            "--connect-timeout-ms".into(),
            "2000".into(),
        ];
        if options.batch == 1 {
            args.extend(["--prefetch".into(), options.prefetch.to_string()]);
        }
        let app = worker::Application::build(worker::Config::parse_from(args))
            .await
            .expect("worker builds");
        TestWorker {
            consuming: app.consuming(),
            service: Service::spawn(|stop| app.run_until(until_signalled(stop))),
        }
    }
}

impl ScaledStack {
    /// Stops the front tier, the workers and the backend, in that order; each must stop
    /// cleanly and in time.
    pub async fn shutdown(mut self) {
        self.frontend
            .service
            .stop()
            .await
            .expect("front tier stops cleanly");
        for worker in &mut self.workers {
            worker.service.stop().await.expect("worker stops cleanly");
        }
        self.backend.stop().await.expect("backend stops cleanly");
    }

    pub fn url(&self, path: &str) -> String {
        self.frontend.url(path)
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
