#!/usr/bin/env bash
# The whole flash-sale stack natively, in one command, for machines without Docker:
#
#   frontend :5000 -> /http/buy -> nginx :8000 -> backend :3001, :3002 -> store
#                  -> /mq/buy   -> RabbitMQ :5672 (buy_requests) -> worker(s) -> same store
#
#   scripts/stack.sh [--no-build] [--no-nginx] [--cluster] [--store STORE] [--workers N]
#                    [--batch N] [--prefetch N] [--gate on|off] [--queue-type classic|quorum]
#                    [--queue-max-length N] [--stock N] [--strategy S]
#                    [--default-route http|mq] [--timeout-ms MS]
#   scripts/stack.sh --reconfigure [--store STORE] [--workers N] [--batch N] [--prefetch N]
#                    [--gate on|off] [--queue-type classic|quorum] [--queue-max-length N]
#
#   --no-build       use the release binaries already built (default: cargo build --release)
#   --no-nginx       point the front tier straight at the first backend
#   --cluster        a three-node RabbitMQ cluster (scripts/rabbit-cluster.sh up, data in
#                    .stack/rabbit-cluster, AMQP 127.0.0.1:5701-5703) instead of the local
#                    broker; workers and front tier get the list of its nodes, and the queue
#                    type defaults to quorum. A cluster the stack started is stopped with it.
#   --store STORE    where the backends and workers keep orders ($FLASHSALE_STORE, else sqlite):
#                    sqlite    .stack/flashsale.db, removed first (a fresh file per run);
#                    postgres  a fresh database flashsale_stack_<pid> on the PostgreSQL server
#                              $FLASHSALE_PG_URL (no database in it; default
#                              postgres://postgres@127.0.0.1:5432), dropped when the stack stops;
#                    a postgres://, postgresql:// or mongodb:// URL, a sqlite://PATH or a
#                    file path: used as it is (never created, emptied or dropped here).
#   --workers N      worker processes on the queue ($FLASHSALE_WORKERS, else 1)
#   --batch N        worker batch size ($FLASHSALE_BATCH, else 1: one buy at a time)
#   --prefetch N     worker prefetch, batch 1 only ($FLASHSALE_PREFETCH, else 1 as the original)
#   --gate on|off    front tier sold-out gate ($FLASHSALE_SOLD_OUT_GATE, else off)
#   --queue-type T   classic or quorum ($FLASHSALE_QUEUE_TYPE, else classic; quorum with --cluster)
#   --queue-max-length N  most requests the queue holds, 0 unbounded ($FLASHSALE_QUEUE_MAX_LENGTH)
#   --stock N        initial stock ($FLASHSALE_STOCK, else 100)
#   --strategy S     initial strategy ($FLASHSALE_STRATEGY, else count-insert)
#   --default-route  route of GET /buy ($FLASHSALE_DEFAULT_ROUTE, else http)
#   --timeout-ms MS  front tier timeout ($FLASHSALE_TIMEOUT_MS, else 20000, as compose)
#   --reconfigure    do not start a stack: tell the running one (.stack/stack.pid) to restart
#                    its workers and front tier with the settings given as options or in
#                    FLASHSALE_WORKERS, FLASHSALE_BATCH, FLASHSALE_PREFETCH,
#                    FLASHSALE_SOLD_OUT_GATE, FLASHSALE_QUEUE_TYPE, FLASHSALE_QUEUE_MAX_LENGTH
#                    (a setting given nowhere keeps its value), wait until they are healthy,
#                    and exit 0; non-zero with the reason if it failed. A new store
#                    (--store or FLASHSALE_STORE) restarts the backends too, on a fresh store
#                    (the same rules as at start; a database the stack made is dropped). For
#                    `loadtest matrix --reconfigure 'scripts/stack.sh --reconfigure'`.
#
# Defaults are the original experiment: one worker, prefetch 1, classic queue, no gate.
# Admin token: $FLASHSALE_ADMIN_TOKEN, default change-me-local-only (as docker compose).
# RabbitMQ: the local broker at 127.0.0.1:5672 (guest/guest); started with
# `rabbitmq-server -detached` if it is down and installed (and then left running).
# nginx: used when installed (scripts/nginx-native.sh); otherwise the front tier talks to the
# first backend directly, and the script says so.
#
# Every start is a fresh sale: the store file .stack/flashsale.db is removed first (or a fresh
# PostgreSQL database made, with --store postgres; that needs psql). A request
# queue left with another type or length than asked for is deleted (RabbitMQ refuses to
# declare a queue again with other arguments), at start and on a reconfiguration; deleting it
# needs rabbitmqctl (root, or the rabbitmq user).
# Logs: .stack/logs/<service>.log. Runs in the foreground until Ctrl-C or SIGTERM, then stops
# every service it started (front tier first, so requests in flight drain) and exits 0.
# If a service dies outside a reconfiguration, the others are stopped and the script exits 1;
# so does a reconfiguration that cannot bring the services back.
#
# For scripts: start it in the background, wait for the line starting with "stack: ready"
# on stdout (or poll http://127.0.0.1:5000/healthz until 200), run the load, then send
# SIGTERM to the script's PID and wait for it. Reconfiguring: SIGUSR1 to the stack with a
# request in .stack/reconfigure.request is what --reconfigure does; use that.
set -euo pipefail

