#!/usr/bin/env bash
# The main job without Docker: the original experiment's matrix on the native stack.
#
#   scripts/bench.sh [loadtest matrix options...]
#
# Builds the release binaries, starts the native stack (scripts/stack.sh: 2 backends on the
# embedded store behind nginx, RabbitMQ worker with prefetch 1, front tier on :5000), runs
#   loadtest matrix http://127.0.0.1:5000   (defaults: --out results --label matrix)
# (routes http and mq; c = 100, 300, 500; -r 10; stock 100; strategies count-insert and
# conditional), stops the stack, and prints where the report is:
#   results/matrix.md, results/matrix.json, results/matrix-*.svg
# Extra arguments go to `loadtest matrix` (e.g. --label my-run --concurrency 100 --out /tmp/r).
# Stack options come from the environment (FLASHSALE_PREFETCH, ...; see scripts/stack.sh).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export FLASHSALE_ADMIN_TOKEN="${FLASHSALE_ADMIN_TOKEN:-change-me-local-only}"
say() { echo "bench: $*"; }

say "building release binaries (first time: a few minutes)"
cargo build --release --locked -p backend -p worker -p frontend -p loadtest

mkdir -p .stack
stack_log=.stack/stack.out
say "starting the native stack (log: $stack_log)"
scripts/stack.sh --no-build >"$stack_log" 2>&1 &
stack_pid=$!
stop_stack() {
    if kill -0 "$stack_pid" 2>/dev/null; then
        say "stopping the stack"
        kill -TERM "$stack_pid" 2>/dev/null || true
        wait "$stack_pid" 2>/dev/null || true
    fi
}
trap stop_stack EXIT
trap 'exit 130' INT TERM

# Wait for the stack's ready line; give up if it dies or takes more than two minutes.
for _ in $(seq 240); do
    grep -q '^stack: ready' "$stack_log" && break
    if ! kill -0 "$stack_pid" 2>/dev/null; then
        tail -n 20 "$stack_log" >&2
        say "error: the stack did not start (see $stack_log and .stack/logs/)" >&2
        exit 1
    fi
    sleep 0.5
done
grep '^stack: ready' "$stack_log" || { say "error: the stack was not ready within 2 minutes" >&2; exit 1; }

target/release/loadtest matrix http://127.0.0.1:5000 "$@"
say "done: the report files are listed above (wrote ...)"
