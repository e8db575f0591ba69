//! Merging reports from several load machines: the HDR histograms add up exactly.

use clap::Parser as _;
use loadtest::cli::Opts;
use loadtest::report::Report;

use crate::helpers::{FakeSale, Faults, TOKEN, run};

#[tokio::test]
async fn merging_two_reports_gives_the_histogram_of_all_their_requests() {
    let sale = FakeSale::start(1_000, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let url = sale.url("/http/buy");
    let a = run(
        out.path(),
        &[
            &url,
            "-c",
            "3",
            "-n",
            "60",
            "--label",
            "a",
            "--admin-token",
            TOKEN,
            "--stock",
            "1000",
        ],
    )
    .await;
    let b = run(
        out.path(),
        &[
            &url,
            "-c",
            "2",
            "-n",
            "40",
            "--label",
            "b",
            "--user-start",
            "1001",
        ],
    )
    .await;

    let opts = Opts::parse_from([
        "loadtest",
        "merge",
        out.path().join("a.json").to_str().unwrap(),
        out.path().join("b.json").to_str().unwrap(),
        "--label",
        "ab",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    loadtest::execute(opts).await.unwrap();
    let merged = Report::load(&out.path().join("ab.json")).unwrap();

    let mut expected = a.decode_histogram().unwrap();
    expected.add(b.decode_histogram().unwrap()).unwrap();
    let got = merged.decode_histogram().unwrap();
    assert_eq!(got, expected);
    assert_eq!(got.len(), 100);
    assert_eq!(
        merged.latency_ms,
        loadtest::report::Latency::from_histogram(&expected)
    );
    assert_eq!(
        (
            merged.requests,
            merged.settings.concurrency,
            merged.ordered_responses
        ),
        (100, 5, 100)
    );
    assert_eq!(merged.merged_from, vec!["a", "b"]);
    // Each part ranked its own buyers on its own clock: fairness is not merged.
    assert!(a.fairness.is_some() && b.fairness.is_some());
    assert_eq!(
        (merged.fairness.as_ref(), merged.first_send_spread_ms),
        (None, None)
    );
    let md = std::fs::read_to_string(out.path().join("ab.md")).unwrap();
    assert!(md.contains("Fairness is not merged"), "{md}");
    // The store is shared; the last read (both runs' orders) is the merged one.
    assert_eq!(
        (merged.orders_in_store, merged.lost_orders),
        (Some(100), Some(0))
    );
    assert_eq!(merged.elapsed_s, a.elapsed_s.max(b.elapsed_s));
    // The timelines add up second by second; per-second percentiles are not merged.
    assert_eq!(merged.timeline.iter().map(|e| e.requests).sum::<u64>(), 100);
    assert!(merged.timeline.iter().all(|e| e.p99_ms.is_none()));

    // Two single runs: compare shows both, and cannot call a difference real or noise.
    let compare = Opts::parse_from([
        "loadtest",
        "compare",
        out.path().join("a.json").to_str().unwrap(),
        out.path().join("b.json").to_str().unwrap(),
    ]);
    let table = loadtest::execute(compare).await.unwrap().to_string();
    assert_eq!(
        table
            .matches("unknown (a single run: repeat to tell)")
            .count(),
        // trans/sec, p50, p99 and fcfs_precision (every buyer won: no inversions).
        4,
        "{table}"
    );
    assert!(table.contains("| a -> b"), "{table}");
}

#[tokio::test]
async fn a_report_merged_alone_keeps_its_histogram() {
    let sale = FakeSale::start(100, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let one = run(
        out.path(),
        &[&sale.url("/buy"), "-c", "2", "-n", "30", "--label", "one"],
    )
    .await;

    let merged = loadtest::merge::merge(std::slice::from_ref(&one), "same").unwrap();

    assert_eq!(
        merged.decode_histogram().unwrap(),
        one.decode_histogram().unwrap()
    );
    assert_eq!(merged.latency_ms, one.latency_ms);
    assert_eq!(merged.outcomes, one.outcomes);
}
