//! `--buyers-out`: one JSON line per buyer, with its first send and its last answer.

use serde_json::Value;

use crate::helpers::{FakeSale, Faults, TOKEN, run};

fn read_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn every_buyer_gets_one_line_with_its_first_send_and_last_answer() {
    let sale = FakeSale::start(3, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("buyers.jsonl");

    let report = run(
        out.path(),
        &[
            &sale.url("/http/buy"),
            "-c",
            "2",
            "-n",
            "10",
            "--admin-token",
            TOKEN,
            "--stock",
            "3",
            "--buyers-out",
            path.to_str().unwrap(),
        ],
    )
    .await;

    let lines = read_lines(&path);
    assert_eq!(lines.len(), 10);
    let mut users: Vec<u64> = lines.iter().map(|l| l["user"].as_u64().unwrap()).collect();
    users.sort_unstable();
    assert_eq!(users, (1..=10).collect::<Vec<_>>());
    let sends: Vec<u64> = lines
        .iter()
        .map(|l| l["first_send_us"].as_u64().unwrap())
        .collect();
    assert!(sends.windows(2).all(|w| w[0] <= w[1]), "in send order");
    for line in &lines {
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 6, "{line}");
        assert_eq!(
            (line["sends"].as_u64(), line["status"].as_u64()),
            (Some(1), Some(200))
        );
        let user = line["user"].as_u64().unwrap();
        match line["outcome"].as_str().unwrap() {
            "ordered" => assert_eq!(line["order_id"], format!("o{user}")),
            "sold_out" => assert!(line["order_id"].is_null()),
            other => panic!("unexpected outcome {other}"),
        }
    }
    let ordered: Vec<u64> = lines
        .iter()
        .filter(|l| l["outcome"] == "ordered")
        .map(|l| l["user"].as_u64().unwrap())
        .collect();
    assert_eq!(ordered.len(), 3);
    let mut held: Vec<u64> = sale.orders().into_iter().collect();
    held.sort_unstable();
    let mut ordered_sorted = ordered.clone();
    ordered_sorted.sort_unstable();
    assert_eq!(ordered_sorted, held, "the file's winners are the store's");
    assert_eq!(report.ordered_responses, 3);
}

#[tokio::test]
async fn error_answers_and_unanswered_buyers_say_so() {
    let sale = FakeSale::start(
        4,
        Faults {
            store_odd_users_answer_503: true,
            ..Faults::default()
        },
    )
    .await;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("b.jsonl");

    run(
        out.path(),
        &[
            &sale.url("/http/buy"),
            "-c",
            "1",
            "-n",
            "4",
            "--admin-token",
            TOKEN,
            "--stock",
            "4",
            "--buyers-out",
            path.to_str().unwrap(),
        ],
    )
    .await;

    let lines = read_lines(&path);
    for line in &lines {
        let user = line["user"].as_u64().unwrap();
        if user % 2 == 1 {
            assert_eq!(
                (line["outcome"].as_str(), line["status"].as_u64()),
                (Some("5xx"), Some(503))
            );
            assert!(line["order_id"].is_null());
        } else {
            assert_eq!(line["outcome"], "ordered");
        }
    }
}

#[tokio::test]
async fn an_unwritable_buyers_file_fails_before_any_load() {
    let sale = FakeSale::start(4, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("no-such-dir").join("b.jsonl");
    let opts = crate::helpers::run_opts(&[
        &sale.url("/http/buy"),
        "-n",
        "4",
        "--buyers-out",
        path.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "-q",
    ]);

    let err = loadtest::run(&opts).await.unwrap_err();

    assert!(err.to_string().contains("--buyers-out"), "{err}");
    assert!(sale.orders().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_buyer_without_an_answer_is_a_timeout_without_a_status() {
    let (addr, _) = crate::helpers::raw_server(|user, _| {
        if user == 2 {
            crate::helpers::Reply {
                hang: true,
                ..Default::default()
            }
        } else {
            crate::helpers::Reply::with_length(&crate::helpers::buy_body("sold_out", user))
        }
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("b.jsonl");

    run(
        out.path(),
        &[
            &format!("http://{addr}/buy"),
            "-c",
            "3",
            "-n",
            "3",
            "--timeout-ms",
            "300",
            "--buyers-out",
            path.to_str().unwrap(),
        ],
    )
    .await;

    let lines = read_lines(&path);
    let hung = lines.iter().find(|l| l["user"] == 2).unwrap();
    assert_eq!(hung["outcome"], "timeout");
    assert!(hung["status"].is_null() && hung["order_id"].is_null());
    assert_eq!(
        lines.iter().filter(|l| l["outcome"] == "sold_out").count(),
        2
    );
}
