#!/usr/bin/env bash
# The project's test command: formatting, lints (warnings are errors), then every test of the
# workspace. Needs RabbitMQ on 127.0.0.1:5672 for the queue tests (`bash .ci/run` installs
# and starts everything first); MongoDB tests run only when MONGODB_URI is set.
# --locked: a stale Cargo.lock fails here, as it would in the Docker build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test --workspace --locked"
cargo test --workspace --locked

printf '\n==> all checks passed\n'
