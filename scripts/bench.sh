#!/usr/bin/env bash
# The main job without Docker: the original experiment's matrix on the native stack, with
# the answers to its dilemma next to it.
#
#   scripts/bench.sh [loadtest matrix options...]
#
# Builds the release binaries, starts the native stack (scripts/stack.sh: 2 backends behind
# nginx, one RabbitMQ worker, front tier on :5000), runs
#   loadtest matrix http://127.0.0.1:5000 --store sqlite,postgres
#       --strategies count-insert,conditional,row-lock --batch 1,64 --gate off,on
#       --skip strategy=count-insert,gate=on --skip route=http,batch=64
#       --skip store=postgres,gate=on --skip store=sqlite,strategy=row-lock
#       --reconfigure 'scripts/stack.sh --reconfigure'      (--out results --label matrix)
# (routes http and mq; c = 100, 300, 500; -r 10; stock 100), stops the stack, and prints where
# the report is: results/matrix.md, .json, .html and the SVG plots.
# The rows with store sqlite, batch 1 and gate off are the original experiment (on the
# embedded store); store postgres runs each strategy on a fresh PostgreSQL database on
# 127.0.0.1:5432 (FLASHSALE_PG_URL), dropped after. The skips keep the job short and drop
# only rows that would repeat others or that bench-postgres.sh measures: the gate never
# closes under count-insert; the worker's batch does not touch the HTTP route; the gate
# answers from memory whatever the store; row-lock on SQLite is the whole database's lock.
# Extra arguments go to `loadtest matrix`. Given any of --store, --strategies, --batch, --gate
# or --skip, the caller's dimensions replace the defaults above and no default skip is added
# (e.g. `--store sqlite --batch 1 --gate off` for the original rows only).
#
# The front tier's admission time bound is off here (FLASHSALE_TARGET_WAIT_MS=0): the
# experiment measures how a route's latency grows with concurrency, which refusals would
# hide. scripts/bench-overload.sh measures the stack with its default admission.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bench_name=bench
# shellcheck source=scripts/lib/bench-common.sh
source scripts/lib/bench-common.sh

# The default dimensions, unless the caller gives their own (a repeated option would add to
# the list rather than replace it, and a skip matching no row is a usage error).
dimensions=()
if [[ " $* " != *" --store"* && " $* " != *" --strategies"* && " $* " != *" --batch"* &&
    " $* " != *" --gate"* && " $* " != *" --skip"* ]]; then
    dimensions=(--store "sqlite,postgres" --strategies "count-insert,conditional,row-lock"
        --batch "1,64" --gate "off,on"
        --skip "strategy=count-insert,gate=on" --skip "route=http,batch=64"
        --skip "store=postgres,gate=on" --skip "store=sqlite,strategy=row-lock")
fi

build_release
FLASHSALE_TARGET_WAIT_MS=0 start_stack --strategy count-insert --store sqlite
"$loadtest" matrix "$target" "${dimensions[@]}" \
    --reconfigure "$PWD/scripts/stack.sh --reconfigure" "$@"
say "done: the report files are listed above (wrote ...)"
