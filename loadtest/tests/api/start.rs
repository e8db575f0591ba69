//! A sale that opens at once (`--start-together`) and arrival-rate stages (`--stages`).

use std::sync::atomic::Ordering;

use crate::helpers::{Reply, buy_body, raw_server, raw_server_slow_to_accept, run};

#[tokio::test]
async fn with_start_together_the_server_has_every_connection_before_the_first_buy() {
    // A server slow to accept: without warm connections, buys would come in on
    // connections it has not accepted yet.
    let pause = std::time::Duration::from_millis(2);
    let (addr, seen) = raw_server_slow_to_accept(pause, |user, _| match user {
        0 => Reply::with_length("ok"),
        user => Reply::with_length(&buy_body("sold_out", user)),
    })
    .await;
    let out = tempfile::tempdir().unwrap();

    let report = run(
        out.path(),
        &[
            &format!("http://{addr}/buy"),
            "-c",
            "200",
            "-r",
            "1",
            "--start-together",
            "--check",
            "first_send_spread<60s",
        ],
    )
    .await;

    // The 200 clients' connections, and the one that checked the target was up.
    assert_eq!(seen.connections_at_first_buy.load(Ordering::SeqCst), 201);
    assert_eq!(seen.buys.load(Ordering::SeqCst), 200);
    assert!(report.settings.start_together);
    let spread = report.first_send_spread_ms.expect("the spread is reported");
    assert!(spread >= 0.0);
    assert_eq!(report.checks[0].value, Some(spread / 1000.0));
    assert_eq!(report.outcomes.sold_out, 200);
    let md = std::fs::read_to_string(out.path().join("default-c200.md")).unwrap();
    assert!(
        md.contains("--start-together") && md.contains("first sends spread"),
        "{md}"
    );
}

#[tokio::test]
async fn the_sends_per_second_follow_the_stages() {
    let (addr, _) = raw_server(|user, _| Reply::with_length(&buy_body("sold_out", user))).await;
    let out = tempfile::tempdir().unwrap();
    let stages = "0s:0,1s:1000,3s:1000,4s:0";

    let report = run(
        out.path(),
        &[
            &format!("http://{addr}/buy"),
            "-c",
            "50",
            "--stages",
            stages,
        ],
    )
    .await;

    let parsed = loadtest::stages::parse_stages(stages).unwrap();
    assert_eq!(report.requests, parsed.total());
    assert_eq!(report.settings.stages.len(), 4);
    assert_eq!(report.settings.duration_s, Some(4.0));
    let sent: Vec<u64> = report.timeline.iter().map(|e| e.sent).collect();
    for (t, got) in sent.iter().enumerate().take(4) {
        let expected = parsed.arrivals_until(t as f64 + 1.0) - parsed.arrivals_until(t as f64);
        let off = (*got as f64 - expected).abs() / expected;
        assert!(
            off <= 0.05,
            "second {t}: sent {got}, the stages say {expected} ({sent:?})"
        );
    }
    let md = std::fs::read_to_string(out.path().join("default-c50.md")).unwrap();
    assert!(md.contains("--stages 0s:0,1s:1000,3s:1000,4s:0"), "{md}");
}
