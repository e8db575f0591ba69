//! Bad input: one clear error saying what and what to do, never a panic.

use clap::Parser as _;
use loadtest::LoadtestError;
use loadtest::cli::Opts;

use crate::helpers::{FakeSale, Faults, closed_port, run_opts};

async fn run_err(args: &[&str]) -> LoadtestError {
    loadtest::run(&run_opts(args)).await.unwrap_err()
}

#[tokio::test]
async fn an_unreachable_target_is_reported_before_any_load() {
    let out = tempfile::tempdir().unwrap();
    let url = format!("http://{}/buy", closed_port().await);

    let err = run_err(&[&url, "--out", out.path().to_str().unwrap()]).await;

    assert!(matches!(err, LoadtestError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("start the stack"), "{err}");
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "no report for a failed run"
    );
}

#[tokio::test]
async fn a_bad_url_says_what_a_good_one_looks_like() {
    let err = run_err(&["localhost:5000/buy"]).await;

    assert!(matches!(err, LoadtestError::BadUrl { .. }), "{err}");
    assert!(
        err.to_string().contains("http://127.0.0.1:5000/http/buy"),
        "{err}"
    );
}

#[tokio::test]
async fn a_refused_admin_token_stops_the_run() {
    let sale = FakeSale::start(5, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();

    let err = run_err(&[
        &sale.url("/buy"),
        "--admin-token",
        "wrong",
        "-n",
        "5",
        "-q",
        "--out",
        out.path().to_str().unwrap(),
    ])
    .await;

    assert!(
        matches!(err, LoadtestError::AdminTokenRefused { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("--admin-token"), "{err}");
    assert!(
        sale.orders().is_empty(),
        "nothing is measured after a refused reset"
    );
}

#[tokio::test]
async fn an_unwritable_output_directory_is_reported_before_any_load() {
    let sale = FakeSale::start(5, Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = file.join("reports");

    let err = run_err(&[&sale.url("/buy"), "-n", "5", "--out", out.to_str().unwrap()]).await;

    assert!(matches!(err, LoadtestError::OutputDir { .. }), "{err}");
    assert!(err.to_string().contains("--out"), "{err}");
    assert!(sale.orders().is_empty());
}

#[tokio::test]
async fn a_matrix_without_a_token_says_how_to_give_one() {
    let sale = FakeSale::start(5, Faults::default()).await;
    let opts = Opts::parse_from(["loadtest", "matrix", &sale.origin]);

    let err = loadtest::execute(opts).await.unwrap_err();

    assert!(err.to_string().contains("FLASHSALE_ADMIN_TOKEN"), "{err}");
}

#[tokio::test]
async fn comparing_a_file_that_is_not_a_report_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.json");
    std::fs::write(&path, "{\"hello\": 1}").unwrap();
    let opts = Opts::parse_from(["loadtest", "compare", path.to_str().unwrap()]);

    let err = loadtest::execute(opts).await.unwrap_err();

    assert!(matches!(err, LoadtestError::ReadReport { .. }), "{err}");
}
