#!/usr/bin/env bash
# The whole flash-sale stack natively, in one command, for machines without Docker:
#
#   frontend :5000 -> /http/buy -> nginx :8000 -> backend :3001, :3002 -> .stack/flashsale.db
#                  -> /mq/buy   -> RabbitMQ :5672 (buy_requests) -> worker -> same store
#
#   scripts/stack.sh [--no-build] [--prefetch N] [--workers N] [--stock N]
#                    [--strategy count-insert|conditional] [--default-route http|mq]
#                    [--timeout-ms MS] [--no-nginx]
#
#   --no-build       use the release binaries already built (default: cargo build --release)
#   --prefetch N     worker prefetch (default: $FLASHSALE_PREFETCH, else 1 as in the original)
#   --workers N      worker processes on the queue (default 1)
#   --stock N        initial stock (default: $FLASHSALE_STOCK, else 100)
#   --strategy S     initial strategy (default: $FLASHSALE_STRATEGY, else count-insert)
#   --default-route  route of GET /buy (default: $FLASHSALE_DEFAULT_ROUTE, else http)
#   --timeout-ms MS  front tier timeout (default: $FLASHSALE_TIMEOUT_MS, else 20000, as compose)
#   --no-nginx       point the front tier straight at the first backend
#
# Admin token: $FLASHSALE_ADMIN_TOKEN, default change-me-local-only (as docker compose).
# RabbitMQ: the local broker at 127.0.0.1:5672 (guest/guest); started with
# `rabbitmq-server -detached` if it is down and installed (and then left running).
# nginx: used when installed (scripts/nginx-native.sh); otherwise the front tier talks to the
# first backend directly, and the script says so.
#
# Every start is a fresh sale: the store file .stack/flashsale.db is removed first.
# Logs: .stack/logs/<service>.log. Runs in the foreground until Ctrl-C or SIGTERM, then stops
# every service it started (front tier first, so requests in flight drain) and exits 0.
# If a service dies, the others are stopped and the script exits 1.
#
# For scripts: start it in the background, wait for the line starting with "stack: ready"
# on stdout (or poll http://127.0.0.1:5000/healthz until 200), run the load, then send
# SIGTERM to the script's PID and wait for it.
set -euo pipefail

usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
say() { echo "stack: $*"; }
die() { echo "stack: error: $*" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build=1 use_nginx=1 workers=1
prefetch="${FLASHSALE_PREFETCH:-1}"
stock="${FLASHSALE_STOCK:-100}"
strategy="${FLASHSALE_STRATEGY:-count-insert}"
default_route="${FLASHSALE_DEFAULT_ROUTE:-http}"
timeout_ms="${FLASHSALE_TIMEOUT_MS:-20000}"
admin_token="${FLASHSALE_ADMIN_TOKEN:-change-me-local-only}"
amqp_url="${FLASHSALE_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"

while (($#)); do
    case "$1" in
        --no-build) build=0; shift ;;
        --no-nginx) use_nginx=0; shift ;;
        --prefetch) (($# >= 2)) || usage; prefetch="$2"; shift 2 ;;
        --workers) (($# >= 2)) || usage; workers="$2"; shift 2 ;;
        --stock) (($# >= 2)) || usage; stock="$2"; shift 2 ;;
        --strategy) (($# >= 2)) || usage; strategy="$2"; shift 2 ;;
        --default-route) (($# >= 2)) || usage; default_route="$2"; shift 2 ;;
        --timeout-ms) (($# >= 2)) || usage; timeout_ms="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "stack: unknown argument: $1" >&2; usage ;;
    esac
done
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer"

# Fixed local ports (the design's): front tier 5000, nginx 8000, backends 3001 and 3002.
# Workers answer /healthz on 3101, 3102, ... (FLASHSALE_HEALTH_LISTEN).
frontend_port=5000 nginx_port=8000 backend_ports=(3001 3002) worker_health_base=3100

stack_dir="$root/.stack"
logs="$stack_dir/logs"
store="$stack_dir/flashsale.db"
bin="${CARGO_TARGET_DIR:-$root/target}/release"

# name -> pid of every process this script started, in start order.
names=() pids=()
stopping=0

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_all() {
    trap '' INT TERM
    ((${#pids[@]})) || return 0
    say "stopping..."
    # Reverse start order: front tier first, so the requests in flight are answered.
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        local deadline=$((SECONDS + 15))
        while kill -0 "${pids[i]}" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        if kill -0 "${pids[i]}" 2>/dev/null; then
            say "${names[i]} did not stop in 15 s; killing it"
            kill -KILL "${pids[i]}" 2>/dev/null || true
        fi
        wait "${pids[i]}" 2>/dev/null || true
    done
    pids=() names=()
    say "stopped"
}
# shellcheck disable=SC2317 # invoked by the trap
on_signal() { stopping=1; }
trap on_signal INT TERM
trap stop_all EXIT

# start NAME COMMAND...: runs it in the background, output to .stack/logs/NAME.log.
start() {
    local name="$1"; shift
    "$@" >"$logs/$name.log" 2>&1 &
    names+=("$name") pids+=("$!")
}

# wait_healthy NAME URL: polls until 200, the deadline, a signal, or the process's death.
wait_healthy() {
    local name="$1" url="$2" pid="" i deadline=$((SECONDS + 60))
    for i in "${!names[@]}"; do [[ "${names[i]}" == "$name" ]] && pid="${pids[i]}"; done
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        ((stopping)) && exit 0
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logs/$name.log" >&2 || true
            die "$name exited during start-up (log: $logs/$name.log)"
        fi
        ((SECONDS < deadline)) || die "$name not healthy at $url after 60 s (log: $logs/$name.log)"
        sleep 0.2
    done
}

# --- Preconditions -----------------------------------------------------------------------
command -v curl >/dev/null || die "curl is required (Debian: apt-get install -y curl)"
ports=("$frontend_port" "${backend_ports[@]}")
((use_nginx)) && ports+=("$nginx_port")
for ((w = 1; w <= workers; w++)); do ports+=($((worker_health_base + w))); done
for port in "${ports[@]}"; do
    ! port_busy "$port" || die "port $port is already in use (another stack running?)"
done

if ! port_busy 5672; then
    rabbitmq_server="$(PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v rabbitmq-server || true)"
    [[ -n "$rabbitmq_server" ]] \
        || die "RabbitMQ is not running on 127.0.0.1:5672 and rabbitmq-server is not installed"
    say "RabbitMQ is down; starting it (rabbitmq-server -detached)"
    "$rabbitmq_server" -detached
    deadline=$((SECONDS + 90))
    until port_busy 5672; do
        ((SECONDS < deadline)) || die "RabbitMQ did not come up on :5672 within 90 s"
        ((stopping)) && exit 0
        sleep 0.5
    done
fi

nginx_script="$root/scripts/nginx-native.sh"
if ((use_nginx)); then
    if [[ ! -x "$nginx_script" ]]; then
        say "scripts/nginx-native.sh not found: the front tier talks to one backend directly"
        use_nginx=0
    elif ! PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v nginx >/dev/null \
        && [[ -z "${NGINX_BIN:-}" ]]; then
        say "nginx is not installed: the front tier talks to one backend directly"
        say "(Debian: apt-get install -y nginx)"
        use_nginx=0
    fi
fi

# --- Build ---------------------------------------------------------------------------------
if ((build)); then
    say "building release binaries (cargo build --release -p backend -p worker -p frontend)"
    (cd "$root" && cargo build --release -p backend -p worker -p frontend)
fi
for b in backend worker frontend; do
    [[ -x "$bin/$b" ]] || die "$bin/$b not found: run without --no-build"
done
((stopping)) && exit 0

# --- Start ---------------------------------------------------------------------------------
mkdir -p "$logs"
rm -f "$store" "$store-wal" "$store-shm"
: "${RUST_LOG:=info}"
export RUST_LOG

common=(--store "$store" --stock "$stock" --strategy "$strategy")
for port in "${backend_ports[@]}"; do
    start "backend-$port" env FLASHSALE_ADMIN_TOKEN="$admin_token" \
        "$bin/backend" --listen "127.0.0.1:$port" "${common[@]}"
done
for port in "${backend_ports[@]}"; do
    wait_healthy "backend-$port" "http://127.0.0.1:$port/healthz"
done

if ((use_nginx)); then
    start nginx "$nginx_script" --listen "$nginx_port" --dir "$stack_dir/nginx" "${backend_ports[@]}"
    backend_url="http://127.0.0.1:$nginx_port"
    wait_healthy nginx "$backend_url/healthz"
else
    backend_url="http://127.0.0.1:${backend_ports[0]}"
fi

for ((w = 1; w <= workers; w++)); do
    start "worker-$w" env FLASHSALE_AMQP_URL="$amqp_url" \
        "$bin/worker" "${common[@]}" --prefetch "$prefetch" \
        --health-listen "127.0.0.1:$((worker_health_base + w))" \
        --connection-name "flashsale-worker-$w"
done
for ((w = 1; w <= workers; w++)); do
    wait_healthy "worker-$w" "http://127.0.0.1:$((worker_health_base + w))/healthz"
done

start frontend env FLASHSALE_AMQP_URL="$amqp_url" \
    "$bin/frontend" --listen "127.0.0.1:$frontend_port" --backend-url "$backend_url" \
    --default-route "$default_route" --timeout-ms "$timeout_ms"
wait_healthy frontend "http://127.0.0.1:$frontend_port/healthz"

via=$([[ "$backend_url" == *":$nginx_port" ]] && echo "nginx" || echo "backend-${backend_ports[0]} (no nginx)")
say "ready frontend=http://127.0.0.1:$frontend_port backend=$backend_url via=$via" \
    "workers=$workers prefetch=$prefetch stock=$stock strategy=$strategy logs=$logs"
say "try: curl 'http://127.0.0.1:$frontend_port/mq/buy' ; curl 'http://127.0.0.1:$frontend_port/http/buy'" \
    "; curl 'http://127.0.0.1:$frontend_port/sale' ; Ctrl-C stops everything"

# --- Run until a signal or a service's death ------------------------------------------------
status=0
while ((!stopping)); do
    wait -n "${pids[@]}" 2>/dev/null || true
    ((stopping)) && break
    for i in "${!pids[@]}"; do
        if ! kill -0 "${pids[i]}" 2>/dev/null; then
            say "${names[i]} exited unexpectedly (log: $logs/${names[i]}.log)"
            status=1
        fi
    done
    ((status)) && break
done
stop_all
exit "$status"
