//! The order backend over real HTTP: each test starts a backend on a free port with its own
//! embedded store, and talks to it like a client would.

mod admin;
mod bad_input;
mod buy;
mod helpers;
mod overload;
mod postgres;
mod replica_loss;
