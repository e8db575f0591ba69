//! Fairness against scripted servers: one that lets the first arrivals win, one the last,
//! one at random. Sends are 10 ms apart from one generator thread, so the order the
//! server sees is the order sent.

use loadtest::report::Report;

use crate::helpers::run;

#[path = "../../examples/scripted_sale.rs"]
#[allow(dead_code)]
mod scripted_sale;

use scripted_sale::{Order, Script};

const BUYERS: usize = 60;
const STOCK: usize = 20;

/// `buyers` buyers, one request each, 100 a second, against a server deciding all of
/// them at once in `order`, with `stock` units.
async fn sale_decided_in(order: Order, buyers: usize, stock: usize) -> Report {
    let addr = scripted_sale::start(Script {
        order,
        stock,
        window: buyers,
        window_ms: 10_000,
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let n = buyers.to_string();
    run(
        out.path(),
        &[
            &format!("http://{addr}/http/buy"),
            "-c",
            &n,
            "-n",
            &n,
            "--rate",
            "100",
            "--threads",
            "1",
        ],
    )
    .await
}

#[tokio::test]
async fn a_server_serving_in_arrival_order_is_first_come_first_served() {
    let report = sale_decided_in(Order::Arrival, BUYERS, STOCK).await;

    let f = report.fairness.expect("fairness measured");
    assert_eq!((f.buyers, f.winners), (BUYERS as u64, STOCK as u64));
    assert_eq!(f.winners_from, "answers");
    assert_eq!((f.fcfs_precision, f.inversions), (Some(1.0), Some(0.0)));
    assert_eq!(f.winners_median_send_rank, Some(10.5));
}

#[tokio::test]
async fn a_server_serving_the_last_first_is_fully_inverted() {
    let report = sale_decided_in(Order::Reverse, BUYERS, STOCK).await;

    let f = report.fairness.expect("fairness measured");
    assert_eq!((f.fcfs_precision, f.inversions), (Some(0.0), Some(1.0)));
    assert_eq!(f.winners_median_send_rank, Some(50.5));
}

#[tokio::test]
async fn a_server_picking_at_random_is_a_lottery() {
    let report = sale_decided_in(Order::Random, 200, 100).await;

    let f = report.fairness.expect("fairness measured");
    // Half the buyers win: at random, about half of the winners are among the first 100
    // senders, and about half of the winner-loser pairs are inverted.
    let precision = f.fcfs_precision.unwrap();
    let inversions = f.inversions.unwrap();
    eprintln!("random: fcfs_precision {precision}, inversions {inversions}");
    assert!((0.35..=0.65).contains(&precision), "{precision}");
    assert!((0.35..=0.65).contains(&inversions), "{inversions}");
}

#[tokio::test]
async fn fairness_checks_pass_and_fail_on_the_measured_values() {
    let addr = scripted_sale::start(Script {
        order: Order::Reverse,
        stock: 2,
        window: 6,
        window_ms: 5_000,
    })
    .await;
    let out = tempfile::tempdir().unwrap();

    let report = run(
        out.path(),
        &[
            &format!("http://{addr}/buy"),
            "-c",
            "6",
            "-n",
            "6",
            "--rate",
            "100",
            "--threads",
            "1",
            "--check",
            "fcfs_precision>=0.9",
            "--check",
            "inversions<=0.1",
            "--check",
            "winners_median_rank>3",
        ],
    )
    .await;

    let verdicts: Vec<(Option<f64>, bool)> =
        report.checks.iter().map(|c| (c.value, c.pass)).collect();
    assert_eq!(
        verdicts,
        [(Some(0.0), false), (Some(1.0), false), (Some(5.5), true)]
    );
}
