//! A real RabbitMQ cluster for a test: `scripts/rabbit-cluster.sh` with the test's own
//! directory, ports and node names, so tests running alongside (and CI, and the machine's
//! own node on :5672) never collide. [`TestCluster`] is a guard: dropping it, even while a
//! failed test unwinds, runs `rabbit-cluster.sh down`, so no node outlives its test.
//!
//! A cluster takes tens of seconds to start on a small machine: start one per test and
//! run a test's scenarios on it in turn.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

use tokio::process::Command;

/// The script, found from this crate's directory (`services/queue-contract`).
fn script() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/rabbit-cluster.sh"
    ))
}

/// Ports a cluster may use: AMQP from the base, distribution from base + 100, CLI tools
/// base + 200 .. base + 299. Kept below Linux's ephemeral range (32768 and up), above the
/// services' fixed ports.
const BASE_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Three (or `nodes`) local RabbitMQ nodes joined into one cluster, down when dropped.
pub struct TestCluster {
    nodes: usize,
    base_port: u16,
    name: String,
    dir: tempfile::TempDir,
    urls: String,
}

impl TestCluster {
    /// Starts a cluster of `nodes` nodes and waits until every node runs and is clustered.
    /// Panics (and tears down what started) if it does not come up.
    pub async fn start(nodes: usize) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // The nodes run as the rabbitmq user when the tests run as root: let it in.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("making the cluster directory reachable");
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut cluster = Self {
            nodes,
            base_port: free_base_port(),
            name: format!("t{}", &id[..10]),
            dir,
            urls: String::new(),
        };
        // From here on, a panic drops `cluster`, which runs `down`.
        let output = cluster.run(&["up"]).await;
        let urls = String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned();
        assert!(
            urls.starts_with("amqp://"),
            "no URL list from up: {output:?}"
        );
        cluster.urls = urls;
        cluster
    }

    /// The AMQP URLs of every node, comma-separated, for `--amqp-url`.
    pub fn urls(&self) -> &str {
        &self.urls
    }

    /// The URLs in the order `first`, then the others: the first is the one a client tries
    /// first.
    pub fn urls_starting_with(&self, first: usize) -> String {
        let mut order: Vec<usize> = vec![first];
        order.extend((1..=self.nodes).filter(|&n| n != first));
        order
            .into_iter()
            .map(|n| self.url(n))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `n`'s URL (1-based).
    pub fn url(&self, n: usize) -> String {
        self.urls
            .split(',')
            .nth(n - 1)
            .expect("a node of the cluster")
            .to_owned()
    }

    /// Node `n`'s name (1-based), e.g. `t0123456789-2@localhost`.
    pub fn node_name(&self, n: usize) -> String {
        format!("{}-{n}@localhost", self.name)
    }

    /// The number of the node that leads quorum queue `queue` now.
    pub async fn leader(&self, queue: &str) -> usize {
        let output = self.run(&["leader", queue]).await;
        let leader = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        (1..=self.nodes)
            .find(|&n| self.node_name(n) == leader)
            .unwrap_or_else(|| panic!("{leader:?} is not a node of this cluster"))
    }

    /// What the surviving nodes say of queue `queue` (leader, members, consumers, messages),
    /// for a failing test's message: never panics, a failure to ask is the answer.
    pub async fn queue_status(&self, queue: &str) -> String {
        let output = self
            .command(&[
                "ctl",
                "list_queues",
                "name",
                "leader",
                "online",
                "consumers",
                "messages_ready",
                "messages_unacknowledged",
            ])
            .output()
            .await;
        match output {
            Ok(output) => String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|line| line.starts_with(queue))
                .collect::<Vec<_>>()
                .join("; "),
            Err(error) => format!("rabbit-cluster.sh ctl list_queues: {error}"),
        }
    }

    /// `kill -9` of node `n`'s Erlang VM: a crash, not a shutdown.
    pub async fn kill(&self, n: usize) {
        self.run(&["kill", &n.to_string()]).await;
    }

    /// Starts node `n` again and waits until it is back in the cluster.
    pub async fn start_node(&self, n: usize) {
        self.run(&["start", &n.to_string()]).await;
    }

    /// Runs the script with this cluster's options; panics if it fails.
    async fn run(&self, args: &[&str]) -> Output {
        let output = self
            .command(args)
            .output()
            .await
            .expect("scripts/rabbit-cluster.sh runs");
        assert!(
            output.status.success(),
            "rabbit-cluster.sh {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// The script with this cluster's options, then `args`: options first, since `ctl`
    /// passes everything after it to rabbitmqctl.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("bash");
        command.arg(script()).args(self.options()).args(args);
        command
    }

    fn options(&self) -> Vec<String> {
        vec![
            "--nodes".into(),
            self.nodes.to_string(),
            "--base-port".into(),
            self.base_port.to_string(),
            "--name".into(),
            self.name.clone(),
            "--dir".into(),
            self.dir.path().join("cluster").display().to_string(),
        ]
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // Blocking, on purpose: the nodes must be gone before the test's process moves on
        // (or exits). std's Command, since Drop may run outside a runtime.
        let result = std::process::Command::new("bash")
            .arg(script())
            .arg("down")
            .args(self.options())
            .output();
        match result {
            Ok(output) if output.status.success() => {}
            other => eprintln!("rabbit-cluster.sh down failed: {other:?}"),
        }
    }
}

/// A base port whose AMQP and distribution ports are free now (checked by binding them).
/// Random within [`BASE_PORTS`], so that parallel tests rarely even try the same one.
fn free_base_port() -> u16 {
    let slots = (BASE_PORTS.end - BASE_PORTS.start - 300) / 300;
    for _ in 0..50 {
        let slot = (uuid::Uuid::new_v4().as_u128() % u128::from(slots)) as u16;
        let base = BASE_PORTS.start + slot * 300;
        let free = (0..10)
            .flat_map(|i| [base + i, base + 100 + i])
            .all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free ports for a test cluster in {BASE_PORTS:?}");
}
