//! The store contract, checked on every store available here: always the embedded SQLite
//! store (a fresh file per test) and PostgreSQL (a fresh database per test on the server of
//! `FLASHSALE_TEST_PG_URL`, default the machine's own, dropped even when the test fails),
//! and MongoDB when `MONGODB_URI` is set (a fresh database per test). Without `MONGODB_URI`
//! the MongoDB part of each test says it was skipped.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use order_core::store::test_support::{TestDatabase, unreachable_store_url};
use order_core::store::{InsertOutcome, Store, StoreError};
use order_core::{Outcome, SaleConfig, Strategy, UserId};

fn user(id: u64) -> UserId {
    UserId::new(id).unwrap()
}

fn sale(stock: u64, strategy: Strategy) -> SaleConfig {
    SaleConfig { stock, strategy }
}

/// Runs `test` against a fresh SQLite store, a fresh PostgreSQL database, then a fresh
/// MongoDB database if one is configured. Each run gets its own store opened with `initial`.
async fn on_every_store<F, Fut>(name: &str, initial: SaleConfig, test: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.db");
    test(Store::open(path.to_str().unwrap(), initial).await.unwrap()).await;

    let database = TestDatabase::create(name).await;
    test(Store::open(&database.url, initial).await.unwrap()).await;
    drop(database);

    if initial.strategy == Strategy::RowLock {
        eprintln!("{name}: MongoDB part not run (MongoDB refuses row-lock)");
        return;
    }

    match std::env::var("MONGODB_URI") {
        Ok(uri) => {
            let db = format!("flashsale_test_{name}_{}", std::process::id());
            let store = Store::open(&with_database(&uri, &db), initial)
                .await
                .unwrap();
            test(store).await;
        }
        Err(_) => {
            eprintln!("{name}: MongoDB part SKIPPED (set MONGODB_URI=mongodb://... to run it)")
        }
    }
}

/// `mongodb://host:27017/any?opts` -> `mongodb://host:27017/<db>?opts`.
fn with_database(uri: &str, db: &str) -> String {
    let (scheme, rest) = uri
        .split_once("://")
        .expect("MONGODB_URI is a mongodb:// URI");
    let (rest, query) = rest
        .split_once('?')
        .map_or((rest, None), |(r, q)| (r, Some(q)));
    let hosts = rest.split_once('/').map_or(rest, |(hosts, _)| hosts);
    match query {
        Some(q) => format!("{scheme}://{hosts}/{db}?{q}"),
        None => format!("{scheme}://{hosts}/{db}"),
    }
}

#[tokio::test]
async fn count_insert_is_two_operations_so_two_buyers_can_both_take_the_last_unit() {
    on_every_store(
        "interleave",
        sale(1, Strategy::CountInsert),
        |store| async move {
            let generation = store.sale().await.unwrap().generation;
            // Both buyers count before either inserts: each sees 0 orders, below a stock of 1.
            let seen_by_a = store.count_orders(generation).await.unwrap();
            let seen_by_b = store.count_orders(generation).await.unwrap();
            assert_eq!((seen_by_a, seen_by_b), (0, 0));

            // Then both insert. Nothing in the insert looks at the stock.
            assert!(matches!(
                store.insert_order(user(1), generation).await.unwrap(),
                InsertOutcome::Inserted(_)
            ));
            assert!(matches!(
                store.insert_order(user(2), generation).await.unwrap(),
                InsertOutcome::Inserted(_)
            ));

            let state = store.sale().await.unwrap();
            assert_eq!((state.stock, state.orders, state.oversold), (1, 2, 1));
            assert_eq!(store.order_user_ids().await.unwrap(), vec![1, 2]);
        },
    )
    .await;
}

#[tokio::test]
async fn the_unique_key_refuses_a_second_order_for_one_user_and_returns_the_first() {
    on_every_store(
        "unique",
        sale(10, Strategy::CountInsert),
        |store| async move {
            let generation = store.sale().await.unwrap().generation;
            let InsertOutcome::Inserted(first) =
                store.insert_order(user(7), generation).await.unwrap()
            else {
                panic!("first insert must succeed")
            };
            assert_eq!(
                store.insert_order(user(7), generation).await.unwrap(),
                InsertOutcome::Duplicate(first)
            );
            assert_eq!(store.count_orders(generation).await.unwrap(), 1);
        },
    )
    .await;
}

