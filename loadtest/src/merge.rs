//! Merging reports of one test driven from several load machines at once.
//!
//! Histograms merge exactly (HDR add), so the merged percentiles are those of all
//! requests together, not an average of percentiles. Counts add up; the runs overlapped,
//! so the merged elapsed time is the longest one and throughput is total answers over it.
//! The store is shared: the merged store fields come from the last read (most orders).
//!
//! What is not merged: fairness and the spread of the first sends. Each machine ranks its
//! own buyers on its own monotonic clock, and nothing makes the clocks of two machines
//! agree to the microsecond; ranking all buyers together would pretend they do. The merged
//! report leaves them null and each part's report keeps its own.

use crate::engine::new_histogram;
use crate::error::LoadtestError;
use crate::outcome::Outcomes;
use crate::report::{Latency, Report, SerializedHistogram, Settings, TimelineEntry, rate, round3};

/// Merges `reports` into one report named `label`.
pub fn merge(reports: &[Report], label: &str) -> Result<Report, LoadtestError> {
    let Some(first) = reports.first() else {
        return Err(LoadtestError::BadOptions(
            "merge needs at least one report".into(),
        ));
    };
    let mut histogram = new_histogram();
    let mut outcomes = Outcomes::default();
    for r in reports {
        histogram
            .add(&r.decode_histogram()?)
            .map_err(|e| LoadtestError::Histogram(format!("{e:?}")))?;
        outcomes.add(&r.outcomes);
    }
    let elapsed_s = reports.iter().map(|r| r.elapsed_s).fold(0.0, f64::max);
    let sum = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
    let store = reports
        .iter()
        .filter(|r| r.store_read)
        .max_by_key(|r| r.orders_in_store.unwrap_or(0));
    let ordered_users = sum(|r| r.ordered_users);
    let all_exact = reports.iter().all(|r| r.store_read && r.lost_orders_exact);
    let same = |f: fn(&Settings) -> &String| {
        let v = f(&first.settings);
        if reports.iter().all(|r| f(&r.settings) == v) {
            v.clone()
        } else {
            "mixed".to_string()
        }
    };
    let responses = outcomes.answered();
    let settings = Settings {
        label: label.to_string(),
        route: same(|s| &s.route),
        strategy: store
            .and_then(|r| r.settings.strategy.clone())
            .or(first.settings.strategy.clone()),
        target: same(|s| &s.target),
        concurrency: sum(|r| r.settings.concurrency),
        rate_rps: reports.iter().map(|r| r.settings.rate_rps).sum(),
        ..first.settings.clone()
    };
    Ok(Report {
        settings,
        requests: outcomes.total(),
        responses,
        errors: outcomes.errors(),
        elapsed_s: round3(elapsed_s),
        throughput_rps: rate(responses, elapsed_s),
        latency_ms: Latency::from_histogram(&histogram),
        // Only the whole histogram travels in a report: these cannot be merged.
        latency_accepted_ms: None,
        latency_refused_ms: None,
        send_lag_ms: None,
        outcomes,
        store_read: store.is_some(),
        stock: store.and_then(|r| r.stock),
        orders_in_store: store.and_then(|r| r.orders_in_store),
        oversold: store.and_then(|r| r.oversold),
        ordered_responses: outcomes.ordered,
        ordered_users,
        // Each machine checked its own (disjoint) buyers against the whole store: exact
        // counts add up. Otherwise only the counts bound it.
        lost_orders: if all_exact {
            Some(sum(|r| r.lost_orders.unwrap_or(0)))
        } else {
            store
                .and_then(|r| r.orders_in_store)
                .map(|orders| ordered_users.saturating_sub(orders))
        },
        lost_orders_exact: all_exact,
        fairness: None,
        first_send_spread_ms: None,
        started_at: reports
            .iter()
            .map(|r| r.started_at.clone())
            .min()
            .unwrap_or_default(),
        merged_from: reports.iter().map(|r| r.label().to_string()).collect(),
        timeline: merge_timelines(reports),
        histogram: SerializedHistogram::encode(&histogram)?,
        ..first.clone()
    })
}

/// Adds the runs' timelines second by second (the runs overlapped, each from its own
/// start). The per-second percentiles are not kept as histograms, so they cannot be
/// merged exactly: the merged ones are null.
fn merge_timelines(reports: &[Report]) -> Vec<TimelineEntry> {
    let mut merged: Vec<TimelineEntry> = Vec::new();
    for r in reports {
        for e in &r.timeline {
            let i = e.t_s as usize;
            while merged.len() <= i {
                merged.push(TimelineEntry::empty(merged.len() as u64));
            }
            let m = &mut merged[i];
            m.sent += e.sent;
            m.requests += e.requests;
            m.ordered += e.ordered;
            m.sold_out += e.sold_out;
            m.already_ordered += e.already_ordered;
            m.other += e.other;
            m.errors.http_4xx += e.errors.http_4xx;
            m.errors.http_5xx += e.errors.http_5xx;
            m.errors.timeout += e.errors.timeout;
            m.errors.connect_error += e.errors.connect_error;
            m.errors.io_error += e.errors.io_error;
        }
    }
    merged
}
