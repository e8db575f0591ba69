//! Worker integration tests against the real RabbitMQ on 127.0.0.1:5672 (override with
//! FLASHSALE_TEST_AMQP_URL). Each test uses its own queue names and its own temporary store.

mod batch;
mod helpers;
mod lifecycle;
mod postgres;
mod rpc;