#[tokio::test]
async fn a_sold_out_conditional_sale_still_answers_a_repeat_buyer_with_their_order() {
    on_every_store(
        "repeat",
        sale(1, Strategy::Conditional),
        |store| async move {
            let first = order_core::buy(&store, user(1)).await.unwrap();
            assert_eq!(first.outcome, Outcome::Ordered);
            assert_eq!(
                order_core::buy(&store, user(2)).await.unwrap().outcome,
                Outcome::SoldOut
            );
            let again = order_core::buy(&store, user(1)).await.unwrap();
            assert_eq!(again.outcome, Outcome::AlreadyOrdered);
            assert_eq!(again.order_id, first.order_id);
        },
    )
    .await;
}

#[tokio::test]
async fn reset_drops_orders_and_sets_stock_and_strategy() {
    on_every_store(
        "reset",
        sale(5, Strategy::CountInsert),
        |store| async move {
            for id in 1..=3 {
                order_core::buy(&store, user(id)).await.unwrap();
            }
            store.reset(sale(2, Strategy::Conditional)).await.unwrap();

            let state = store.sale().await.unwrap();
            assert_eq!(
                (state.stock, state.orders, state.strategy),
                (2, 0, Strategy::Conditional)
            );
            // The old buyers are new buyers again.
            assert_eq!(
                order_core::buy(&store, user(1)).await.unwrap().outcome,
                Outcome::Ordered
            );
        },
    )
    .await;
}

#[tokio::test]
async fn a_reset_racing_conditional_buyers_leaves_orders_and_claims_in_step() {
    on_every_store(
        "reset_race",
        sale(50, Strategy::Conditional),
        |store| async move {
            let store = Arc::new(store);
            let buyers: Vec<_> = (1..=300)
                .map(|id| {
                    let store = Arc::clone(&store);
                    tokio::spawn(async move { order_core::buy(&store, user(id)).await.unwrap() })
                })
                .collect();
            // Resets land while buyers are claiming; each must swap the whole sale at once.
            for stock in [40, 30] {
                tokio::task::yield_now().await;
                store
                    .reset(sale(stock, Strategy::Conditional))
                    .await
                    .unwrap();
            }
            futures_util::future::join_all(buyers).await;

            // Claims (stock - remaining) and orders held must agree: a reset that dropped the
            // orders and the claims in separate steps would leave them apart.
            let state = store.sale().await.unwrap();
            let left = store
                .snapshot(user(u64::from(u32::MAX)))
                .await
                .unwrap()
                .remaining;
            assert_eq!(state.stock, 30);
            assert_eq!(state.orders + left, state.stock, "{state:?}, {left} left");
            assert_eq!(state.oversold, 0);
        },
    )
    .await;
}

#[tokio::test]
async fn a_store_opened_twice_on_one_file_shares_one_sale_and_never_oversells() {
    // Two pools on one file stand in for two processes (backend replicas and the worker).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let path = path.to_str().unwrap();
    let first = Store::open(path, sale(25, Strategy::Conditional))
        .await
        .unwrap();
    // A second opener with another initial sale joins the existing one rather than resetting it.
    let second = Store::open(path, sale(999, Strategy::CountInsert))
        .await
        .unwrap();
    assert_eq!(second.sale().await.unwrap().stock, 25);

    let buyers = (1..=200).map(|id| {
        let store = if id % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tokio::spawn(async move { order_core::buy(&store, user(id)).await.unwrap().outcome })
    });
    let outcomes = futures_util::future::join_all(buyers).await;
    let ordered = outcomes
        .into_iter()
        .filter(|o| *o.as_ref().unwrap() == Outcome::Ordered)
        .count();

    assert_eq!(ordered, 25);
    assert_eq!(first.sale().await.unwrap().orders, 25);
}

#[tokio::test]
async fn every_reset_starts_a_new_generation_and_says_so() {
    on_every_store(
        "generation",
        sale(2, Strategy::Conditional),
        |store| async move {
            let first = store.sale().await.unwrap();
            let reset = store.reset(sale(3, Strategy::Conditional)).await.unwrap();
            assert_eq!(reset.generation, first.generation + 1);
            assert_eq!((reset.stock, reset.orders), (3, 0));
            assert_eq!(store.sale().await.unwrap(), reset);
        },
    )
    .await;
}

