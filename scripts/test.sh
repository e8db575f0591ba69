#!/usr/bin/env bash
# The project's test command: formatting, lints (warnings are errors), then every test of the
# workspace. Needs RabbitMQ on 127.0.0.1:5672 for the queue tests and PostgreSQL on
# 127.0.0.1:5432 for the store tests (FLASHSALE_TEST_PG_URL to use another server; `bash
# .ci/run` installs and starts both first); MongoDB tests run only when MONGODB_URI is set.
# --locked: a stale Cargo.lock fails here, as it would in the Docker build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test --workspace --locked"
if [[ -z "${MONGODB_URI:-}" ]]; then
    echo "note: MONGODB_URI is not set: the MongoDB half of the store tests is SKIPPED"
    echo "      (no MongoDB server here; e.g. MONGODB_URI=mongodb://127.0.0.1:27017/?replicaSet=rs0 scripts/test.sh)"
fi
cargo test --workspace --locked

if [[ -z "${MONGODB_URI:-}" ]]; then
    printf '\n==> all checks passed (MongoDB store tests SKIPPED: MONGODB_URI not set)\n'
else
    printf '\n==> all checks passed (MongoDB store tests ran against MONGODB_URI)\n'
fi
