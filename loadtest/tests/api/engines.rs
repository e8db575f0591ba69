//! Both HTTP engines (`--engine own`, the default, and `--engine hyper`, the reference)
//! against the same servers: the same counts by outcome, whatever the framing, and no
//! panic on broken answers.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use loadtest::outcome::Outcomes;
use loadtest::report::Report;

use crate::helpers::{FakeSale, Faults, Reply, buy_body, raw_server, run, serve};

const ENGINES: [&str; 2] = ["own", "hyper"];

async fn run_both(args: &[&str]) -> Vec<Report> {
    let out = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    for engine in ENGINES {
        let mut argv = args.to_vec();
        argv.extend(["--engine", engine, "--label", engine]);
        reports.push(run(out.path(), &argv).await);
    }
    reports
}

fn counts(o: &Outcomes) -> [u64; 9] {
    [
        o.ordered,
        o.sold_out,
        o.already_ordered,
        o.other,
        o.http_4xx,
        o.http_5xx,
        o.timeout,
        o.connect_error,
        o.io_error,
    ]
}

#[tokio::test]
async fn both_engines_count_every_class_of_answer_alike() {
    let addr = serve(Router::new().route("/answers", get(crate::run::known_answers))).await;
    let url = format!("http://{addr}/answers");

    let reports = run_both(&[&url, "-c", "5", "-n", "70", "--timeout-ms", "300"]).await;

    for r in &reports {
        assert_eq!(
            counts(&r.outcomes),
            [10, 10, 10, 10, 10, 10, 10, 0, 0],
            "{}",
            r.settings.engine.name()
        );
        assert_eq!(r.ordered_users, 10);
    }
}

#[tokio::test]
async fn both_engines_give_the_same_sale_accounting() {
    let mut reports = Vec::new();
    for engine in ENGINES {
        let sale = FakeSale::start(7, Faults::default()).await;
        let out = tempfile::tempdir().unwrap();
        reports.push(
            run(
                out.path(),
                &[
                    &sale.url("/http/buy"),
                    "-c",
                    "4",
                    "-n",
                    "40",
                    "--engine",
                    engine,
                ],
            )
            .await,
        );
    }

    for r in &reports {
        assert_eq!((r.outcomes.ordered, r.outcomes.sold_out), (7, 33));
        assert_eq!((r.oversold, r.lost_orders), (Some(0), Some(0)));
    }
}

#[tokio::test]
async fn chunked_length_and_close_delimited_bodies_are_classified_alike() {
    let (addr, _) = raw_server(|user, _| match user % 4 {
        0 => Reply::with_length(&buy_body("ordered", user)),
        1 => Reply::chunked(&buy_body("sold_out", user), 7),
        2 => {
            // HTTP/1.0 style: no length, the body ends with the connection.
            let mut r = Reply::bytes(format!(
                "HTTP/1.0 200 OK\r\n\r\n{}",
                buy_body("already_ordered", user)
            ));
            r.close = true;
            r
        }
        _ => Reply::bytes("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"),
    })
    .await;
    let url = format!("http://{addr}/buy");

    let reports = run_both(&[&url, "-c", "3", "-n", "80", "--user-start", "0"]).await;

    for r in &reports {
        assert_eq!(
            counts(&r.outcomes),
            [20, 20, 20, 0, 0, 20, 0, 0, 0],
            "{}",
            r.settings.engine.name()
        );
    }
}