#[tokio::test]
async fn a_count_insert_buy_that_counted_before_a_reset_never_lands_in_the_new_sale() {
    on_every_store(
        "stale_insert",
        sale(1, Strategy::CountInsert),
        |store| async move {
            let old = store.sale().await.unwrap().generation;
            assert_eq!(store.count_orders(old).await.unwrap(), 0);
            store.reset(sale(1, Strategy::CountInsert)).await.unwrap();

            // SQLite and PostgreSQL refuse the write (the buyer is told the sale was reset);
            // MongoDB lets it land in the old generation. Either way the new sale does not
            // hold it.
            let stale = store.insert_order(user(5), old).await;
            if store.kind() != "mongodb" {
                assert!(matches!(stale, Err(StoreError::SaleReset)), "{stale:?}");
            }

            let state = store.sale().await.unwrap();
            assert_eq!(state.orders, 0, "{state:?}");
            assert!(store.order_user_ids().await.unwrap().is_empty());
            assert_eq!(
                order_core::buy(&store, user(5)).await.unwrap().outcome,
                Outcome::Ordered
            );
        },
    )
    .await;
}

#[tokio::test]
async fn a_sold_out_conditional_sale_has_final_buyers_and_lists_their_orders() {
    on_every_store(
        "winners",
        sale(2, Strategy::Conditional),
        |store| async move {
            let a = order_core::buy(&store, user(10)).await.unwrap();
            assert!(!store.sale().await.unwrap().buyers_final);
            let b = order_core::buy(&store, user(3)).await.unwrap();

            let state = store.sale().await.unwrap();
            assert!(state.sold_out && state.buyers_final, "{state:?}");
            let page = store.orders_page(0, 10).await.unwrap();
            assert_eq!(page.generation, state.generation);
            let listed: Vec<_> = page
                .orders
                .iter()
                .map(|o| (o.user_id, Some(o.order_id.clone())))
                .collect();
            assert_eq!(listed, vec![(3, b.order_id), (10, a.order_id)]);
            assert!(store.orders_page(3, 10).await.unwrap().orders.len() == 1);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_snapshots_each_answer_for_their_own_buyer_from_one_sale() {
    // On PostgreSQL these reads go to the server together, a batch per round trip: each must
    // still get its own buyer's answer, a buyer asked about several times included.
    on_every_store(
        "snapshots",
        sale(20, Strategy::Conditional),
        |store| async move {
            for id in 1..=20 {
                order_core::buy(&store, user(id * 3)).await.unwrap();
            }
            let held: HashMap<u64, String> = store
                .orders_page(0, 100)
                .await
                .unwrap()
                .orders
                .into_iter()
                .map(|o| (o.user_id, o.order_id))
                .collect();
            assert_eq!(held.len(), 20);
            let generation = store.sale().await.unwrap().generation;

            let reads = (0..300u64).map(|i| {
                let (store, id) = (store.clone(), i % 100 + 1);
                tokio::spawn(async move { (id, store.snapshot(user(id)).await.unwrap()) })
            });
            for read in futures_util::future::join_all(reads).await {
                let (id, snapshot) = read.unwrap();
                assert_eq!(snapshot.existing_order, held.get(&id).cloned(), "user {id}");
                assert_eq!(
                    (snapshot.sale, snapshot.remaining, snapshot.generation),
                    (sale(20, Strategy::Conditional), 0, generation),
                    "user {id} on {}",
                    store.kind()
                );
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_starts_after_a_reset_sees_the_new_sale_while_others_read() {
    // Readers keep batches in flight all along: a read must never be answered by a batch
    // sent before it started (here, before the reset committed).
    on_every_store(
        "fresh",
        sale(5, Strategy::Conditional),
        |store| async move {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let readers: Vec<_> = (1..=16)
                .map(|id| {
                    let (store, stop) = (store.clone(), Arc::clone(&stop));
                    tokio::spawn(async move {
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            store.snapshot(user(id)).await.unwrap();
                        }
                    })
                })
                .collect();
            for stock in 1..=20 {
                let state = store
                    .reset(sale(stock, Strategy::Conditional))
                    .await
                    .unwrap();
                let snapshot = store.snapshot(user(99)).await.unwrap();
                assert_eq!(
                    (snapshot.generation, snapshot.sale.stock, snapshot.remaining),
                    (state.generation, stock, stock),
                    "{}",
                    store.kind()
                );
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for reader in readers {
                reader.await.unwrap();
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_batch_is_decided_in_arrival_order_with_one_order_per_user() {
    for strategy in Strategy::ALL {
        on_every_store("batch_order", sale(3, strategy), |store| async move {
            let earlier = order_core::buy(&store, user(1)).await.unwrap();

            // User 1 already holds an order; user 2 comes twice; only 2 units are left.
            let users: Vec<_> = [1, 2, 3, 2, 4, 5].into_iter().map(user).collect();
            let answers = order_core::buy_batch(&store, &users).await.unwrap();

            let outcomes: Vec<_> = answers.iter().map(|a| (a.user_id, a.outcome)).collect();
            assert_eq!(
                outcomes,
                vec![
                    (1, Outcome::AlreadyOrdered),
                    (2, Outcome::Ordered),
                    (3, Outcome::Ordered),
                    (2, Outcome::AlreadyOrdered),
                    (4, Outcome::SoldOut),
                    (5, Outcome::SoldOut),
                ],
                "{strategy}"
            );
            assert_eq!(answers[0].order_id, earlier.order_id);
            assert_eq!(answers[3].order_id, answers[1].order_id);
            assert_eq!(store.order_user_ids().await.unwrap(), vec![1, 2, 3]);
            // And once sold out, a batch still tells winners their order.
            let again = order_core::buy_batch(&store, &[user(3), user(9)])
                .await
                .unwrap();
            assert_eq!(again[0].outcome, Outcome::AlreadyOrdered);
            assert_eq!(again[0].order_id, answers[2].order_id);
            assert_eq!(again[1].outcome, Outcome::SoldOut);
        })
        .await;
    }
}

#[tokio::test]
async fn concurrent_conditional_batches_and_single_buys_never_oversell() {
    concurrent_batches_and_single_buys_never_oversell(Strategy::Conditional).await;
}

#[tokio::test]
async fn concurrent_row_lock_batches_and_single_buys_never_oversell() {
    concurrent_batches_and_single_buys_never_oversell(Strategy::RowLock).await;
}

async fn concurrent_batches_and_single_buys_never_oversell(strategy: Strategy) {
    on_every_store(
        &format!("batch_race_{strategy}"),
        sale(100, strategy),
        |store| async move {
            let batches = (0..10u64).map(|b| {
                let store = store.clone();
                tokio::spawn(async move {
                    let users: Vec<_> = (1..=50).map(|i| user(b * 50 + i)).collect();
                    order_core::buy_batch(&store, &users).await.unwrap()
                })
            });
            let singles = (501..=700).map(|id| {
                let store = store.clone();
                tokio::spawn(async move { vec![order_core::buy(&store, user(id)).await.unwrap()] })
            });
            let answers = futures_util::future::join_all(batches.chain(singles)).await;
            let ordered: HashSet<u64> = answers
                .into_iter()
                .flat_map(|a| a.unwrap())
                .filter(|a| a.outcome == Outcome::Ordered)
                .map(|a| a.user_id)
                .collect();

            assert_eq!(ordered.len(), 100);
            let held: HashSet<u64> = store.order_user_ids().await.unwrap().into_iter().collect();
            assert_eq!(held, ordered);
            assert_eq!(store.sale().await.unwrap().oversold, 0);
        },
    )
    .await;
}

#[tokio::test]
async fn count_insert_batches_are_serialized_by_sqlite_write_lock() {
    // SQLite only: its one write lock orders whole batches, so even count-insert batches from
    // several workers cannot oversell each other (under MongoDB's snapshot isolation they can,
    // as the worker's docs say).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batches.db");
    let path = path.to_str().unwrap();
    let store = Store::open(path, sale(100, Strategy::CountInsert))
        .await
        .unwrap();
    let batches = (0..10u64).map(|b| {
        // A second pool on the same file, as a second worker process would open.
        let path = path.to_owned();
        tokio::spawn(async move {
            let store = Store::open(&path, sale(100, Strategy::CountInsert))
                .await
                .unwrap();
            let users: Vec<_> = (1..=50).map(|i| user(b * 50 + i)).collect();
            order_core::buy_batch(&store, &users).await.unwrap()
        })
    });
    let ordered = futures_util::future::join_all(batches)
        .await
        .into_iter()
        .flat_map(|a| a.unwrap())
        .filter(|a| a.outcome == Outcome::Ordered)
        .count();
    assert_eq!(ordered, 100);
    assert_eq!(store.sale().await.unwrap().orders, 100);
}

/// 1,000 buyers at once for 100 units: exactly 100 are told `ordered`, and exactly those
/// are in the store.
async fn a_thousand_concurrent_buyers_never_oversell(strategy: Strategy) {
    on_every_store(
        &format!("thousand_{strategy}"),
        sale(100, strategy),
        |store| async move {
            let buyers = (1..=1_000).map(|id| {
                let store = store.clone();
                tokio::spawn(async move { order_core::buy(&store, user(id)).await.unwrap() })
            });
            let answers = futures_util::future::join_all(buyers).await;
            let ordered: HashSet<u64> = answers
                .into_iter()
                .map(|a| a.unwrap())
                .filter(|a| a.outcome == Outcome::Ordered)
                .map(|a| a.user_id)
                .collect();

            assert_eq!(ordered.len(), 100, "{} on {}", strategy, store.kind());
            let held: HashSet<u64> = store.order_user_ids().await.unwrap().into_iter().collect();
            assert_eq!(
                held, ordered,
                "every ordered answer is in the store, and nothing else"
            );
            let state = store.sale().await.unwrap();
            assert_eq!((state.orders, state.oversold), (100, 0));
            assert!(state.buyers_final, "{state:?}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_conditional_buyers_never_oversell() {
    a_thousand_concurrent_buyers_never_oversell(Strategy::Conditional).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_row_lock_buyers_never_oversell() {
    a_thousand_concurrent_buyers_never_oversell(Strategy::RowLock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_insert_oversells_when_buyers_count_before_each_other_insert() {
    // The pause only widens the real gap between the count and the insert: every buyer
    // counts 0 orders long before the first insert lands.
    on_every_store(
        "race_shown",
        sale(1, Strategy::CountInsert),
        |store| async move {
            let store = store.with_count_insert_pause(Duration::from_millis(300));
            let buyers = (1..=10).map(|id| {
                let store = store.clone();
                tokio::spawn(async move { order_core::buy(&store, user(id)).await.unwrap() })
            });
            let answers = futures_util::future::join_all(buyers).await;
            let ordered = answers
                .into_iter()
                .filter(|a| a.as_ref().unwrap().outcome == Outcome::Ordered)
                .count();

            let state = store.sale().await.unwrap();
            assert_eq!(ordered, 10, "{}", store.kind());
            assert_eq!((state.orders, state.oversold), (10, 9), "{}", store.kind());
        },
    )
    .await;
}

#[tokio::test]
async fn a_reset_to_row_lock_takes_effect_and_a_repeat_buyer_gets_their_order() {
    on_every_store(
        "row_lock_reset",
        sale(5, Strategy::RowLock),
        |store| async move {
            let first = order_core::buy(&store, user(1)).await.unwrap();
            assert_eq!(first.outcome, Outcome::Ordered);
            let again = order_core::buy(&store, user(1)).await.unwrap();
            assert_eq!(
                (again.outcome, again.order_id),
                (Outcome::AlreadyOrdered, first.order_id)
            );
            let state = store.reset(sale(1, Strategy::RowLock)).await.unwrap();
            assert_eq!((state.strategy, state.orders), (Strategy::RowLock, 0));
            assert_eq!(
                order_core::buy(&store, user(2)).await.unwrap().outcome,
                Outcome::Ordered
            );
            assert_eq!(
                order_core::buy(&store, user(1)).await.unwrap().outcome,
                Outcome::SoldOut
            );
        },
    )
    .await;
}

#[tokio::test]
async fn mongodb_refuses_row_lock_at_start_up_with_a_reason() {
    // Refused before any connection is tried: no MongoDB server is needed to see it.
    let error = Store::open(
        "mongodb://127.0.0.1:1/flashsale",
        sale(1, Strategy::RowLock),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, StoreError::Unsupported(_)), "{error:?}");
    assert!(error.to_string().contains("row-lock"), "{error}");
}

#[tokio::test]
async fn a_bad_store_spec_or_an_unreachable_server_is_an_error_at_open() {
    let initial = sale(1, Strategy::Conditional);
    let error = Store::open("mysql://app:hunter2@db/x", initial)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown store scheme"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");

    let error = Store::open(&unreachable_store_url(), initial)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot open store"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");

    let error = Store::open("postgres://127.0.0.1:5432/x?port=notaport", initial)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a PostgreSQL URL"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_processes_starting_at_once_create_the_schema_once_and_share_one_sale() {
    let database = TestDatabase::create("schema_race").await;
    let opens = (0..8u64).map(|i| {
        let url = database.url.clone();
        tokio::spawn(async move { Store::open(&url, sale(10 + i, Strategy::Conditional)).await })
    });
    let stores: Vec<Store> = futures_util::future::join_all(opens)
        .await
        .into_iter()
        .map(|opened| opened.unwrap().unwrap())
        .collect();
    let stock = stores[0].sale().await.unwrap().stock;
    for store in &stores {
        assert_eq!(store.sale().await.unwrap().stock, stock, "one sale for all");
    }
    // Opening again (a restart) keeps the sale in progress.
    order_core::buy(&stores[0], user(1)).await.unwrap();
    let reopened = Store::open(&database.url, sale(999, Strategy::CountInsert))
        .await
        .unwrap();
    let state = reopened.sale().await.unwrap();
    assert_eq!((state.stock, state.orders), (stock, 1));
}

#[tokio::test]
async fn postgres_refuses_a_schema_newer_than_it_knows() {
    let database = TestDatabase::create("schema_newer").await;
    Store::open(&database.url, sale(1, Strategy::Conditional))
        .await
        .unwrap();
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("UPDATE flashsale_schema SET version = 99")
        .await
        .unwrap();
    drop(client);
    let error = Store::open(&database.url, sale(1, Strategy::Conditional))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("version 99"), "{error}");
}

/// Another client of `url`, inside a transaction that ran `statement` and stays open: it
/// holds the locks `statement` took until it sends `ROLLBACK`.
async fn holding(url: &str, statement: &str) -> tokio_postgres::Client {
    let (holder, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    holder
        .batch_execute(&format!("BEGIN; {statement}"))
        .await
        .unwrap();
    holder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_sale_row_lock_gives_timeouts_and_busy_answers_not_hangs() {
    let database = TestDatabase::create("held_lock").await;
    let options = order_core::StoreOptions {
        call_timeout_ms: 500,
        pool_size: 1,
        pool_wait_ms: 100,
        ..Default::default()
    };
    // The schema first, with the default timeouts, then a store with tight ones.
    Store::open(&database.url, sale(10, Strategy::RowLock))
        .await
        .unwrap();
    let store = Store::open_with(&database.url, sale(10, Strategy::RowLock), options)
        .await
        .unwrap();
    // Another client holds the sale row's lock in an open transaction.
    let holder = holding(&database.url, "SELECT * FROM sale WHERE id = 1 FOR UPDATE").await;

    let started = std::time::Instant::now();
    let (waiting, busy) = tokio::join!(order_core::buy(&store, user(1)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        order_core::buy(&store, user(2)).await
    });
    let (waiting, busy) = (waiting.unwrap_err(), busy.unwrap_err());
    assert_eq!(
        waiting.reason(),
        "the store did not answer in time",
        "{waiting}"
    );
    assert_eq!(
        busy.reason(),
        "store busy: no connection free in time",
        "{busy}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Once the lock is released the store serves again, on a fresh connection.
    holder.batch_execute("ROLLBACK").await.unwrap();
    let answer = order_core::buy(&store, user(1)).await.unwrap();
    assert_eq!(answer.outcome, Outcome::Ordered);
    assert_eq!(store.sale().await.unwrap().orders, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_snapshots_stuck_behind_a_table_lock_all_fail_fast_then_all_recover() {
    let database = TestDatabase::create("stuck_reads").await;
    let options = order_core::StoreOptions {
        call_timeout_ms: 500,
        ..Default::default()
    };
    let store = Store::open_with(&database.url, sale(10, Strategy::Conditional), options)
        .await
        .unwrap();
    // Another client holds a lock every read of the sale waits for.
    let holder = holding(&database.url, "LOCK TABLE sale IN ACCESS EXCLUSIVE MODE").await;
    let reads = |store: Store| {
        futures_util::future::join_all((1..=100).map(move |id| {
            let store = store.clone();
            tokio::spawn(async move { store.snapshot(user(id)).await })
        }))
    };

    let started = std::time::Instant::now();
    let stuck = reads(store.clone()).await;
    // Every read answers, each with the reason its batch failed for; none hangs.
    for read in stuck {
        let error = read.unwrap().unwrap_err();
        assert_eq!(
            error.reason(),
            "the store did not answer in time",
            "{error}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    holder.batch_execute("ROLLBACK").await.unwrap();
    for read in reads(store.clone()).await {
        assert_eq!(read.unwrap().unwrap().remaining, 10);
    }
}
