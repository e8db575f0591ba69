//! The per-second timeline, its SVG, and markers given on the command line or written to a
//! file by a script while the run goes on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;

use crate::helpers::{run, serve};

/// A server that, when its 250th request arrives, stalls every request for one second.
async fn stalls_for_a_second_at_request_250() -> String {
    let count = Arc::new(AtomicU64::new(0));
    let until: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let router = Router::new().route(
        "/",
        get(move || {
            let (count, until) = (count.clone(), until.clone());
            async move {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let stall_end = {
                    let mut until = until.lock().unwrap();
                    if n == 249 {
                        *until = Some(Instant::now() + Duration::from_secs(1));
                    }
                    *until
                };
                if let Some(end) = stall_end.filter(|end| *end > Instant::now()) {
                    tokio::time::sleep_until(end.into()).await;
                }
                "ok"
            }
        }),
    );
    format!("http://{}/", serve(router).await)
}

#[tokio::test]
async fn a_one_second_stall_in_an_open_loop_shows_in_the_right_buckets() {
    let url = stalls_for_a_second_at_request_250().await;
    let out = tempfile::tempdir().unwrap();

    // 200 requests a second for 4 s: the stall runs from ~1.25 s to ~2.25 s.
    let report = run(
        out.path(),
        &[
            &url, "-c", "20", "-n", "800", "--rate", "200", "--label", "stall",
        ],
    )
    .await;

    let t = &report.timeline;
    assert!(t.len() >= 4, "{t:?}");
    assert_eq!(t.iter().map(|s| s.requests).sum::<u64>(), 800);
    let p99 = |i: usize| t[i].p99_ms.unwrap_or(f64::NAN);
    // Second 0: served at once.
    assert!(t[0].requests >= 150 && p99(0) < 300.0, "{:?}", t[0]);
    // Second 1: a quarter of it served at once, then the server holds everything.
    assert!((20..=90).contains(&t[1].requests), "{:?}", t[1]);
    assert!(p99(1) < 300.0, "{:?}", t[1]);
    // Second 2: the held requests come back at once, up to a second late.
    assert!(t[2].requests >= 300, "{:?}", t[2]);
    assert!(p99(2) >= 800.0, "{:?}", t[2]);
    // Second 3: back to normal.
    assert!(p99(3) < 300.0, "{:?}", t[3]);
    assert_eq!(t[1].t_s, 1);
    let svg = std::fs::read_to_string(out.path().join("stall-timeline.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("answers/s"));
}

#[tokio::test]
async fn marks_from_the_command_line_and_from_a_file_land_on_the_timeline() {
    let addr = serve(Router::new().route("/", get(|| async { "ok" }))).await;
    let out = tempfile::tempdir().unwrap();
    let marks = out.path().join("marks.txt");
    std::fs::write(&marks, "# from a script\n12 long before this run\n").unwrap();
    let launched = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let writer = {
        let marks = marks.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let line = format!(
                "{}.{:09} node 2 killed\n",
                now.as_secs(),
                now.subsec_nanos()
            );
            let mut text = std::fs::read_to_string(&marks).unwrap();
            text.push_str(&line);
            std::fs::write(&marks, text).unwrap();
            now
        })
    };

    let report = run(
        out.path(),
        &[
            &format!("http://{addr}/"),
            "-c",
            "2",
            "-t",
            "2500ms",
            "--mark",
            "1.5s: cache flushed",
            "--marks-file",
            marks.to_str().unwrap(),
            "--label",
            "marked",
        ],
    )
    .await;
    let written = writer.await.unwrap();

    let got: Vec<(f64, &str)> = report
        .marks
        .iter()
        .map(|m| (m.t_s, m.text.as_str()))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    // The file's marker was written (at least 1 s) after the run was launched, and the
    // clock started a little after the launch (connecting first): its offset from the
    // start is positive and at most the time from the launch to the writing.
    assert_eq!(got[0].1, "node 2 killed");
    let bound = (written - launched).as_secs_f64();
    assert!(
        got[0].0 > 0.0 && got[0].0 <= bound + 0.001,
        "{got:?}, {bound}"
    );
    assert_eq!(got[1], (1.5, "cache flushed"));
    let svg = std::fs::read_to_string(out.path().join("marked-timeline.svg")).unwrap();
    assert!(svg.contains("node 2 killed") && svg.contains("cache flushed"));
    let md = std::fs::read_to_string(out.path().join("marked.md")).unwrap();
    assert!(md.contains("- 1.500 s: cache flushed"), "{md}");
}
