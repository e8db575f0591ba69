//! The built binary, end to end: exit codes, stdout, stderr, files.

use std::process::{Command, Output};

use crate::helpers::{FakeSale, Faults, TOKEN, closed_port};

async fn loadtest(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args(args)
            // The test's own environment must not configure the binary.
            .env_remove("FLASHSALE_ADMIN_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_binary_runs_a_sale_and_writes_its_report() {
    let sale = FakeSale::start(0, Faults::default()).await;
    let out = tempfile::tempdir().unwrap();
    let url = sale.url("/http/buy");
    let args = [
        "run",
        url.as_str(),
        "-c",
        "3",
        "-n",
        "12",
        "--stock",
        "4",
        "--label",
        "bin",
        "--out",
        out.path().to_str().unwrap(),
    ];
    let mut argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    argv.extend(["--admin-token".into(), TOKEN.into()]);

    let output = loadtest(argv).await;

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.lines().any(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            cells.get(1..3) == Some(&["orders in store", "4"][..])
        }),
        "{stdout}"
    );
    assert!(stdout.contains("wrote"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("bin.json")).unwrap())
            .unwrap();
    assert_eq!(json["orders_in_store"], 4);
    assert_eq!(json["outcomes"]["sold_out"], 8);
}

#[tokio::test]
async fn the_binary_explains_an_unreachable_target_in_one_line() {
    let url = format!("http://{}/buy", closed_port().await);

    let output = loadtest(vec!["run".into(), url]).await;

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("loadtest: cannot reach"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}
