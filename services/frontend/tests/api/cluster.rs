//! Beyond one broker node: a real three-node RabbitMQ cluster (`scripts/rabbit-cluster.sh`
//! with the test's own ports and directory, torn down by its guard even when the test
//! fails), a quorum request queue, and the kill of a node in the middle of a sale.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use order_core::Strategy;
use serde_json::Value;

use crate::helpers::*;

/// The front tier's buy timeout in these tests: every failed request must be answered
/// within it (plus scheduling slack on a loaded machine).
const TIMEOUT: Duration = Duration::from_millis(5000);
const SLACK: Duration = Duration::from_millis(1500);
const CONFIRM_TIMEOUT: Duration = Duration::from_millis(2000);

/// One HTTP answer to a buy: status (0: no answer at all) and how long it took.
#[derive(Debug)]
struct Attempt {
    status: u16,
    elapsed: Duration,
    body: Value,
}

/// A buyer who retries a 5xx (after 100 ms), as a flash-sale client would, until a 200 or
/// 30 s: its attempts, the last one its final answer.
async fn buyer(http: reqwest::Client, url: String) -> Vec<Attempt> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempts = Vec::new();
    loop {
        let started = Instant::now();
        let attempt = match http.get(&url).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.json().await.unwrap_or(Value::Null);
                Attempt {
                    status,
                    elapsed: started.elapsed(),
                    body,
                }
            }
            Err(error) => Attempt {
                status: 0,
                elapsed: started.elapsed(),
                body: Value::String(error.to_string()),
            },
        };
        let done = attempt.status == 200 || Instant::now() > deadline;
        attempts.push(attempt);
        if done {
            return attempts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `users` buy through `url`, `concurrency` at a time; `answered` counts the buyers done.
async fn run_buyers(
    frontend: String,
    users: std::ops::RangeInclusive<u64>,
    concurrency: usize,
    answered: Arc<AtomicUsize>,
) -> Vec<(u64, Vec<Attempt>)> {
    // A client that gives up well after the front tier should have answered: a request that
    // reaches this bound is a hang, and shows as status 0.
    let http = reqwest::Client::builder()
        .timeout(TIMEOUT + SLACK * 2)
        .build()
        .unwrap();
    futures_util::stream::iter(users)
        .map(|user| {
            let http = http.clone();
            let url = format!("{frontend}/mq/buy?user={user}");
            let answered = Arc::clone(&answered);
            async move {
                let attempts = buyer(http, url).await;
                answered.fetch_add(1, Ordering::Relaxed);
                (user, attempts)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_that_leads_the_quorum_queue_mid_sale_loses_and_oversells_nothing() {
    const BUYERS: u64 = 2000;
    const STOCK: u64 = 1000;
    let cluster = TestCluster::start(3).await;
    let stack = spawn_stack(StackOptions {
        stock: STOCK,
        strategy: Strategy::Conditional,
        workers: 1,
        batch: 64,
        queue_type: "quorum",
        amqp_url: Some(cluster.urls().into()),
        timeout_ms: TIMEOUT.as_millis() as u64,
        confirm_timeout_ms: CONFIRM_TIMEOUT.as_millis() as u64,
        ..Default::default()
    })
    .await;
    let leader = cluster.leader(stack.queue()).await;

    // Act: 2,000 buyers, 50 at a time; the leader's node is killed once 500 are served,
    // while half the stock is still unsold.
    let answered = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(run_buyers(
        stack.url(""),
        1..=BUYERS,
        50,
        Arc::clone(&answered),
    ));
    eventually("500 buyers are served", || async {
        answered.load(Ordering::Relaxed) >= 500
    })
    .await;
    cluster.kill(leader).await;
    let killed_at = Instant::now();
    let orders_at_kill = stack.store.sale().await.unwrap().orders;

    // Both services serve again through the surviving nodes: a probe buyer (one more
    // buyer, who asks again every 100 ms) is answered.
    let probe = BUYERS + 1;
    let http = reqwest::Client::builder()
        .timeout(TIMEOUT + SLACK)
        .build()
        .unwrap();
    let probe_answer = loop {
        let url = stack.url(&format!("/mq/buy?user={probe}"));
        let (status, body) = match http.get(&url).send().await {
            Ok(answer) => (
                answer.status().as_u16(),
                answer.json().await.unwrap_or(Value::Null),
            ),
            Err(error) => (0, Value::String(error.to_string())),
        };
        if status == 200 {
            break body;
        }
        if killed_at.elapsed() >= Duration::from_secs(10) {
            // Seen once under CI's load: 504s (no reply within the timeout) for the whole
            // 10 s, both services connected. Say what the broker holds, for next time.
            let queue = cluster.queue_status(stack.queue()).await;
            panic!(
                "the MQ route did not serve again within 10 s of the kill: {status} {body}; \
                 front tier connected: {}, worker consuming: {}; the queue (name, leader, \
                 online, consumers, ready, unacked): {queue}",
                stack.frontend.rpc.is_connected(),
                *stack.workers[0].consuming.borrow(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recovered_in = killed_at.elapsed();
    let buyers = tokio::time::timeout(Duration::from_secs(120), load)
        .await
        .expect("the buyers finish")
        .unwrap();

    // Assert.
    assert!(
        orders_at_kill < STOCK,
        "the kill came after the sale ({orders_at_kill} orders): not mid-sale"
    );
    let attempts: Vec<&Attempt> = buyers.iter().flat_map(|(_, a)| a).collect();
    let failed: Vec<&&Attempt> = attempts.iter().filter(|a| a.status != 200).collect();
    for attempt in &failed {
        assert!(
            (500..600).contains(&attempt.status),
            "a failed request must be a 5xx, never a hang: {attempt:?}"
        );
        assert!(
            attempt.elapsed <= TIMEOUT + SLACK,
            "a failed request must be answered within the timeout: {attempt:?}"
        );
    }
    let unanswered: Vec<_> = buyers
        .iter()
        .filter(|(_, a)| a.last().is_none_or(|last| last.status != 200))
        .map(|(user, _)| user)
        .collect();
    assert!(unanswered.is_empty(), "buyers never served: {unanswered:?}");
    let winners: BTreeSet<u64> = buyers
        .iter()
        .filter(|(_, a)| {
            let outcome = &a.last().unwrap().body["outcome"];
            outcome == "ordered" || outcome == "already_ordered"
        })
        .map(|(user, _)| *user)
        .chain(
            (probe_answer["outcome"] == "ordered" || probe_answer["outcome"] == "already_ordered")
                .then_some(probe),
        )
        .collect();
    let sale = stack.store.sale().await.unwrap();
    assert_eq!((sale.orders, sale.oversold), (STOCK, 0), "{sale:?}");
    let held = stack.held_users().await;
    let lost: Vec<_> = winners.difference(&held).collect();
    assert!(lost.is_empty(), "told ordered, not in the store: {lost:?}");
    let unknown: Vec<_> = held.difference(&winners).collect();
    assert!(
        unknown.is_empty(),
        "orders no buyer was told of: {unknown:?}"
    );
    eprintln!(
        "failover: leader node {leader} killed with {orders_at_kill} orders; served again \
         after {recovered_in:?}; {} failed requests ({} attempts in all)",
        failed.len(),
        attempts.len()
    );

    // A front tier and a worker whose first broker is the dead node start and serve.
    let dead_first = StackSpec {
        amqp_url: cluster.urls_starting_with(leader),
        queue: unique("dead-first"),
        ..stack.spec.clone()
    };
    let started = Instant::now();
    let worker = dead_first.start_worker().await;
    let front = dead_first.start_frontend().await;
    worker.wait_consuming().await;
    front.wait_connected().await;
    let (status, body) = get_json(&http, &front.url("/mq/buy?user=777777")).await;
    assert_eq!((status, &body["outcome"]), (200, &Value::from("sold_out")));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // With a second node gone the queue has no majority: the request cannot be taken, and
    // the buy is a 503 within the confirm timeout (the broker nacks it, or never confirms
    // it), not a wait for the buy timeout.
    let survivor = (1..=3).find(|&n| n != leader).unwrap();
    let other = (1..=3).find(|&n| n != leader && n != survivor).unwrap();
    let lonely = StackSpec {
        amqp_url: cluster.url(survivor),
        ..stack.spec.clone()
    }
    .start_frontend()
    .await;
    lonely.wait_connected().await;
    cluster.kill(other).await;

    let started = Instant::now();
    let (status, body) = get_json(&http, &lonely.url("/mq/buy?user=888888")).await;
    let elapsed = started.elapsed();

    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"] == "the broker refused the request"
            || body["error"] == "the broker did not confirm the request",
        "{body}"
    );
    assert!(elapsed < CONFIRM_TIMEOUT + SLACK, "{elapsed:?}");
    assert_eq!(lonely.rpc.pending(), 0);
    drop(cluster);
}

#[tokio::test]
async fn a_front_tier_and_a_worker_whose_first_broker_is_dead_start_and_serve() {
    // A port nobody listens on any more, then the local broker twice.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let local = amqp_url();
    let urls = format!("amqp://guest:guest@127.0.0.1:{dead}/%2f,{local},{local}");
    let probe = spawn_stack(StackOptions {
        strategy: Strategy::Conditional,
        workers: 0,
        ..Default::default()
    })
    .await;
    let started = Instant::now();

    let joining = StackSpec {
        amqp_url: urls,
        ..probe.spec.clone()
    };
    let worker = joining.start_worker().await;
    let front = joining.start_frontend().await;
    worker.wait_consuming().await;
    front.wait_connected().await;
    let (status, body) = get_json(&probe.http, &front.url("/mq/buy?user=5")).await;

    assert_eq!(
        (status, &body["outcome"]),
        (200, &Value::from("ordered")),
        "{body}"
    );
    assert!(started.elapsed() < DEADLINE, "{:?}", started.elapsed());
}
