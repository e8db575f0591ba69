//! Front tier end to end: a real backend, workers and front tier in-process on free ports,
//! the real RabbitMQ on 127.0.0.1:5672 (override with FLASHSALE_TEST_AMQP_URL), a fresh
//! store and unique queue names per test.

mod admission;
mod cluster;
mod concurrency;
mod dashboard;
mod failures;
mod gate;
mod helpers;
mod overload;
mod routes;
mod target_wait;
mod workers;
