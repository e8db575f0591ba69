#!/usr/bin/env bash
# The main job without Docker: the original experiment's matrix on the native stack, with
# the answers to its dilemma next to it.
#
#   scripts/bench.sh [loadtest matrix options...]
#
# Builds the release binaries, starts the native stack (scripts/stack.sh: 2 backends on the
# embedded store behind nginx, one RabbitMQ worker, front tier on :5000), runs
#   loadtest matrix http://127.0.0.1:5000 --batch 1,64 --gate off,on
#       --reconfigure 'scripts/stack.sh --reconfigure'      (--out results --label matrix)
# (routes http and mq; c = 100, 300, 500; -r 10; stock 100; strategies count-insert and
# conditional; the worker's batch 1 (prefetch 1, the original) and 64; the front tier's
# sold-out gate off (the original) and on), stops the stack, and prints where the report is:
#   results/matrix.md, results/matrix.json, results/matrix-*.svg
# The rows with batch 1 and gate off are the original experiment. The count-insert rows with
# the gate on are skipped (--skip strategy=count-insert,gate=on): the gate never closes under
# count-insert, so they would repeat the gate-off rows. Extra arguments go to
# `loadtest matrix` and may override the defaults (e.g. --batch 1 --gate off for the original
# rows only, or --label my-run --concurrency 100 --out /tmp/r).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bench_name=bench
# shellcheck source=scripts/lib/bench-common.sh
source scripts/lib/bench-common.sh

# The stack dimensions, unless the caller gives their own (a repeated option would add to
# the list rather than replace it).
dimensions=()
[[ " $* " == *" --batch"* ]] || dimensions+=(--batch "1,64")
[[ " $* " == *" --gate"* ]] || dimensions+=(--gate "off,on")
# Only over the default gate and strategies: a skip matching no row is a usage error.
[[ " $* " == *" --gate"* || " $* " == *" --skip"* || " $* " == *" --strategies"* ]] ||
    dimensions+=(--skip "strategy=count-insert,gate=on")

build_release
start_stack --strategy count-insert
"$loadtest" matrix "$target" "${dimensions[@]}" \
    --reconfigure "$PWD/scripts/stack.sh --reconfigure" "$@"
say "done: the report files are listed above (wrote ...)"
