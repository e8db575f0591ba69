//! Real nginx with this repository's configuration in front of backend replicas, for tests
//! (feature `test-support`, enabled only by dev-dependencies): started on a free port through
//! `scripts/nginx-native.sh`, ready once a backend answers through it, stopped when dropped.

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// nginx in front of some backends; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Nginx {
    pub addr: SocketAddr,
    process: Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx in front of `backends` and waits (up to 15 s) until `/healthz` answers
    /// 200 through it. Panics if it does not: this is test plumbing.
    pub async fn start(backends: &[SocketAddr]) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/nginx-native.sh");
        let dir = tempfile::tempdir().unwrap();
        // A port the OS just handed out and released: free unless another process takes it
        // in the instant before nginx binds it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new("bash")
            .arg(script)
            .arg("--listen")
            .arg(port.to_string())
            .arg("--dir")
            .arg(dir.path())
            .args(backends.iter().map(ToString::to_string))
            .spawn()
            .expect(
                "scripts/nginx-native.sh starts (is nginx installed? bash .ci/run installs it)",
            );
        let nginx = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            process,
            _dir: dir,
        };
        let health = format!("{}/healthz", nginx.url());
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ready = client
                .get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return nginx;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not answer /healthz from a backend"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master (the script exec'd into it) then stops its
        // workers, which would otherwise outlive it holding the port.
        let _ = Command::new("kill")
            .args(["-TERM", &self.process.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
