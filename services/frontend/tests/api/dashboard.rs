//! The Grafana dashboard (`observe/grafana/dashboards/flashsale.json`) only asks for metrics
//! the services really export: every metric name in every panel query is served by the
//! front tier, the backend or the worker of a running stack.

use std::collections::BTreeSet;

use crate::helpers::*;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../observe/grafana/dashboards/flashsale.json"
);

/// Every `flashsale_*` metric name in the dashboard's queries.
fn dashboard_metrics() -> BTreeSet<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() > 10, "the dashboard has its panels' queries");
    let mut names = BTreeSet::new();
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(start) = rest.find("flashsale_") {
            let name: String = rest[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[start + name.len()..];
            names.insert(name);
        }
    }
    names
}

fn collect_exprs(value: &serde_json::Value, exprs: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => exprs.push(expr.clone()),
                    _ => collect_exprs(value, exprs),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, exprs)),
        _ => {}
    }
}

/// The sample names a `/metrics` endpoint serves (histograms as `_bucket`, `_sum`, `_count`).
async fn exported(http: &reqwest::Client, url: String) -> BTreeSet<String> {
    let text = http.get(url).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported_by_a_service() {
    let stack = spawn_stack(StackOptions::default()).await;
    // Some series appear with their first observation: one buy on each route.
    stack.get("/http/buy?user=1").await;
    stack.get("/mq/buy?user=2").await;

    let mut served = exported(&stack.http, stack.url("/metrics")).await;
    served.extend(
        exported(
            &stack.http,
            format!("http://{}/metrics", stack.backend_addr),
        )
        .await,
    );
    let worker = stack.workers[0]
        .health
        .expect("the stack's worker has a health listener");
    served.extend(exported(&stack.http, format!("http://{worker}/metrics")).await);

    let queried = dashboard_metrics();
    assert!(queried.len() >= 20, "{queried:?}");
    let missing: Vec<_> = queried
        .into_iter()
        .filter(|name| !served.contains(name))
        .collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
}
