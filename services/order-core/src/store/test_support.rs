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

/// A PostgreSQL server of a test's own (never the machine's): `initdb` into a temporary
/// folder, its own free port on 127.0.0.1, trust authentication, `fsync` on. It can be
/// stopped (as a crash: `pg_ctl stop -m immediate`) and started again on the same port and
/// data; it is stopped and its folder removed when dropped, also when the test panics.
/// Run as root, the server runs as the `postgres` user (`initdb` refuses root).
pub struct PrivateServer {
    pub port: u16,
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    as_postgres: bool,
}

impl PrivateServer {
    /// Creates and starts the server. Blocking (a few seconds): call it from
    /// `spawn_blocking` in async tests. Panics with the tool's output if a step fails.
    pub fn start() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let bin = postgres_bin_dir();
        let dir = std::env::temp_dir().join(format!(
            "flashsale-pg-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("creating the server's folder");
        let as_postgres = running_as_root();
        if as_postgres {
            run(std::process::Command::new("chown")
                .arg("postgres:")
                .arg(&dir));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = Self {
            port,
            dir,
            bin,
            as_postgres,
        };
        let data = server.dir.join("data");
        server.pg(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--encoding=UTF8".as_ref(),
                // Only initdb's own files skip the flush; the server runs with fsync on.
                "--no-sync".as_ref(),
            ],
        );
        server.resume();
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server at once, as a crash would (`-m immediate`): open connections break,
    /// new ones are refused. Blocking.
    pub fn crash(&self) {
        let data = self.dir.join("data");
        self.pg(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
    }

    /// Starts the server (again), on the same port and data, and waits until it accepts
    /// connections (after crash recovery). Blocking.
    pub fn resume(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let settings = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on",
            self.port,
            self.dir.display()
        );
        self.pg(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                settings.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        );
    }

    fn pg(&self, tool: &str, args: &[&std::ffi::OsStr]) {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            std::process::Command::new(&program)
        };
        command.args(args).current_dir(&self.dir);
        run(&mut command);
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let mut command = if self.as_postgres {
            let mut command = std::process::Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            command
        } else {
            std::process::Command::new(self.bin.join("pg_ctl"))
        };
        let _ = command
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(command: &mut std::process::Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb` (Debian's layout), or the
/// folder of `pg_config --bindir`.
fn postgres_bin_dir() -> std::path::PathBuf {
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max();
    if let Some((_, bin)) = debian {
        return bin;
    }
    let output = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("PostgreSQL's server tools (initdb, pg_ctl): apt-get install postgresql");
    std::path::PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// A store URL nothing answers at (a port just handed out by the OS and released), with a
/// password that must never be shown: `postgres://app:hunter2@127.0.0.1:<port>/flashsale`.
pub fn unreachable_store_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("postgres://app:{UNREACHABLE_PASSWORD}@127.0.0.1:{port}/flashsale")
}

/// The password in [`unreachable_store_url`].
pub const UNREACHABLE_PASSWORD: &str = "hunter2";

/// Runs the service binary `program` (named `name`) with `args` and checks that it refuses
/// to start as an operator needs: a non-zero exit within 10 s, and exactly one error line,
/// `<name>: error: ...`, that contains `reason` and no password.
pub fn assert_refused_at_start(program: &str, name: &str, args: &[&str], reason: &str) {
    let started = std::time::Instant::now();
    let output = std::process::Command::new(program)
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} started");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
    assert!(
        errors[0].starts_with(&format!("{name}: error: ")),
        "{stderr}"
    );
    assert!(errors[0].contains(reason), "{args:?}: {stderr}");
    assert!(!stderr.contains(UNREACHABLE_PASSWORD), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{args:?} took {:?}",
        started.elapsed()
    );
}
