//! The sold-out gate: after the store's own sell-out, the front tier answers from memory, and
//! exactly as the store would; it reopens for every new sale, and it is open whenever it
//! cannot hear of one.

use std::time::{Duration, Instant};

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use order_core::Strategy;
use queue_contract::events::SaleEvent;
use serde_json::{Value, json};

use crate::helpers::*;

/// How long a reset through one front tier may take to reopen the gates of the others: one
/// event delivery (the README's documented bound).
const REOPEN_BOUND: Duration = Duration::from_secs(1);

async fn gated_stack(stock: u64, strategy: Strategy) -> TestStack {
    spawn_stack(StackOptions {
        stock,
        strategy,
        gate: true,
        // Long, so that only events (not the periodic recheck) can reopen a gate here.
        gate_recheck_ms: 60_000,
        ..StackOptions::default()
    })
    .await
}

async fn wait_gate(gate: &frontend::gate::Gate, closed: bool) {
    let mut changes = gate.closed_changes();
    tokio::time::timeout(DEADLINE, changes.wait_for(|c| *c == closed))
        .await
        .unwrap_or_else(|_| panic!("gate closed={closed} in time: {:?}", gate.status()))
        .unwrap();
}

/// GET on any front tier: status, `x-answered-by`, and JSON body.
async fn get_with_source(http: &reqwest::Client, url: String) -> (u16, Option<String>, Value) {
    let response = http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let source = response
        .headers()
        .get(frontend::routes::ANSWERED_BY)
        .map(|v| v.to_str().unwrap().to_owned());
    (status, source, response.json().await.unwrap())
}

