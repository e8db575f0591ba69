//! Broker plumbing for the integration tests of the worker and the front tier (feature
//! `test-support`, enabled only by their dev-dependencies): unique names, a cleanup guard for a
//! test's queues and exchanges, polling with a deadline, and closing one test's connections from the broker.
//! [`cluster`]: a real multi-node RabbitMQ cluster for one test, torn down when dropped.

pub mod cluster;

pub use cluster::TestCluster;

use std::time::Duration;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

use crate::topology;

/// The longest any test waits for something to happen.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// The broker the tests use: `FLASHSALE_TEST_AMQP_URL`, else the local RabbitMQ.
pub fn amqp_url() -> String {
    std::env::var("FLASHSALE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A unique name per test so that tests never share a queue, a connection name, or a store.
pub fn unique(prefix: &str) -> String {
    format!("test.{prefix}.{}", uuid::Uuid::new_v4().simple())
}

/// Polls `check` until it holds; panics naming `what` once [`DEADLINE`] has passed.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
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

/// Closes, from the broker's side, every connection whose `connection_name` is `name`:
/// only this test's connections, never those of tests running alongside.
/// Returns how many were closed.
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
    // Exactly this name (`"NAME"` in the client properties), not a longer one.
    let quoted = format!("\"{name}\"");
    for line in listing.lines().filter(|line| line.contains(&quoted)) {
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

/// Deletes a test's queues and exchanges from the local broker ([`amqp_url`]) when dropped,
/// even when the test panics, so runs do not pile durable queues and exchanges up in the
/// broker. Deleting one that was never declared does no harm.
#[derive(Default)]
pub struct BrokerGuard {
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl BrokerGuard {
    /// Guards the request queue `queue`: the queue, its dead-letter queue and exchange.
    pub fn request_queue(queue: &str) -> Self {
        Self {
            queues: vec![queue.to_owned(), topology::dead_letter_queue(queue)],
            exchanges: vec![topology::dead_letter_exchange(queue)],
        }
    }

    /// Also deletes the exchange `name` (a test's sale events exchange, say).
    pub fn exchange(mut self, name: &str) -> Self {
        self.exchanges.push(name.to_owned());
        self
    }
}

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut self.queues);
        let exchanges = std::mem::take(&mut self.exchanges);
        // A fresh runtime on a plain thread: Drop may run inside (or outside) a runtime.
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
                    for queue in &queues {
                        let _ = channel
                            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                            .await;
                    }
                    for exchange in &exchanges {
                        let _ = channel
                            .exchange_delete(exchange.as_str().into(), Default::default())
                            .await;
                    }
                }
                let _ = connection.close(200, "test cleanup".into()).await;
            });
        })
        .join();
    }
}
