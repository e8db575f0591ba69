//! A fresh PostgreSQL database per test (feature `test-support`): created on the server
//! named by `FLASHSALE_TEST_PG_URL` (default [`DEFAULT_SERVER`], the machine's own server,
//! which `bash .ci/run` starts), and dropped when the guard is dropped, also when the test
//! panics. Databases left by test processes that were killed (so never ran their drops)
//! are dropped by the next test process that creates one: their names carry the pid.

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::NoTls;

/// The server tests use when `FLASHSALE_TEST_PG_URL` is not set.
pub const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Every test database's name starts with this, then the test process's pid.
pub const PREFIX: &str = "flashsale_test_";

/// The URL of the server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("FLASHSALE_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_SERVER.to_owned())
}

/// `url` with its database replaced by `database` (the path of the URL; options kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (rest, query) = rest
        .split_once('?')
        .map_or((rest, None), |(r, q)| (r, Some(q)));
    let authority = rest
        .split_once('/')
        .map_or(rest, |(authority, _)| authority);
    match query {
        Some(q) => format!("{scheme}://{authority}/{database}?{q}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

/// A database of its own for one test; dropped (with `WITH (FORCE)`, which ends the
/// connections still open on it) when this guard is.
pub struct TestDatabase {
    /// The URL to give `--store`.
    pub url: String,
    pub name: String,
    server: String,
}

impl TestDatabase {
    /// Creates `flashsale_test_<pid>_<n>_<label>`. Panics (this is test plumbing) with what
    /// to do if the server does not answer.
    pub async fn create(label: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        static SWEEP: Once = Once::new();
        let server = server_url();
        let label: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(30)
            .collect();
        let name = format!(
            "{PREFIX}{}_{}_{label}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let admin = admin_connection(&server).await;
        if !SWEEP.is_completed() {
            drop_leftovers(&admin).await;
            SWEEP.call_once(|| ());
        }
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        Self {
            url: with_database(&server, &name),
            name,
            server,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Its own thread and runtime: a drop may run inside a runtime, which cannot block.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for dropping a test database");
            runtime.block_on(async {
                let admin = admin_connection(&server).await;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: dropping test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

async fn admin_connection(server: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(server, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {} does not answer ({e}): start it (bash .ci/run does) or set \
                 FLASHSALE_TEST_PG_URL",
                crate::redact::redact_url(server)
            )
        });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Drops the test databases of processes that no longer exist.
async fn drop_leftovers(admin: &tokio_postgres::Client) {
    let Ok(rows) = admin
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            &[&PREFIX],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name[PREFIX.len()..].split('_').next().unwrap_or("");
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let gone =
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists();
        if gone {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
}
