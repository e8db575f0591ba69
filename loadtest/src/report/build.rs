//! Building a report from a measured run and the store's word after it.
//!
//! `lost_orders` is the number of distinct buyers answered `ordered` that the store does not
//! hold: checked buyer by buyer when the store lists its buyers, else bounded from the
//! counts (a lower bound). Fairness is measured from the per-buyer sends, with the store's
//! list of buyers deciding who won when there is one.

use std::collections::BTreeMap;

use super::{
    Latency, Machine, Report, SCENARIO_AFTER_SELL_OUT, SCENARIO_CONTENDED,
    SCENARIO_EVERY_BUY_WRITES, SCENARIO_NO_RESET, SCHEMA_VERSION, SerializedHistogram, Settings,
    TimelineEntry, TimelineErrors, rate, rfc3339, round3,
};
use crate::control::Sale;
use crate::engine::{RunResult, Second};
use crate::error::LoadtestError;
use crate::fairness;

/// How the sale was prepared before the clock started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Setup {
    /// The stock the sale was reset to, when it was reset.
    pub reset_stock: Option<u64>,
    /// Whether the stock was sold out before the clock started (`--sold-out-first`).
    pub sold_out_first: bool,
}

impl Setup {
    /// Names what a run measured, from how it was set up and how many requests it sent.
    pub fn scenario(&self, requests: u64) -> String {
        match (self.reset_stock, self.sold_out_first) {
            (None, _) => SCENARIO_NO_RESET,
            (Some(_), true) => SCENARIO_AFTER_SELL_OUT,
            (Some(stock), false) if stock >= requests => SCENARIO_EVERY_BUY_WRITES,
            (Some(_), false) => SCENARIO_CONTENDED,
        }
        .to_string()
    }
}

impl Report {
    pub fn new(
        mut settings: Settings,
        setup: Setup,
        result: &RunResult,
        sale: Option<&Sale>,
    ) -> Result<Self, LoadtestError> {
        let elapsed_s = result.elapsed.as_secs_f64();
        let responses = result.outcomes.answered();
        if let Some(strategy) = sale.and_then(|s| s.strategy.clone()) {
            settings.strategy = Some(strategy);
        }
        let held = sale.and_then(|s| s.held_users.as_deref());
        let mut report = Self {
            schema_version: SCHEMA_VERSION,
            settings,
            scenario: setup.scenario(result.requests),
            requests: result.requests,
            responses,
            errors: result.outcomes.errors(),
            elapsed_s: round3(elapsed_s),
            throughput_rps: rate(responses, elapsed_s),
            latency_ms: Latency::from_histogram(&result.histogram),
            latency_accepted_ms: (!result.accepted.is_empty())
                .then(|| Latency::from_histogram(&result.accepted)),
            latency_refused_ms: (!result.refused.is_empty())
                .then(|| Latency::from_histogram(&result.refused)),
            send_lag_ms: (!result.send_lag.is_empty())
                .then(|| Latency::from_histogram(&result.send_lag)),
            outcomes: result.outcomes,
            store_read: false,
            stock: None,
            orders_in_store: None,
            oversold: None,
            ordered_responses: result.outcomes.ordered,
            ordered_users: result.ordered_users.len() as u64,
            lost_orders: None,
            lost_orders_exact: false,
            fairness: fairness::measure(&result.buyers, held),
            first_send_spread_ms: first_send_spread_ms(&result.first_sends_us),
            machine: Machine::this(),
            started_at: rfc3339(result.started_at),
            merged_from: Vec::new(),
            timeline: TimelineEntry::from_seconds(&result.timeline),
            marks: Vec::new(),
            checks: Vec::new(),
            server_metrics: BTreeMap::new(),
            histogram: SerializedHistogram::encode(&result.histogram)?,
        };
        report.set_store(sale);
        if let Some(held) = held {
            // Both lists are sorted: count the ordered buyers the store does not hold.
            let missing = result
                .ordered_users
                .iter()
                .filter(|user| held.binary_search(user).is_err())
                .count();
            report.lost_orders = Some(missing as u64);
            report.lost_orders_exact = true;
        }
        Ok(report)
    }

    /// Fills the store fields from a `/sale` read (or marks the store as not read); lost
    /// orders bounded from the counts.
    pub fn set_store(&mut self, sale: Option<&Sale>) {
        self.store_read = sale.is_some();
        self.stock = sale.map(|s| s.stock);
        self.orders_in_store = sale.map(|s| s.orders);
        self.oversold = sale.map(Sale::oversold);
        self.lost_orders = sale.map(|s| self.ordered_users.saturating_sub(s.orders));
        self.lost_orders_exact = false;
    }
}

/// From the first client's first send to the last client's (ascending µs since start).
fn first_send_spread_ms(first_sends_us: &[u64]) -> Option<f64> {
    match (first_sends_us.first(), first_sends_us.last()) {
        (Some(first), Some(last)) => Some(round3((last - first) as f64 / 1000.0)),
        _ => None,
    }
}

impl TimelineEntry {
    pub fn from_seconds(seconds: &[Second]) -> Vec<Self> {
        seconds
            .iter()
            .enumerate()
            .map(|(t, s)| {
                let o = &s.outcomes;
                let at = |q: f64| {
                    (!s.latency.is_empty())
                        .then(|| round3(s.latency.value_at_quantile(q) as f64 / 1000.0))
                };
                Self {
                    t_s: t as u64,
                    sent: s.sent,
                    requests: o.total(),
                    ordered: o.ordered,
                    sold_out: o.sold_out,
                    already_ordered: o.already_ordered,
                    other: o.other,
                    errors: TimelineErrors {
                        http_4xx: o.http_4xx,
                        http_5xx: o.http_5xx,
                        timeout: o.timeout,
                        connect_error: o.connect_error,
                        io_error: o.io_error,
                    },
                    p50_ms: at(0.50),
                    p99_ms: at(0.99),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_follows_the_setup() {
        let reset = |stock| Setup {
            reset_stock: Some(stock),
            sold_out_first: false,
        };
        assert_eq!(Setup::default().scenario(10), "no-reset");
        assert_eq!(reset(5).scenario(10), "contended");
        assert_eq!(reset(10).scenario(10), "every-buy-writes");
        let sold = Setup {
            sold_out_first: true,
            ..reset(5)
        };
        assert_eq!(sold.scenario(10), "after-sell-out");
    }

    #[test]
    fn the_spread_runs_from_the_first_client_to_the_last() {
        assert_eq!(first_send_spread_ms(&[100, 900, 2600]), Some(2.5));
        assert_eq!(first_send_spread_ms(&[]), None);
    }
}
