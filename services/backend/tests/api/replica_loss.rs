//! Losing a backend replica in the middle of a sale is not a lost order: two backend
//! processes on one store behind real nginx, one killed with `kill -9` while buyers keep
//! buying through nginx.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backend::test_support::Nginx;
use order_core::{SaleConfig, Store, Strategy};

/// A backend process, killed when dropped.
struct Replica {
    addr: SocketAddr,
    process: Child,
}

impl Replica {
    async fn start(store: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let process = Command::new(env!("CARGO_BIN_EXE_backend"))
            .arg(format!("--listen={addr}"))
            .arg("--store")
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the backend binary starts");
        let replica = Self { addr, process };
        let deadline = Instant::now() + Duration::from_secs(15);
        while reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "backend {addr} did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        replica
    }

    fn kill(&mut self) {
        self.process.kill().expect("kill -9");
        let _ = self.process.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// One answer a buyer got: when (since the start), the HTTP status, and the outcome.
struct Answer {
    at: Duration,
    user: u64,
    status: u16,
    outcome: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_sale_loses_no_order_and_the_survivor_carries_the_sale() {
    const CLIENTS: u64 = 32;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    // Every buy writes: an order lost with the dead replica would show.
    let store = Store::open(
        path.to_str().unwrap(),
        SaleConfig {
            stock: 1_000_000,
            strategy: Strategy::Conditional,
        },
    )
    .await
    .unwrap();
    let mut doomed = Replica::start(&path).await;
    let survivor = Replica::start(&path).await;
    let nginx = Nginx::start(&[doomed.addr, survivor.addr]).await;

    let started = Instant::now();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let buyers: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (http, answers, base) = (http.clone(), Arc::clone(&answers), nginx.url());
            tokio::spawn(async move {
                let mut user = client * 1_000_000 + 1;
                while started.elapsed() < Duration::from_secs(3) {
                    let response = http.get(format!("{base}/buy/{user}")).send().await;
                    let (status, outcome) = match response {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body: serde_json::Value = r.json().await.unwrap_or_default();
                            (status, body["outcome"].as_str().map(str::to_owned))
                        }
                        Err(_) => (0, None),
                    };
                    answers.lock().unwrap().push(Answer {
                        at: started.elapsed(),
                        user,
                        status,
                        outcome,
                    });
                    user += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at = started.elapsed();
    doomed.kill();
    for buyer in buyers {
        buyer.await.unwrap();
    }

    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let errors: Vec<_> = answers.iter().filter(|a| a.status != 200).collect();
    let ordered: HashSet<u64> = answers
        .iter()
        .filter(|a| a.outcome.as_deref() == Some("ordered"))
        .map(|a| a.user)
        .collect();
    let rate = |from: Duration, to: Duration| {
        let n = answers
            .iter()
            .filter(|a| a.status == 200 && a.at >= from && a.at < to)
            .count();
        n as f64 / (to - from).as_secs_f64()
    };
    let before = rate(Duration::from_millis(500), killed_at);
    let after = rate(
        killed_at + Duration::from_millis(200),
        Duration::from_secs(3),
    );
    eprintln!(
        "{} answers, {} errors, {:.0} buys/s before the kill, {:.0} after",
        answers.len(),
        errors.len(),
        before,
        after
    );

    // At most the buys in flight at the kill can fail (nginx retries a refused connection
    // on the survivor, so usually none does).
    assert!(
        errors.len() as u64 <= CLIENTS,
        "{} errors, e.g. status {}",
        errors.len(),
        errors[0].status
    );
    assert!(
        errors.iter().all(|e| e.at >= killed_at),
        "nothing failed before the kill"
    );
    // Nothing lost, nothing oversold: every buyer told `ordered` is in the store.
    let held: HashSet<u64> = store.order_user_ids().await.unwrap().into_iter().collect();
    assert!(ordered.is_subset(&held), "an ordered buyer is missing");
    assert_eq!(store.sale().await.unwrap().oversold, 0);
    // The sale goes on at the survivor's rate.
    assert!(
        after > before * 0.25,
        "{after:.0}/s after the kill against {before:.0}/s before"
    );
}
