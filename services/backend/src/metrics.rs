//! The backend's metrics (`GET /metrics`): buys by outcome, their duration, buys in flight,
//! rejections, store operation times, and the sale's progress as the store sees it.

use std::time::Duration;

use order_core::metrics::{self, Histogram, IntCounter, IntGauge, Registry};
use order_core::{Outcome, SaleState};

/// What a buy came to, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuyOutcome {
    Answered(Outcome),
    BadRequest,
    Rejected,
    StoreError,
}

impl BuyOutcome {
    const ALL: [Self; 6] = [
        Self::Answered(Outcome::Ordered),
        Self::Answered(Outcome::SoldOut),
        Self::Answered(Outcome::AlreadyOrdered),
        Self::BadRequest,
        Self::Rejected,
        Self::StoreError,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Answered(Outcome::Ordered) => "ordered",
            Self::Answered(Outcome::SoldOut) => "sold_out",
            Self::Answered(Outcome::AlreadyOrdered) => "already_ordered",
            Self::BadRequest => "bad_request",
            Self::Rejected => "rejected",
            Self::StoreError => "store_error",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    buys: Vec<(BuyOutcome, IntCounter)>,
    duration: Histogram,
    pub in_flight: IntGauge,
    pub rejected_store_limit: IntCounter,
    sale_stock: IntGauge,
    sale_orders: IntGauge,
    sale_generation: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let buys_total = metrics::counter_vec(
            &registry,
            "flashsale_backend_buys_total",
            "Buys answered by this backend, by outcome.",
            &["outcome"],
        );
        let buys = BuyOutcome::ALL
            .iter()
            .map(|&o| (o, buys_total.with_label_values(&[o.label()])))
            .collect();
        let rejections = metrics::counter_vec(
            &registry,
            "flashsale_backend_rejections_total",
            "Buys refused at once (503 + Retry-After), by reason.",
            &["reason"],
        );
        Self {
            buys,
            duration: metrics::histogram(
                &registry,
                "flashsale_backend_buy_duration_seconds",
                "Time to answer a buy, store included.",
                metrics::LATENCY_BUCKETS,
            ),
            in_flight: metrics::gauge(
                &registry,
                "flashsale_backend_buys_in_flight",
                "Buys being decided right now.",
            ),
            rejected_store_limit: rejections.with_label_values(&["store_limit"]),
            sale_stock: metrics::gauge(&registry, "flashsale_sale_stock", "The sale's stock."),
            sale_orders: metrics::gauge(
                &registry,
                "flashsale_sale_orders",
                "Orders the store holds for the current sale.",
            ),
            sale_generation: metrics::gauge(
                &registry,
                "flashsale_sale_generation",
                "The current sale's generation (every reset increments it).",
            ),
            registry,
        }
    }

    /// The store's operation timings, registered here.
    pub fn store_timings(&self) -> order_core::store::OperationTimings {
        metrics::store_timings(&self.registry)
    }

    pub fn record_buy(&self, outcome: BuyOutcome, took: Duration) {
        if let Some((_, counter)) = self.buys.iter().find(|(o, _)| *o == outcome) {
            counter.inc();
        }
        self.duration.observe(took.as_secs_f64());
    }

    /// The text to serve, with the sale's progress as last read from the store.
    pub fn render(&self, sale: Option<&SaleState>) -> String {
        if let Some(sale) = sale {
            self.sale_stock.set(gauge_value(sale.stock));
            self.sale_orders.set(gauge_value(sale.orders));
            self.sale_generation.set(gauge_value(sale.generation));
        }
        metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
