//! Starting a worker on its own queue and store, a minimal RPC client, and broker plumbing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use order_core::{BuyResponse, Store, Strategy};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use worker::{Application, Config};

pub use queue_contract::test_support::*;

pub struct TestWorker {
    pub store: Store,
    pub connection_name: String,
    pub health_addr: Option<std::net::SocketAddr>,
    pub consuming: watch::Receiver<bool>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

pub struct WorkerOptions {
    pub prefetch: u16,
    /// `--batch` (1: unbatched, with `prefetch`).
    pub batch: u16,
    /// The store file; `None`: a fresh one in the worker's temporary directory.
    pub store: Option<std::path::PathBuf>,
    /// A store URL (e.g. a PostgreSQL test database); wins over `store`.
    pub store_url: Option<String>,
    pub stock: u64,
    pub strategy: Strategy,
    pub amqp_url: String,
    pub health: bool,
    pub wait_until_consuming: bool,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            prefetch: 1,
            batch: 1,
            store: None,
            store_url: None,
            stock: 100,
            strategy: Strategy::CountInsert,
            amqp_url: amqp_url(),
            health: false,
            wait_until_consuming: true,
        }
    }
}

pub async fn spawn_worker(queue: &str, options: WorkerOptions) -> TestWorker {
    let dir = tempfile::tempdir().unwrap();
    let connection_name = unique("worker");
    let prefetch = options.prefetch.to_string();
    let batch = options.batch.to_string();
    let stock = options.stock.to_string();
    let store = options.store_url.clone().unwrap_or_else(|| {
        let path = options
            .store
            .clone()
            .unwrap_or_else(|| dir.path().join("store.db"));
        path.to_str().unwrap().to_owned()
    });
    let mut args = vec![
        "worker",
        "--amqp-url",
        &options.amqp_url,
        "--queue",
        queue,
        "--batch",
        &batch,
        "--store",
        &store,
        "--stock",
        &stock,
        "--strategy",
        options.strategy.as_str(),
        "--connection-name",
        &connection_name,
        "--connect-timeout-ms",
        "2000",
    ];
    if options.batch == 1 {
        args.extend(["--prefetch", &prefetch]);
    }
    if options.health {
        args.extend(["--health-listen", "127.0.0.1:0"]);
    }
    let config = <Config as clap::Parser>::parse_from(args);
    let app = Application::build(config).await.expect("worker builds");
    let store = app.store().clone();
    let health_addr = app.health_addr();
    let mut consuming = app.consuming();
    let (shutdown, stop) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stop.await;
    }));
    if options.wait_until_consuming {
        tokio::time::timeout(DEADLINE, consuming.wait_for(|c| *c))
            .await
            .expect("worker starts consuming in time")
            .unwrap();
    }
    TestWorker {
        store,
        connection_name,
        health_addr,
        consuming,
        shutdown: Some(shutdown),
        task: Some(task),
        _dir: dir,
    }
}

impl TestWorker {
    /// Asks the worker to stop and waits (bounded) until `run_until` has returned.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("worker stops in time")
                .unwrap()
                .unwrap();
        }
    }

    pub async fn wait_consuming(&mut self, value: bool) {
        tokio::time::timeout(DEADLINE, self.consuming.wait_for(|c| *c == value))
            .await
            .unwrap_or_else(|_| panic!("worker consuming={value} in time"))
            .unwrap();
    }
}

/// A requester: one connection, one exclusive reply queue, replies matched by correlation id.
pub struct RpcClient {
    /// Held so the connection stays open as long as the client.
    _connection: Connection,
    pub channel: Channel,
    reply_queue: String,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>,
}

impl RpcClient {
    pub async fn connect(queue: &str) -> Self {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        queue_contract::topology::declare_request_queue(
            &channel,
            &queue_contract::topology::RequestQueue::classic(queue),
        )
        .await
        .unwrap();
        let (reply, mut replies) = queue_contract::topology::declare_reply_queue(&channel)
            .await
            .unwrap();
        let pending: Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>> = Arc::default();
        let map = Arc::clone(&pending);
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = replies.next().await {
                let id = delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                if let Some(tx) = map.lock().unwrap().remove(&id) {
                    let _ = tx.send(delivery.data);
                }
            }
        });
        Self {
            _connection: connection,
            channel,
            reply_queue: reply.name().to_string(),
            pending,
        }
    }

    /// Publishes `body` with the usual properties and waits for the reply's body.
    pub async fn call_raw(&self, queue: &str, body: &[u8]) -> Vec<u8> {
        let rx = self.call_raw_later(queue, body.to_vec()).await;
        tokio::time::timeout(DEADLINE, rx)
            .await
            .expect("reply in time")
            .unwrap()
    }

    /// Publishes `body` with the usual properties; the receiver gets the reply's body.
    pub async fn call_raw_later(&self, queue: &str, body: Vec<u8>) -> oneshot::Receiver<Vec<u8>> {
        let id = unique("rpc");
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id.clone(), tx);
        self.publish(
            queue,
            &body,
            BasicProperties::default()
                .with_reply_to(self.reply_queue.as_str().into())
                .with_correlation_id(id.as_str().into()),
        )
        .await;
        rx
    }

    pub async fn buy(&self, queue: &str, user: u64) -> BuyResponse {
        let body =
            serde_json::to_vec(&queue_contract::message::BuyRequest { user_id: user }).unwrap();
        let reply = self.call_raw(queue, &body).await;
        serde_json::from_slice(&reply)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&reply)))
    }

    pub async fn publish(&self, queue: &str, body: &[u8], properties: BasicProperties) {
        self.channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Ready messages in `queue` right now.
    pub async fn message_count(&self, queue: &str) -> u32 {
        queue_contract::test_support::message_count(queue).await
    }
}
