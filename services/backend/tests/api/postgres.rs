//! The backend on PostgreSQL: a private server (never the machine's) crashed and restarted in
//! the middle of a sale, and a backend that cannot reach its store at start-up.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backend::{Application, Config};
use clap::Parser;
use order_core::store::test_support::{
    PrivateServer, assert_refused_at_start, unreachable_store_url,
};
use order_core::{SaleConfig, Store, Strategy};

/// One answer a buyer got.
struct Answer {
    sent: Instant,
    latency: Duration,
    user: u64,
    status: u16,
    body: serde_json::Value,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_crash_mid_sale_gives_fast_503s_then_buys_again_and_loses_nothing() {
    const STOCK: u64 = 600;
    const CLIENTS: u64 = 16;
    let server = Arc::new(
        tokio::task::spawn_blocking(PrivateServer::start)
            .await
            .unwrap(),
    );
    let url = server.url("postgres");
    let app = Application::build(Config::parse_from([
        "backend",
        "--listen=127.0.0.1:0",
        &format!("--store={url}"),
        &format!("--stock={STOCK}"),
        "--strategy=row-lock",
        "--store-timeout-ms=2000",
    ]))
    .await
    .unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let answers = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let ordered = Arc::new(AtomicU64::new(0));
    let next_user = Arc::new(AtomicU64::new(1));
    let deadline = Instant::now() + Duration::from_secs(60);
    // Each client buys for new users until it is told the sale is sold out.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, base, answers) = (http.clone(), base.clone(), Arc::clone(&answers));
            let (ordered, next_user) = (Arc::clone(&ordered), Arc::clone(&next_user));
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let user = next_user.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    let response = http.get(format!("{base}/buy/{user}")).send().await;
                    let (status, body) = match response {
                        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or_default()),
                        Err(_) => (0, serde_json::Value::Null),
                    };
                    let outcome = body["outcome"].as_str().unwrap_or("").to_owned();
                    answers.lock().unwrap().push(Answer {
                        sent,
                        latency: sent.elapsed(),
                        user,
                        status,
                        body,
                    });
                    match (status, outcome.as_str()) {
                        (200, "sold_out") => return,
                        (200, "ordered") => {
                            ordered.fetch_add(1, Ordering::Relaxed);
                        }
                        // A client retrying after a 503, not a busy loop.
                        (503, _) => tokio::time::sleep(Duration::from_millis(20)).await,
                        _ => {}
                    }
                }
            })
        })
        .collect();

    // A third of the sale goes, then the server crashes and comes back 1.5 s later.
    while ordered.load(Ordering::Relaxed) < STOCK / 3 {
        assert!(Instant::now() < deadline, "the sale did not get going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let crash = Arc::clone(&server);
    tokio::task::spawn_blocking(move || crash.crash())
        .await
        .unwrap();
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let resume = Arc::clone(&server);
    tokio::task::spawn_blocking(move || resume.resume())
        .await
        .unwrap();
    let up_at = Instant::now();
    for client in clients {
        client.await.unwrap();
    }
    let _ = stop.send(());

    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let failed: Vec<&Answer> = answers.iter().filter(|a| a.status != 200).collect();
    let during_outage = failed
        .iter()
        .filter(|a| a.sent >= down_at && a.sent < up_at)
        .count();
    let slowest_failure = failed.iter().map(|a| a.latency).max().unwrap_or_default();
    let ordered_users: HashSet<u64> = answers
        .iter()
        .filter(|a| a.body["outcome"] == "ordered")
        .map(|a| a.user)
        .collect();
    let ordered_after = answers
        .iter()
        .filter(|a| a.sent >= up_at && a.body["outcome"] == "ordered")
        .count();
    eprintln!(
        "{} answers: {} failed ({during_outage} sent during the outage, slowest {slowest_failure:?}), \
         {} ordered ({ordered_after} after the restart)",
        answers.len(),
        failed.len(),
        ordered_users.len()
    );

    // Every failure is a fast 503 with a JSON reason; none is a hang or another status.
    for answer in &failed {
        assert_eq!(answer.status, 503, "{:?}", answer.body);
        assert!(answer.body["error"].is_string(), "{:?}", answer.body);
        assert!(
            answer.latency < Duration::from_secs(2),
            "{:?}",
            answer.latency
        );
    }
    assert!(during_outage > 0, "the outage was seen");
    assert!(ordered_after > 0, "buys succeed again after the restart");

    // Nothing lost, nothing oversold: the store, read after recovery, holds every buyer
    // told `ordered`, and exactly the stock.
    let store = Store::open(
        &url,
        SaleConfig {
            stock: STOCK,
            strategy: Strategy::RowLock,
        },
    )
    .await
    .unwrap();
    let state = store.sale().await.unwrap();
    let held: HashSet<u64> = store.order_user_ids().await.unwrap().into_iter().collect();
    assert!(
        ordered_users.is_subset(&held),
        "lost: {:?}",
        ordered_users.difference(&held).collect::<Vec<_>>()
    );
    assert_eq!((state.orders, state.oversold), (STOCK, 0), "{state:?}");
}

#[test]
fn a_backend_with_a_bad_or_unreachable_store_exits_non_zero_with_one_line() {
    let unreachable = format!("--store={}", unreachable_store_url());
    for (args, reason) in [
        (vec!["--store=mysql://db/x"], "unknown store scheme"),
        (vec![unreachable.as_str()], "Connection refused"),
        (
            vec!["--store=postgres://h/x?port=x"],
            "not a PostgreSQL URL",
        ),
        (
            vec!["--store=mongodb://127.0.0.1:1/x", "--strategy=row-lock"],
            "not offered on MongoDB",
        ),
    ] {
        let mut args = args.clone();
        args.push("--listen=127.0.0.1:0");
        assert_refused_at_start(env!("CARGO_BIN_EXE_backend"), "backend", &args, reason);
    }
}