async fn reset(http: &reqwest::Client, url: String, stock: u64) -> Value {
    let response = http
        .post(url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"stock": stock, "strategy": "conditional"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sell_out_the_gate_answers_200_buyers_exactly_as_the_store_would() {
    let stack = gated_stack(50, Strategy::Conditional).await;
    let answers = stack.buy_all(1..=100).await;
    assert_eq!(
        answers
            .iter()
            .filter(|(_, a)| a["outcome"] == "ordered")
            .count(),
        50
    );
    wait_gate(&stack.frontend.gate, true).await;
    let backend = stack.spec.backend_url.clone();

    // 100 who tried (50 winners, 50 not) and 100 who never did; on both routes.
    for user in 1..=200u64 {
        let store = stack
            .http
            .get(format!("{backend}/buy/{user}"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        for route in ["mq", "http"] {
            let (status, source, gated) =
                get_with_source(&stack.http, stack.url(&format!("/{route}/buy?user={user}"))).await;
            assert_eq!(status, 200);
            assert_eq!(source.as_deref(), Some("gate"), "{route} {user}");
            assert_eq!(gated, store, "{route}, user {user}");
        }
    }
    let (_, sale) = stack.get("/sale").await;
    assert_eq!(sale["gate"]["state"], "closed", "{sale}");
    assert_eq!(
        sale["gate"]["closed_generation"], sale["generation"],
        "{sale}"
    );
    assert_eq!(sale["gate"]["winners"], 50, "{sale}");
    assert_eq!(
        sale["orders"], 50,
        "nothing the gate answered reached the store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_count_insert_the_gate_never_closes_because_its_buyers_are_never_final() {
    let stack = gated_stack(3, Strategy::CountInsert).await;
    let answers = stack.buy_all(1..=10).await;
    assert!(answers.iter().any(|(_, a)| a["outcome"] == "sold_out"));

    // The sold_out answers made the gate re-read the sale; it must have stayed open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, sale) = stack.get("/sale").await;
    assert_eq!(sale["sold_out"], true, "{sale}");
    assert_eq!(sale["buyers_final"], false, "{sale}");
    assert_eq!(sale["gate"]["state"], "open", "{sale}");
    let (_, source, _) = get_with_source(&stack.http, stack.url("/mq/buy?user=99")).await;
    assert_eq!(source, None, "answered by the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_through_one_front_tier_reopens_the_gates_of_both_within_the_bound() {
    let stack = gated_stack(5, Strategy::Conditional).await;
    let second = stack.spec.start_frontend().await;
    second.wait_connected().await;

    // Sold out through the first front tier only: the second closes on its event.
    stack.buy_all(1..=10).await;
    wait_gate(&stack.frontend.gate, true).await;
    wait_gate(&second.gate, true).await;
    let (_, source, _) = get_with_source(&stack.http, second.url("/http/buy?user=77")).await;
    assert_eq!(source.as_deref(), Some("gate"));

    let started = Instant::now();
    let new_sale = reset(&stack.http, stack.url("/admin/sale"), 5).await;
    // Each front tier must serve `ordered` again: poll with new buyers until one is ordered.
    for (name, front) in [("first", stack.url("")), ("second", second.url(""))] {
        let mut user = if name == "first" { 1000 } else { 2000 };
        loop {
            let (status, _, answer) =
                get_with_source(&stack.http, format!("{front}/http/buy?user={user}")).await;
            assert_eq!(status, 200);
            if answer["outcome"] == "ordered" {
                break;
            }
            assert!(
                started.elapsed() < REOPEN_BOUND,
                "the {name} front tier still answers {answer} {:?} after the reset",
                started.elapsed()
            );
            user += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let reopened_in = started.elapsed();
    eprintln!("both front tiers served `ordered` again {reopened_in:?} after the reset");
    assert!(reopened_in < REOPEN_BOUND, "{reopened_in:?}");
    assert_eq!(second.gate.status().generation, new_sale["generation"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_event_link_cut_the_gate_opens_and_buys_reach_the_store() {
    let mut stack = gated_stack(3, Strategy::Conditional).await;
    let answers = stack.buy_all(1..=6).await;
    let winner = answers
        .iter()
        .find(|(_, a)| a["outcome"] == "ordered")
        .map(|(_, a)| a.clone())
        .unwrap();
    wait_gate(&stack.frontend.gate, true).await;
    // Without the backend the gate cannot re-read the sale after relinking, so it must stay
    // open; the MQ route still reaches the store through the worker.
    stack.backend.stop().await.unwrap();

    let closed = close_connections_named(&format!("{}-events", stack.frontend.connection)).await;
    assert_eq!(closed, 1, "the front tier's events connection");
    wait_gate(&stack.frontend.gate, false).await;

    let user = winner["user_id"].as_u64().unwrap();
    let (status, source, answer) =
        get_with_source(&stack.http, stack.url(&format!("/mq/buy?user={user}"))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(source, None, "answered by the store, not the gate");
    assert_eq!(answer["outcome"], "already_ordered");
    assert_eq!(answer["order_id"], winner["order_id"]);
    eventually("the events link is back", || async {
        stack.frontend.gate.status().event_link
    })
    .await;
    assert!(
        !stack.frontend.gate.is_closed(),
        "relinked, but the sale could not be re-read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_event_of_an_older_generation_never_closes_a_newer_sales_gate() {
    let stack = gated_stack(2, Strategy::Conditional).await;
    stack.buy_all(1..=4).await;
    wait_gate(&stack.frontend.gate, true).await;
    let old = stack.frontend.gate.status().closed_generation.unwrap();
    let new_sale = reset(&stack.http, stack.url("/admin/sale"), 2).await;
    assert_eq!(new_sale["generation"], old + 1);
    wait_gate(&stack.frontend.gate, false).await;

    // Forged events: the old sale's sell-out, and a claim that the new one is sold out.
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for event in [
        SaleEvent::SoldOut { generation: old },
        SaleEvent::SoldOut {
            generation: old + 1,
        },
    ] {
        channel
            .basic_publish(
                stack.spec.events_exchange.as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                &event.to_json(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let _ = connection.close(200, "done".into()).await;

    // The store says the new sale is not sold out: the gate must stay open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !stack.frontend.gate.is_closed(),
        "{:?}",
        stack.frontend.gate.status()
    );
    let (_, source, answer) = get_with_source(&stack.http, stack.url("/http/buy?user=50")).await;
    assert_eq!(source, None);
    assert_eq!(answer["outcome"], "ordered");
}