usage() { sed -n '2,68p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
say() { echo "stack: $*"; }
die() { echo "stack: error: $*" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build=1 use_nginx=1 cluster=0 reconfigure_client=0
workers="${FLASHSALE_WORKERS:-1}"
batch="${FLASHSALE_BATCH:-1}"
prefetch="${FLASHSALE_PREFETCH:-1}"
gate="${FLASHSALE_SOLD_OUT_GATE:-off}"
queue_type="${FLASHSALE_QUEUE_TYPE:-}"
queue_max_length="${FLASHSALE_QUEUE_MAX_LENGTH:-0}"
stock="${FLASHSALE_STOCK:-100}"
strategy="${FLASHSALE_STRATEGY:-count-insert}"
default_route="${FLASHSALE_DEFAULT_ROUTE:-http}"
timeout_ms="${FLASHSALE_TIMEOUT_MS:-20000}"
admin_token="${FLASHSALE_ADMIN_TOKEN:-change-me-local-only}"
amqp_url="${FLASHSALE_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
queue="${FLASHSALE_QUEUE:-buy_requests}"
store_choice="${FLASHSALE_STORE:-sqlite}"
pg_server="${FLASHSALE_PG_URL:-postgres://postgres@127.0.0.1:5432}"
# Settings given on the command line (for --reconfigure: only these and the env change).
given=()

while (($#)); do
    case "$1" in
        --no-build) build=0; shift ;;
        --no-nginx) use_nginx=0; shift ;;
        --cluster) cluster=1; shift ;;
        --reconfigure) reconfigure_client=1; shift ;;
        --store) (($# >= 2)) || usage; store_choice="$2"; given+=(store); shift 2 ;;
        --workers) (($# >= 2)) || usage; workers="$2"; given+=(workers); shift 2 ;;
        --batch) (($# >= 2)) || usage; batch="$2"; given+=(batch); shift 2 ;;
        --prefetch) (($# >= 2)) || usage; prefetch="$2"; given+=(prefetch); shift 2 ;;
        --gate) (($# >= 2)) || usage; gate="$2"; given+=(gate); shift 2 ;;
        --queue-type) (($# >= 2)) || usage; queue_type="$2"; given+=(queue_type); shift 2 ;;
        --queue-max-length) (($# >= 2)) || usage; queue_max_length="$2"; given+=(queue_max_length); shift 2 ;;
        --stock) (($# >= 2)) || usage; stock="$2"; shift 2 ;;
        --strategy) (($# >= 2)) || usage; strategy="$2"; shift 2 ;;
        --default-route) (($# >= 2)) || usage; default_route="$2"; shift 2 ;;
        --timeout-ms) (($# >= 2)) || usage; timeout_ms="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "stack: unknown argument: $1" >&2; usage ;;
    esac
done
if [[ -z "$queue_type" ]]; then
    if ((cluster)); then queue_type=quorum; else queue_type=classic; fi
fi

# check_settings: the reason the worker and front tier settings are unusable, if they are.
# in_range VALUE MIN MAX: VALUE is an integer within [MIN, MAX].
in_range() { [[ "$1" =~ ^[0-9]+$ ]] && (($1 >= $2 && $1 <= $3)); }
check_settings() {
    if ! in_range "$workers" 1 64; then
        echo "--workers must be 1..64, not '$workers'"
    elif ! in_range "$batch" 1 65535; then
        echo "--batch must be 1..65535, not '$batch'"
    elif ! in_range "$prefetch" 1 65535; then
        echo "--prefetch must be 1..65535, not '$prefetch'"
    elif [[ "$gate" != on && "$gate" != off ]]; then
        echo "--gate must be on or off, not '$gate'"
    elif [[ "$queue_type" != classic && "$queue_type" != quorum ]]; then
        echo "--queue-type must be classic or quorum, not '$queue_type'"
    elif ! in_range "$queue_max_length" 0 4294967295; then
        echo "--queue-max-length must be 0..4294967295, not '$queue_max_length'"
    elif [[ -z "$store_choice" || "$store_choice" == *$'\n'* ]]; then
        echo "--store must be sqlite, postgres, a store URL or a file path"
    elif [[ "$store_choice" == *://* && ! "$store_choice" =~ ^(postgres|postgresql|mongodb|mongodb\+srv|sqlite):// ]]; then
        echo "--store: unknown scheme in '${store_choice%%://*}://...' (postgres://, postgresql://, mongodb://, mongodb+srv://, sqlite://)"
    fi
}

stack_dir="$root/.stack"
logs="$stack_dir/logs"
sqlite_file="$stack_dir/flashsale.db"
pid_file="$stack_dir/stack.pid"
request_file="$stack_dir/reconfigure.request"
result_file="$stack_dir/reconfigure.result"
settings_file="$stack_dir/settings"
cluster_script="$root/scripts/rabbit-cluster.sh"
bin="${CARGO_TARGET_DIR:-$root/target}/release"

# --- Client mode: ask the running stack to reconfigure ------------------------------------
if ((reconfigure_client)); then
    request=()
    # The environment first (as `loadtest matrix --reconfigure` sets it), options over it.
    [[ -n "${FLASHSALE_STORE:-}" || " ${given[*]} " == *" store "* ]] && request+=("store=$store_choice")
    [[ -n "${FLASHSALE_WORKERS:-}" || " ${given[*]} " == *" workers "* ]] && request+=("workers=$workers")
    [[ -n "${FLASHSALE_BATCH:-}" || " ${given[*]} " == *" batch "* ]] && request+=("batch=$batch")
    [[ -n "${FLASHSALE_PREFETCH:-}" || " ${given[*]} " == *" prefetch "* ]] && request+=("prefetch=$prefetch")
    [[ -n "${FLASHSALE_SOLD_OUT_GATE:-}" || " ${given[*]} " == *" gate "* ]] && request+=("gate=$gate")
    [[ -n "${FLASHSALE_QUEUE_TYPE:-}" || " ${given[*]} " == *" queue_type "* ]] && request+=("queue_type=$queue_type")
    [[ -n "${FLASHSALE_QUEUE_MAX_LENGTH:-}" || " ${given[*]} " == *" queue_max_length "* ]] \
        && request+=("queue_max_length=$queue_max_length")
    problem="$(check_settings)"
    [[ -z "$problem" ]] || die "$problem"
    [[ -s "$pid_file" ]] || die "no running stack: $pid_file is missing (start scripts/stack.sh first)"
    stack_pid="$(tr -dc '0-9' <"$pid_file")"
    kill -0 "$stack_pid" 2>/dev/null || die "no running stack: pid $stack_pid in $pid_file is gone"
    # One reconfiguration at a time.
    exec 9>"$stack_dir/reconfigure.lock"
    flock -w 300 9 || die "another reconfiguration has held the lock for 5 minutes"
    id="$$-$(date +%s%N)"
    printf '%s\n' "id=$id" "${request[@]}" >"$request_file.tmp"
    mv "$request_file.tmp" "$request_file"
    say "reconfiguring the stack (pid $stack_pid): ${request[*]:-(nothing changed: restart)}"
    kill -USR1 "$stack_pid"
    deadline=$((SECONDS + ${FLASHSALE_RECONFIGURE_TIMEOUT_S:-120}))
    while :; do
        if [[ -s "$result_file" ]] && grep -qx "id=$id" "$result_file"; then
            status="$(sed -n 's/^status=//p' "$result_file")"
            message="$(sed -n 's/^message=//p' "$result_file")"
            if [[ "$status" == ok ]]; then
                say "reconfigured: $message"
                exit 0
            fi
            die "reconfiguration failed: $message"
        fi
        kill -0 "$stack_pid" 2>/dev/null || die "the stack (pid $stack_pid) exited during the reconfiguration (log: $logs/)"
        ((SECONDS < deadline)) || die "no answer from the stack within ${FLASHSALE_RECONFIGURE_TIMEOUT_S:-120} s"
        sleep 0.2
    done
fi

problem="$(check_settings)"
[[ -z "$problem" ]] || die "$problem"

# Fixed local ports (the design's): front tier 5000, nginx 8000, backends 3001 and 3002.
# Workers answer /healthz on 3101, 3102, ... (FLASHSALE_HEALTH_LISTEN).
frontend_port=5000 nginx_port=8000 backend_ports=(3001 3002) worker_health_base=3100

# name -> pid of every process this script started, in start order.
names=() pids=()
stopping=0 reconfigure_requested=0 started_cluster=0

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop_named PREFIX: stops (SIGTERM, then SIGKILL after 15 s) every process whose name starts
# with PREFIX, last started first, and forgets them.
stop_named() {
    local prefix="$1" i keep_names=() keep_pids=()
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        [[ "${names[i]}" == "$prefix"* ]] || continue
        kill -TERM "${pids[i]}" 2>/dev/null || true
        local deadline=$((SECONDS + 15))
        while kill -0 "${pids[i]}" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        if kill -0 "${pids[i]}" 2>/dev/null; then
            say "${names[i]} did not stop in 15 s; killing it"
            kill -KILL "${pids[i]}" 2>/dev/null || true
        fi
        wait "${pids[i]}" 2>/dev/null || true
    done
    for i in "${!pids[@]}"; do
        if [[ "${names[i]}" != "$prefix"* ]]; then
            keep_names+=("${names[i]}") keep_pids+=("${pids[i]}")
        fi
    done
    names=("${keep_names[@]+"${keep_names[@]}"}") pids=("${keep_pids[@]+"${keep_pids[@]}"}")
}

stop_all() {
    trap '' INT TERM USR1
    if ((${#pids[@]})); then
        say "stopping..."
        # Reverse start order: front tier first, so the requests in flight are answered.
        stop_named ""
        say "stopped"
    fi
    close_store
    if ((started_cluster)); then
        say "stopping the RabbitMQ cluster it started"
        "$cluster_script" down || true
        started_cluster=0
    fi
    # Only our own pid file: a second stack that failed its port check must not remove it.
    if [[ -s "$pid_file" && "$(tr -dc '0-9' <"$pid_file")" == "$$" ]]; then
        rm -f "$pid_file"
    fi
}
# shellcheck disable=SC2317 # invoked by the trap
on_signal() { stopping=1; }
# shellcheck disable=SC2317 # invoked by the trap
on_reconfigure() { reconfigure_requested=1; }
trap on_signal INT TERM
# SIGUSR1, not SIGHUP: a stack started under nohup ignores SIGHUP, and bash cannot trap a
# signal that was ignored when it started.
trap on_reconfigure USR1
trap stop_all EXIT

# start NAME COMMAND...: runs it in the background, output to .stack/logs/NAME.log.
start() {
    local name="$1"; shift
    "$@" >>"$logs/$name.log" 2>&1 &
    names+=("$name") pids+=("$!")
}

# check_healthy NAME URL: polls until 200 (returns 0); returns 1, with the reason in
# $unhealthy, on the deadline or the process's death. Exits 0 on a stop signal.
unhealthy=""
check_healthy() {
    local name="$1" url="$2" pid="" i deadline=$((SECONDS + 60))
    for i in "${!names[@]}"; do [[ "${names[i]}" == "$name" ]] && pid="${pids[i]}"; done
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        ((stopping)) && exit 0
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logs/$name.log" >&2 || true
            unhealthy="$name exited during start-up (log: $logs/$name.log)"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            unhealthy="$name not healthy at $url after 60 s (log: $logs/$name.log)"
            return 1
        fi
        sleep 0.2
    done
}
wait_healthy() { check_healthy "$@" || die "$unhealthy"; }

# rabbitmqctl for the broker in use: a node of the cluster, or the local broker.
broker_ctl() {
    if ((cluster)); then
        "$cluster_script" ctl "$@"
    else
        local ctl
        ctl="$(PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v rabbitmqctl || true)"
        [[ -n "$ctl" ]] || { echo "rabbitmqctl is not installed" >&2; return 1; }
        "$ctl" "$@"
    fi
}

# ensure_queue_matches: deletes the request queue and its dead-letter queue if either was
# declared with another type, or the request queue with another maximum length, than the
# settings ask for (RabbitMQ would refuse the workers' and front tier's declarations).
# Their messages are requests of clients that are gone. Returns 1 if it cannot check/delete.
ensure_queue_matches() {
    local listing name type args want_length have_length stale=()
    listing="$(broker_ctl list_queues name type arguments -q --no-table-headers 2>/dev/null)" || {
        say "warning: cannot list the broker's queues (rabbitmqctl needs root or the rabbitmq user);" \
            "if $queue exists with other arguments, the services will fail to declare it"
        return 0
    }
    want_length=""
    ((queue_max_length > 0)) && want_length="$queue_max_length"
    while IFS=$'\t' read -r name type args; do
        case "$name" in
            "$queue")
                have_length="$(grep -o '"x-max-length",[0-9]*' <<<"$args" | cut -d, -f2 || true)"
                if [[ "$type" != "$queue_type" || "$have_length" != "$want_length" ]]; then
                    stale+=("$name")
                fi
                ;;
            "$queue.dead")
                [[ "$type" == "$queue_type" ]] || stale+=("$name")
                ;;
        esac
    done <<<"$listing"
    for name in "${stale[@]+"${stale[@]}"}"; do
        say "deleting queue $name (declared with other arguments than queue_type=$queue_type" \
            "queue_max_length=$queue_max_length)"
        broker_ctl delete_queue "$name" >/dev/null || { unhealthy="cannot delete queue $name"; return 1; }
    done
}

# --- The store ------------------------------------------------------------------------------
# store: the --store value the services get; made_database: the PostgreSQL database this
# stack created for itself (dropped when the stack stops or moves to another store).
store="" made_database=""

# shown URL: URL with its password masked, for messages.
shown() { sed -E 's#(://[^:/@]+:)[^@]*@#\1***@#; s#([?&]password=)[^&]*#\1***#' <<<"$1"; }

# pg_admin SQL: runs SQL on the server's maintenance database.
pg_admin() { psql -X -q -v ON_ERROR_STOP=1 -d "${pg_server%/}/postgres" -c "$1"; }

# open_store: prepares the store that $store_choice names and sets $store; returns 1 (the
# reason in $unhealthy) if it cannot.
open_store() {
    case "$store_choice" in
        sqlite)
            store="$sqlite_file"
            rm -f "$store" "$store-wal" "$store-shm"
            ;;
        postgres)
            command -v psql >/dev/null \
                || { unhealthy="--store postgres needs psql (Debian: apt-get install -y postgresql-client)"; return 1; }
            local db="flashsale_stack_$$" out
            if ! out="$(pg_admin "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>&1 \
                && pg_admin "CREATE DATABASE $db" 2>&1)"; then
                unhealthy="cannot create database $db on $(shown "$pg_server"): ${out//$'\n'/ }"
                return 1
            fi
            made_database="$db"
            store="${pg_server%/}/$db"
            say "store: a fresh PostgreSQL database $(shown "$store") (dropped when the stack stops)"
            ;;
        *) store="$store_choice" ;;
    esac
    common=(--store "$store" --stock "$stock" --strategy "$strategy")
}

# close_store: drops the database this stack made, if any (its services must be stopped).
close_store() {
    [[ -n "${made_database:-}" ]] || return 0
    pg_admin "DROP DATABASE IF EXISTS $made_database WITH (FORCE)" >/dev/null 2>&1 \
        || say "warning: could not drop database $made_database on $(shown "$pg_server")"
    made_database=""
}

# start_backends: on the current store; returns 1 (reason in $unhealthy) if one is unhealthy.
start_backends() {
    local port
    for port in "${backend_ports[@]}"; do
        start "backend-$port" env FLASHSALE_ADMIN_TOKEN="$admin_token" \
            "$bin/backend" --listen "127.0.0.1:$port" "${common[@]}"
    done
    for port in "${backend_ports[@]}"; do
        check_healthy "backend-$port" "http://127.0.0.1:$port/healthz" || return 1
    done
}

store_kind() {
    case "$store_choice" in
        sqlite | postgres) echo "$store_choice" ;;
        postgres://* | postgresql://*) echo postgres ;;
        mongodb://* | mongodb+srv://*) echo mongodb ;;
        *) echo sqlite ;;
    esac
}

write_settings() {
    printf '%s\n' "store=$store_choice" "workers=$workers" "batch=$batch" "prefetch=$prefetch" "gate=$gate" \
        "queue_type=$queue_type" "queue_max_length=$queue_max_length" \
        "brokers=$([[ $cluster == 1 ]] && echo cluster || echo local)" >"$settings_file"
}

describe() {
    echo "store=$(store_kind) workers=$workers batch=$batch$( ((batch == 1)) && echo " prefetch=$prefetch")" \
        "gate=$gate queue_type=$queue_type queue_max_length=$queue_max_length"
}

# start_workers_and_frontend: with the current settings; returns 1 (reason in $unhealthy)
# if one of them does not become healthy.
start_workers_and_frontend() {
    local w port
    for ((w = 1; w <= workers; w++)); do
        port=$((worker_health_base + w))
        if port_busy "$port"; then unhealthy="port $port (worker $w health) is in use"; return 1; fi
    done
    local queue_args=(--queue-type "$queue_type" --queue-max-length "$queue_max_length")
    local worker_args=("${common[@]}" "${queue_args[@]}" --batch "$batch")
    # A batched worker's prefetch is its batch: an inherited FLASHSALE_PREFETCH would contradict it.
    local worker_env=(env -u FLASHSALE_PREFETCH FLASHSALE_AMQP_URL="$amqp_url")
    ((batch == 1)) && worker_args+=(--prefetch "$prefetch")
    for ((w = 1; w <= workers; w++)); do
        start "worker-$w" "${worker_env[@]}" \
            "$bin/worker" "${worker_args[@]}" \
            --health-listen "127.0.0.1:$((worker_health_base + w))" \
            --connection-name "flashsale-worker-$w"
    done
    for ((w = 1; w <= workers; w++)); do
        check_healthy "worker-$w" "http://127.0.0.1:$((worker_health_base + w))/healthz" || return 1
    done

    # The gate goes by its variable: a front tier without the option ignores it.
    start frontend env FLASHSALE_AMQP_URL="$amqp_url" FLASHSALE_SOLD_OUT_GATE="$gate" \
        "$bin/frontend" --listen "127.0.0.1:$frontend_port" --backend-url "$backend_url" \
        --default-route "$default_route" --timeout-ms "$timeout_ms" "${queue_args[@]}"
    check_healthy frontend "http://127.0.0.1:$frontend_port/healthz" || return 1
}

# reconfigure: applies .stack/reconfigure.request and answers in .stack/reconfigure.result.
# Returns 1 if the services could not be brought back (the stack then stops).
reconfigure() {
    local id="" key value problem
    local old=("$workers" "$batch" "$prefetch" "$gate" "$queue_type" "$queue_max_length" "$store_choice")
    if [[ ! -s "$request_file" ]]; then
        say "SIGUSR1 without a request in $request_file: ignored (use scripts/stack.sh --reconfigure)"
        return 0
    fi
    while IFS='=' read -r key value; do
        case "$key" in
            id) id="$value" ;;
            store) store_choice="$value" ;;
            workers) workers="$value" ;;
            batch) batch="$value" ;;
            prefetch) prefetch="$value" ;;
            gate) gate="$value" ;;
            queue_type) queue_type="$value" ;;
            queue_max_length) queue_max_length="$value" ;;
        esac
    done <"$request_file"
    rm -f "$request_file"
    answer() { printf '%s\n' "id=$id" "status=$1" "message=$2" >"$result_file.tmp" && mv "$result_file.tmp" "$result_file"; }
    problem="$(check_settings)"
    if [[ -n "$problem" ]]; then
        workers="${old[0]}" batch="${old[1]}" prefetch="${old[2]}" gate="${old[3]}"
        queue_type="${old[4]}" queue_max_length="${old[5]}" store_choice="${old[6]}"
        answer error "$problem (nothing changed)"
        return 0
    fi
    say "reconfiguring: $(describe)"
    stop_named frontend
    stop_named worker-
    if [[ "$store_choice" != "${old[6]}" ]]; then
        # Every process that holds the store moves to the new one.
        stop_named backend-
        close_store
        if ! open_store || ! start_backends; then
            answer error "$unhealthy"
            say "error: reconfiguration failed: $unhealthy"
            return 1
        fi
    fi
    if ! ensure_queue_matches || ! start_workers_and_frontend; then
        answer error "$unhealthy"
        say "error: reconfiguration failed: $unhealthy"
        return 1
    fi
    write_settings
    answer ok "$(describe)"
    say "reconfigured: $(describe)"
}

# --- Preconditions -----------------------------------------------------------------------
command -v curl >/dev/null || die "curl is required (Debian: apt-get install -y curl)"
ports=("$frontend_port" "${backend_ports[@]}")
((use_nginx)) && ports+=("$nginx_port")
for ((w = 1; w <= workers; w++)); do ports+=($((worker_health_base + w))); done
for port in "${ports[@]}"; do
    ! port_busy "$port" || die "port $port is already in use (another stack running?)"
done
mkdir -p "$logs"
rm -f "$logs"/*.log
echo "$$" >"$pid_file"
rm -f "$request_file" "$result_file"

if ((cluster)); then
    if ! "$cluster_script" status >/dev/null 2>&1; then
        started_cluster=1
    fi
    say "starting the RabbitMQ cluster (scripts/rabbit-cluster.sh up)"
    amqp_url="$("$cluster_script" up | tail -n 1)" || die "the RabbitMQ cluster did not come up"
    ((stopping)) && exit 0
elif ! port_busy 5672; then
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
: "${RUST_LOG:=info}"
export RUST_LOG
ensure_queue_matches || die "$unhealthy"
open_store || die "$unhealthy"
start_backends || die "$unhealthy"

if ((use_nginx)); then
    start nginx "$nginx_script" --listen "$nginx_port" --dir "$stack_dir/nginx" "${backend_ports[@]}"
    backend_url="http://127.0.0.1:$nginx_port"
    wait_healthy nginx "$backend_url/healthz"
else
    backend_url="http://127.0.0.1:${backend_ports[0]}"
fi

start_workers_and_frontend || die "$unhealthy"
write_settings

via=$([[ "$backend_url" == *":$nginx_port" ]] && echo "nginx" || echo "backend-${backend_ports[0]} (no nginx)")
brokers=$( ((cluster)) && echo "cluster(5701-5703)" || echo "local(5672)")
say "ready frontend=http://127.0.0.1:$frontend_port backend=$backend_url via=$via" \
    "brokers=$brokers $(describe) stock=$stock strategy=$strategy store_url=$(shown "$store") logs=$logs"
say "try: curl 'http://127.0.0.1:$frontend_port/mq/buy' ; curl 'http://127.0.0.1:$frontend_port/http/buy'" \
    "; curl 'http://127.0.0.1:$frontend_port/sale' ; Ctrl-C stops everything"

# --- Run until a signal or a service's death ------------------------------------------------
status=0
while ((!stopping)); do
    wait -n "${pids[@]}" 2>/dev/null || true
    ((stopping)) && break
    if ((reconfigure_requested)); then
        reconfigure_requested=0
        if ! reconfigure; then
            status=1
            break
        fi
        continue
    fi
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
