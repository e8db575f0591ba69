//! Integration tests: the load tester against small axum servers started on port 0 in
//! each test. One test binary (modules below) keeps link time low.

mod binary;
mod buyers;
mod checks;
mod engines;
mod errors;
mod fairness;
mod helpers;
mod html;
mod matrix;
mod merge;
mod metrics;
mod open_loop;
mod report_schema;
mod run;
mod start;
mod timeline;
