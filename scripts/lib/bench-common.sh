# shellcheck shell=bash
# shellcheck disable=SC2034 # loadtest, target: read by the scripts that source this file
# Shared by the benchmark scripts (bench.sh, bench-queue.sh, bench-cluster.sh,
# bench-overload.sh, bench-postgres.sh): sourced, not run. The caller sets `bench_name` (its log prefix) and
# works from the repository's root.
#
#   say/die             one line on stdout / stderr (die exits 1)
#   build_release       cargo build --release of the four binaries
#   start_stack ARGS    scripts/stack.sh --no-build ARGS in the background, until ready
#   stop_stack          SIGTERM to it, and wait (also run on exit)
#   stack_processes     NAME=PID of every service of the running stack, RabbitMQ included
#   start_sampling F [NAME=PID...]  CPU and RSS of those processes (and these) into F
#                       (scripts/lib/procstat.py), every $sample_interval s (default 0.5)
#   stop_sampling
#   cpu_cells F         "name N%, name N%, ...": CPU per process over all of samples file F
#   report_rps F        a run report's trans/sec, rounded
#   machine_line        "2 cores (model), Debian ..., kernel ..., RabbitMQ x, nginx y"

: "${bench_name:?set bench_name before sourcing bench-common.sh}"
say() { echo "${bench_name}: $*"; }
die() { echo "${bench_name}: error: $*" >&2; exit 1; }

# The stack's settings must come from the calling script only: exported, they would also
# become one-value dimensions of a matrix (the load tester reads the same variables).
unset FLASHSALE_BATCH FLASHSALE_WORKERS FLASHSALE_QUEUE_TYPE FLASHSALE_SOLD_OUT_GATE \
    FLASHSALE_PREFETCH FLASHSALE_QUEUE_MAX_LENGTH FLASHSALE_GATE FLASHSALE_STORE FLASHSALE_STORES \
    FLASHSALE_SKIP FLASHSALE_START_TOGETHER
export FLASHSALE_ADMIN_TOKEN="${FLASHSALE_ADMIN_TOKEN:-change-me-local-only}"
loadtest="${LOADTEST:-$PWD/target/release/loadtest}"
target=http://127.0.0.1:5000
procstat="$PWD/scripts/lib/procstat.py"

build_release() {
    say "building release binaries (first time: a few minutes)"
    cargo build --release --locked -p backend -p worker -p frontend -p loadtest
}

stack_pid=""
stack_log=.stack/${bench_name}-stack.out
sampler_pid=""

stop_stack() {
    stop_sampling
    if [[ -n "$stack_pid" ]] && kill -0 "$stack_pid" 2>/dev/null; then
        say "stopping the stack"
        kill -TERM "$stack_pid" 2>/dev/null || true
        wait "$stack_pid" 2>/dev/null || true
    fi
    stack_pid=""
}
trap stop_stack EXIT
trap 'exit 130' INT TERM

start_stack() {
    mkdir -p .stack
    say "starting the stack: scripts/stack.sh --no-build $* (log: $stack_log)"
    # Emptied here, not only by the background job's redirection: that one may come after
    # the first look for "ready", which would then find the previous stack's line.
    : >"$stack_log"
    scripts/stack.sh --no-build "$@" >"$stack_log" 2>&1 &
    stack_pid=$!
    local deadline=$((SECONDS + 240))
    until grep -q '^stack: ready' "$stack_log"; do
        if ! kill -0 "$stack_pid" 2>/dev/null; then
            tail -n 20 "$stack_log" >&2
            die "the stack did not start (see $stack_log and .stack/logs/)"
        fi
        ((SECONDS < deadline)) || die "the stack was not ready within 4 minutes"
        sleep 0.5
    done
    grep '^stack: ready' "$stack_log"
}

# NAME=PID for the front tier, each backend and worker, nginx's workers and the local
# RabbitMQ node (the processes a row's load can land on).
stack_processes() {
    local bin pid
    bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
    for pid in $(pgrep -f "^$bin/frontend"); do echo "frontend=$pid"; done
    for pid in $(pgrep -f "^$bin/backend"); do echo "backend=$pid"; done
    for pid in $(pgrep -f "^$bin/worker"); do echo "worker=$pid"; done
    if [[ -f .stack/nginx/nginx.pid ]]; then
        for pid in $(pgrep -P "$(cat .stack/nginx/nginx.pid)"); do echo "nginx=$pid"; done
    fi
    local rabbit=/var/lib/rabbitmq/mnesia/rabbit@localhost.pid
    [[ -r "$rabbit" ]] && echo "rabbitmq=$(cat "$rabbit")"
    return 0
}

start_sampling() {
    local file="$1"
    shift
    # shellcheck disable=SC2046 # one NAME=PID word each
    python3 "$procstat" sample "$file" "${sample_interval:-0.5}" $(stack_processes) "$@" &
    sampler_pid=$!
}

stop_sampling() {
    if [[ -n "$sampler_pid" ]]; then
        kill -TERM "$sampler_pid" 2>/dev/null || true
        wait "$sampler_pid" 2>/dev/null || true
    fi
    sampler_pid=""
}

cpu_cells() {
    python3 "$procstat" window "$1" 0 1e9 | tail -n +3 |
        awk -F'|' '{gsub(/ /, "", $2); gsub(/ /, "", $3); printf "%s%s %s%%", sep, $2, $3; sep = ", "}'
}

# The load tester, for the scripts' runs: a failed --check (exit 3) is a result, reported in
# the summary; anything else stops the script. The admin token is never taken from the
# environment (the stack needs it exported): only a run given `--admin-token` resets the
# sale, so that runs sharing one sale leave it alone.
lt() {
    local status=0
    env -u FLASHSALE_ADMIN_TOKEN "$loadtest" "$@" || status=$?
    ((status == 0 || status == 3)) || die "loadtest $1 failed (exit $status)"
}

report_rps() {
    python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["throughput_rps"]))' "$1"
}

machine_line() {
    local model os rabbit nginx
    model="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
    os="$(. /etc/os-release && echo "$PRETTY_NAME")"
    rabbit="$(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null || echo '?')"
    nginx="$(dpkg-query -W -f '${Version}' nginx 2>/dev/null || echo '?')"
    echo "$(nproc) cores ($model), $(($(grep MemTotal /proc/meminfo | awk '{print $2}') / 1048576)) GiB," \
        "$os, kernel $(uname -r), RabbitMQ $rabbit, nginx $nginx"
}
