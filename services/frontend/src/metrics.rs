//! The front tier's metrics (`GET /metrics`): buys by route and outcome, their duration,
//! admission (buys in flight, the current limit, the measured completion rate, rejections
//! by reason), RPCs pending, reconnects, and the gate.

use std::time::Duration;

use order_core::Outcome;
use order_core::metrics::{self, Histogram, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::admission::Admission;
use crate::config::Route;
use crate::error::ApiError;

const ROUTES: [Route; 2] = [Route::Http, Route::Mq];

fn route_label(route: Route) -> &'static str {
    match route {
        Route::Http => "http",
        Route::Mq => "mq",
    }
}

fn route_index(route: Route) -> usize {
    match route {
        Route::Http => 0,
        Route::Mq => 1,
    }
}

/// The `outcome` labels, in the order of [`outcome_index`].
const OUTCOMES: [&str; 8] = [
    "ordered",
    "sold_out",
    "already_ordered",
    "bad_request",
    "rejected",
    "unavailable",
    "upstream_failed",
    "timeout",
];

/// Where an answer or an error is in [`OUTCOMES`].
fn outcome_index(result: Result<Outcome, &ApiError>) -> usize {
    match result {
        Ok(Outcome::Ordered) => 0,
        Ok(Outcome::SoldOut) => 1,
        Ok(Outcome::AlreadyOrdered) => 2,
        Err(ApiError::BadRequest(_)) => 3,
        Err(ApiError::Overloaded { .. } | ApiError::Refused(_)) => 4,
        Err(ApiError::Unavailable(_)) => 5,
        Err(ApiError::UpstreamFailed(_)) => 6,
        Err(ApiError::Timeout(_)) => 7,
    }
}

/// One route's handles, resolved at start-up so a buy only touches atomics.
struct RouteMetrics {
    buys: [IntCounter; OUTCOMES.len()],
    duration: Histogram,
    in_flight: IntGauge,
    admission_limit: IntGauge,
    admission_rate: IntGauge,
    gate_sold_out: IntCounter,
    gate_already_ordered: IntCounter,
}

pub struct Metrics {
    registry: Registry,
    routes: [RouteMetrics; 2],
    rejections: IntCounterVec,
    pub rpc_pending: IntGauge,
    pub reconnects: IntCounter,
    pub gate_closed: IntGauge,
    pub sale_generation: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let buys = metrics::counter_vec(
            &registry,
            "flashsale_frontend_buys_total",
            "Buys answered by this front tier, by route and outcome (gated answers included).",
            &["route", "outcome"],
        );
        let duration = metrics::histogram_vec(
            &registry,
            "flashsale_frontend_buy_duration_seconds",
            "Time to answer a buy, by route.",
            &["route"],
            metrics::LATENCY_BUCKETS,
        );
        let in_flight = metrics::gauge_vec(
            &registry,
            "flashsale_frontend_buys_in_flight",
            "Buys waiting for their route's upstream right now.",
            &["route"],
        );
        let admission_limit = metrics::gauge_vec(
            &registry,
            "flashsale_frontend_admission_limit",
            "Most buys the route admits at once now: its completion rate times the target \
             wait, within its ceiling.",
            &["route"],
        );
        let admission_rate = metrics::gauge_vec(
            &registry,
            "flashsale_frontend_admission_completion_rate",
            "Buys per second the route's upstream is measured to complete (0 until the route \
             has been saturated).",
            &["route"],
        );
        let gate_answers = metrics::counter_vec(
            &registry,
            "flashsale_frontend_gate_answers_total",
            "Buys the sold-out gate answered from memory, by route and outcome.",
            &["route", "outcome"],
        );
        let routes = ROUTES.map(|route| {
            let label = route_label(route);
            RouteMetrics {
                buys: OUTCOMES.map(|outcome| buys.with_label_values(&[label, outcome])),
                duration: duration.with_label_values(&[label]),
                in_flight: in_flight.with_label_values(&[label]),
                admission_limit: admission_limit.with_label_values(&[label]),
                admission_rate: admission_rate.with_label_values(&[label]),
                gate_sold_out: gate_answers.with_label_values(&[label, "sold_out"]),
                gate_already_ordered: gate_answers.with_label_values(&[label, "already_ordered"]),
            }
        });
        let rejections = metrics::counter_vec(
            &registry,
            "flashsale_frontend_rejections_total",
            "Buys refused at once with 503, by route and reason.",
            &["route", "reason"],
        );
        // Shown at 0 from the start, so dashboards see the series before the first refusal.
        for route in ROUTES {
            for reason in ["in_flight_limit", "target_wait"] {
                rejections.with_label_values(&[route_label(route), reason]);
            }
        }
        Self {
            routes,
            rejections,
            rpc_pending: metrics::gauge(
                &registry,
                "flashsale_frontend_rpc_pending",
                "MQ buys waiting for a worker's reply.",
            ),
            reconnects: metrics::counter(
                &registry,
                "flashsale_amqp_reconnects_total",
                "Connections to RabbitMQ (the RPC link) made after the first.",
            ),
            gate_closed: metrics::gauge(
                &registry,
                "flashsale_frontend_gate_closed",
                "1 while the sold-out gate answers from memory.",
            ),
            sale_generation: metrics::gauge(
                &registry,
                "flashsale_frontend_sale_generation",
                "The newest sale generation this front tier knows of.",
            ),
            registry,
        }
    }

    fn route(&self, route: Route) -> &RouteMetrics {
        &self.routes[route_index(route)]
    }

    /// A buy answered (or refused) on `route`.
    pub fn record(&self, route: Route, result: Result<Outcome, &ApiError>, took: Duration) {
        let metrics = self.route(route);
        metrics.buys[outcome_index(result)].inc();
        metrics.duration.observe(took.as_secs_f64());
    }

    /// A buy the gate answered from memory.
    pub fn record_gated(&self, route: Route, outcome: Outcome, took: Duration) {
        self.record(route, Ok(outcome), took);
        let metrics = self.route(route);
        match outcome {
            Outcome::AlreadyOrdered => metrics.gate_already_ordered.inc(),
            _ => metrics.gate_sold_out.inc(),
        }
    }

    /// The route's admission as it stands now (read when `/metrics` is served).
    pub fn admission(&self, route: Route, admission: &Admission) {
        let metrics = self.route(route);
        metrics.in_flight.set(i64::from(admission.in_flight()));
        metrics.admission_limit.set(i64::from(admission.limit()));
        metrics
            .admission_rate
            .set(admission.rate().map_or(0, |rate| rate.round() as i64));
    }

    pub fn reject(&self, route: Route, reason: &str) {
        self.rejections
            .with_label_values(&[route_label(route), reason])
            .inc();
    }

    pub fn render(&self) -> String {
        metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
