//! The worker on PostgreSQL: its store connections cut while it serves, and a store it cannot
//! reach at start-up.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use order_core::store::test_support::{
    TestDatabase, assert_refused_at_start, unreachable_store_url,
};
use order_core::{BuyResponse, Outcome, SaleConfig, Store, Strategy};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_postgres_connections_are_cut_answers_every_request_and_loses_nothing() {
    let database = TestDatabase::create("worker_cut").await;
    let queue = unique("pgcut");
    let _guard = BrokerGuard::request_queue(&queue);
    let _worker = spawn_worker(
        &queue,
        WorkerOptions {
            batch: 16,
            stock: 1_000_000,
            strategy: Strategy::RowLock,
            store_url: Some(database.url.clone()),
            ..Default::default()
        },
    )
    .await;
    let client = Arc::new(RpcClient::connect(&queue).await);
    let requesters: Vec<_> = (0..8u64)
        .map(|r| {
            let (client, queue) = (Arc::clone(&client), queue.clone());
            tokio::spawn(async move {
                let mut replies = Vec::new();
                for i in 1..=60 {
                    let user = r * 1_000 + i;
                    let body = serde_json::to_vec(&serde_json::json!({ "user_id": user })).unwrap();
                    let reply: serde_json::Value =
                        serde_json::from_slice(&client.call_raw(&queue, &body).await).unwrap();
                    replies.push((user, reply));
                }
                replies
            })
        })
        .collect();
    // Meanwhile every connection of the worker to the database is cut, three times.
    let (admin, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut cut = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let rows = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        cut += rows.len();
    }
    let mut replies = Vec::new();
    for requester in requesters {
        replies.extend(requester.await.unwrap());
    }

    // Every request was answered (call_raw waits a bounded time): an answer, or an error
    // reply with the store's reason.
    let mut ordered = HashSet::new();
    let mut failed = Vec::new();
    for (user, reply) in &replies {
        match serde_json::from_value::<BuyResponse>(reply.clone()) {
            Ok(answer) if answer.outcome == Outcome::Ordered => {
                ordered.insert(*user);
            }
            Ok(answer) => panic!("user {user}: {answer:?} in a sale that cannot sell out"),
            Err(_) => {
                let reason = reply["error"].as_str().unwrap_or_default();
                assert!(reason.starts_with("store"), "user {user}: {reply}");
                failed.push(*user);
            }
        }
    }
    eprintln!(
        "{} replies, {} errors, {cut} connections cut",
        replies.len(),
        failed.len()
    );
    assert!(cut > 0, "the worker's connections were cut");

    // The pool recovered by itself: each buyer who got an error buys again and is answered;
    // nobody holds two orders, and every buyer told `ordered` is held.
    for user in &failed {
        let answer = client.buy(&queue, *user).await;
        assert!(
            matches!(answer.outcome, Outcome::Ordered | Outcome::AlreadyOrdered),
            "{answer:?}"
        );
        ordered.insert(*user);
    }
    let initial = SaleConfig {
        stock: 1_000_000,
        strategy: Strategy::RowLock,
    };
    let store = Store::open(&database.url, initial).await.unwrap();
    let held: Vec<u64> = store.order_user_ids().await.unwrap();
    let distinct: HashSet<u64> = held.iter().copied().collect();
    assert_eq!(held.len(), distinct.len(), "no doubled order");
    assert_eq!(
        distinct, ordered,
        "every buyer told ordered is held, and only they"
    );
}

#[test]
fn a_worker_with_a_bad_or_unreachable_store_exits_non_zero_with_one_line() {
    let unreachable = format!("--store={}", unreachable_store_url());
    let queue = format!("--queue={}", unique("never"));
    for (store, reason) in [
        ("--store=ftp://x/y", "unknown store scheme"),
        (unreachable.as_str(), "Connection refused"),
    ] {
        let args = [store, queue.as_str()];
        assert_refused_at_start(env!("CARGO_BIN_EXE_worker"), "worker", &args, reason);
    }
}
