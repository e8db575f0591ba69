//! The worker's metrics, served as `GET /metrics` on its health listener: requests by
//! outcome, batch sizes and durations, whether it consumes, the request queue's depth,
//! reconnections and store operation times.

use std::time::Duration;

use order_core::metrics::{self, Histogram, IntCounter, IntCounterVec, IntGauge, Registry};

/// Batch sizes, as powers of two up to a large prefetch.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    pub malformed: IntCounter,
    pub store_errors: IntCounter,
    batch_size: Histogram,
    batch_duration: Histogram,
    pub consuming: IntGauge,
    pub queue_ready: IntGauge,
    pub reconnects: IntCounter,
}

impl Metrics {
    pub fn new(queue: &str) -> Self {
        let registry = Registry::new();
        let requests = metrics::counter_vec(
            &registry,
            "flashsale_worker_requests_total",
            "Requests this worker settled, by outcome.",
            &["outcome"],
        );
        let queue_ready = metrics::gauge_vec(
            &registry,
            "flashsale_queue_messages_ready",
            "Requests waiting in the queue (polled every second).",
            &["queue"],
        )
        .with_label_values(&[queue]);
        Self {
            malformed: requests.with_label_values(&["malformed"]),
            store_errors: requests.with_label_values(&["store_error"]),
            requests,
            batch_size: metrics::histogram(
                &registry,
                "flashsale_worker_batch_size",
                "Requests decided per store transaction (1 when unbatched).",
                BATCH_BUCKETS,
            ),
            batch_duration: metrics::histogram(
                &registry,
                "flashsale_worker_batch_duration_seconds",
                "Time to decide, reply to and acknowledge one batch (or one request).",
                metrics::LATENCY_BUCKETS,
            ),
            consuming: metrics::gauge(
                &registry,
                "flashsale_worker_consuming",
                "1 while a consumer is registered with the broker.",
            ),
            queue_ready,
            reconnects: metrics::counter(
                &registry,
                "flashsale_amqp_reconnects_total",
                "Connections to RabbitMQ made after the first.",
            ),
            registry,
        }
    }

    pub fn store_timings(&self) -> order_core::store::OperationTimings {
        metrics::store_timings(&self.registry)
    }

    pub fn record_answer(&self, outcome: order_core::Outcome) {
        let label = match outcome {
            order_core::Outcome::Ordered => "ordered",
            order_core::Outcome::SoldOut => "sold_out",
            order_core::Outcome::AlreadyOrdered => "already_ordered",
        };
        self.requests.with_label_values(&[label]).inc();
    }

    pub fn record_batch(&self, size: usize, took: Duration) {
        self.batch_size.observe(size as f64);
        self.batch_duration.observe(took.as_secs_f64());
    }

    pub fn render(&self) -> String {
        metrics::render(&self.registry)
    }
}