#[tokio::test]
async fn a_server_that_says_close_after_n_answers_makes_the_client_reconnect() {
    let (addr, seen) = raw_server(|user, nth| {
        if nth == 2 {
            let body = buy_body("ordered", user);
            let mut r = Reply::bytes(format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
            r.close = true;
            r
        } else {
            Reply::with_length(&buy_body("ordered", user))
        }
    })
    .await;
    let url = format!("http://{addr}/buy");

    let reports = run_both(&[&url, "-c", "2", "-n", "30"]).await;

    for r in &reports {
        assert_eq!(
            r.outcomes.ordered,
            30,
            "{}: {:?}",
            r.settings.engine.name(),
            r.outcomes
        );
        assert_eq!(r.requests, 30);
    }
    assert_eq!(seen.buys.load(std::sync::atomic::Ordering::SeqCst), 60);
}

#[tokio::test]
async fn a_server_that_silently_closes_after_n_answers_costs_no_request_and_counts_each_once() {
    // No `Connection: close`: the client finds out when it uses the connection again.
    let (addr, seen) = raw_server(|user, nth| {
        let mut r = Reply::with_length(&buy_body("ordered", user));
        r.close = nth == 2;
        r
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/buy");

    let report = run(
        out.path(),
        &[&url, "-c", "2", "-n", "30", "--engine", "own"],
    )
    .await;

    assert_eq!(report.outcomes.ordered, 30, "{:?}", report.outcomes);
    assert_eq!((report.requests, report.errors), (30, 0));
    assert_eq!(report.ordered_users, 30);
    // The server read each request once: the resend went where it had not been read.
    assert_eq!(seen.buys.load(std::sync::atomic::Ordering::SeqCst), 30);
}

#[tokio::test]
async fn garbage_answers_are_io_errors_not_panics() {
    let (addr, _) = raw_server(|user, _| match user % 3 {
        0 => Reply::bytes("hello, this is not HTTP\r\n\r\n"),
        1 => Reply::bytes(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n",
        ),
        _ => Reply::bytes(b"\x00\xff\x13\x37\r\n\r\n".to_vec()),
    })
    .await;
    let url = format!("http://{addr}/buy");

    let reports = run_both(&[&url, "-c", "2", "-n", "12", "--timeout-ms", "2000"]).await;

    for r in &reports {
        assert_eq!(r.requests, 12, "{}", r.settings.engine.name());
        assert_eq!(
            r.outcomes.io_error,
            12,
            "{}: {:?}",
            r.settings.engine.name(),
            r.outcomes
        );
    }
}

#[tokio::test]
async fn a_slow_body_is_waited_for_and_timed_whole() {
    let (addr, _) = raw_server(|user, _| {
        let mut r = Reply::with_length(&buy_body("ordered", user));
        // The head and part of the body now, the rest 150 ms later.
        r.pause = Some((r.bytes.len() - 10, Duration::from_millis(150)));
        r
    })
    .await;
    let url = format!("http://{addr}/buy");

    let reports = run_both(&[&url, "-c", "2", "-n", "4"]).await;

    for r in &reports {
        assert_eq!(
            r.outcomes.ordered,
            4,
            "{}: {:?}",
            r.settings.engine.name(),
            r.outcomes
        );
        assert!(r.latency_ms.min >= 150.0, "{:?}", r.latency_ms);
    }
}

#[tokio::test]
async fn a_body_slower_than_the_timeout_and_a_server_that_never_answers_time_out() {
    let (addr, _) = raw_server(|user, _| {
        if user == 0 {
            // The control read of `/sale` after the run: no sale here.
            Reply::bytes("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        } else if user % 2 == 0 {
            Reply {
                hang: true,
                ..Reply::default()
            }
        } else {
            let mut r = Reply::with_length(&buy_body("ordered", user));
            r.pause = Some((20, Duration::from_millis(1500)));
            r
        }
    })
    .await;
    let url = format!("http://{addr}/buy");

    let reports = run_both(&[&url, "-c", "2", "-n", "6", "--timeout-ms", "200"]).await;

    for r in &reports {
        assert_eq!(
            r.outcomes.timeout,
            6,
            "{}: {:?}",
            r.settings.engine.name(),
            r.outcomes
        );
        assert_eq!(r.responses, 0);
    }
}

#[tokio::test]
async fn a_body_larger_than_the_read_buffer_is_read_whole_by_both_engines() {
    // 100 KB, past the own engine's 16 KB read buffer; chunked for odd users.
    let (addr, _) = raw_server(|user, _| {
        let pad = "x".repeat(100_000);
        let body =
            format!(r#"{{"outcome":"ordered","order_id":"o","user_id":{user},"pad":"{pad}"}}"#);
        if user % 2 == 1 {
            Reply::chunked(&body, 30_000)
        } else {
            Reply::with_length(&body)
        }
    })
    .await;
    let url = format!("http://{addr}/buy");

    let reports = run_both(&[&url, "-c", "2", "-n", "20"]).await;

    for r in &reports {
        assert_eq!(
            r.outcomes.ordered,
            20,
            "{}: {:?}",
            r.settings.engine.name(),
            r.outcomes
        );
        assert_eq!(r.ordered_users, 20);
    }
}
