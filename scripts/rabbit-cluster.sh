#!/usr/bin/env bash
# A RabbitMQ cluster of local nodes on one host, for quorum queues and failover tests:
#
#   scripts/rabbit-cluster.sh up|down|status|urls [options]
#   scripts/rabbit-cluster.sh kill N|start N|leader QUEUE [options]
#   scripts/rabbit-cluster.sh [options] ctl RABBITMQCTL-ARGS...
#
#   up         start the nodes that are not running and join them into one cluster; waits
#              until every node runs and sees all the others; idempotent. The last line on
#              stdout is the AMQP URL list (comma-separated), for --amqp-url.
#   down       stop every node (kill -9 if one does not stop in 30 s) and remove its data
#              (DIR/node-N/data); logs stay in DIR/node-N/log. Touches nothing outside DIR.
#   status     each node's state (running, stopped) and the cluster membership; exits 1 if a
#              node is not running
#   urls       print the AMQP URL list (no node is started)
#   kill N     kill -9 the Erlang VM of node N (pid from DIR/node-N/rabbitmq.pid): a crash
#   start N    start node N again (after kill or a crash) and wait until it is back in the
#              cluster; its data is kept, so it rejoins as the member it was
#   leader Q   print the node that leads quorum queue Q (e.g. flashsale-2@localhost)
#   ctl ARGS   rabbitmqctl ARGS on the first running node (e.g. ctl list_queues name leader)
#
# Options (also from the environment):
#   --nodes N        nodes in the cluster (FLASHSALE_CLUSTER_NODES, default 3)
#   --base-port P    AMQP ports P..P+N-1, Erlang distribution ports P+100..P+100+N-1, and
#                    P+200..P+299 for the CLI tools (FLASHSALE_CLUSTER_BASE_PORT, default 5701)
#   --dir DIR        data, logs, configuration and pid files (FLASHSALE_CLUSTER_DIR,
#                    default .stack/rabbit-cluster in the repository)
#   --name PREFIX    node names PREFIX-1@localhost ... (FLASHSALE_CLUSTER_NAME, default flashsale)
#
# Each node has its own node name, ports, data directory and configuration file (Debian's
# /etc/rabbitmq/rabbitmq.conf pins the listener to 5672, so it is not read) and no plugins.
# The nodes listen on 127.0.0.1 only (guest/guest works there). They share the Erlang cookie
# of the user that runs them: as root, the rabbitmq user (/var/lib/rabbitmq/.erlang.cookie),
# and DIR must be reachable by that user. The machine's own node (rabbit@localhost, :5672) is
# never touched: it is not in the cluster and no command here talks to it.
#
# Tests pass their own --dir, --base-port and --name, so parallel runs never collide.
set -euo pipefail

usage() { sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
say() { echo "rabbit-cluster: $*" >&2; }
die() { echo "rabbit-cluster: error: $*" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
nodes="${FLASHSALE_CLUSTER_NODES:-3}"
base_port="${FLASHSALE_CLUSTER_BASE_PORT:-5701}"
dir="${FLASHSALE_CLUSTER_DIR:-$root/.stack/rabbit-cluster}"
prefix="${FLASHSALE_CLUSTER_NAME:-flashsale}"
command="" arg="" ctl_args=()

while (($#)); do
    case "$1" in
        --nodes) (($# >= 2)) || usage; nodes="$2"; shift 2 ;;
        --base-port) (($# >= 2)) || usage; base_port="$2"; shift 2 ;;
        --dir) (($# >= 2)) || usage; dir="$2"; shift 2 ;;
        --name) (($# >= 2)) || usage; prefix="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        up|down|status|urls)
            [[ -z "$command" ]] || usage; command="$1"; shift ;;
        kill|start|leader)
            [[ -z "$command" ]] || usage; (($# >= 2)) || usage
            command="$1" arg="$2"; shift 2 ;;
        ctl)
            [[ -z "$command" ]] || usage; (($# >= 2)) || usage
            command=ctl; shift; ctl_args=("$@"); break ;;
        *) echo "rabbit-cluster: unknown argument: $1" >&2; usage ;;
    esac
done
[[ -n "$command" ]] || usage
[[ "$nodes" =~ ^[1-9][0-9]?$ ]] || die "--nodes must be between 1 and 99"
if ! [[ "$base_port" =~ ^[0-9]+$ ]] || ((base_port < 1024 || base_port + 299 > 65535)); then
    die "--base-port must leave room for 300 ports between 1024 and 65535"
fi
[[ "$prefix" =~ ^[A-Za-z0-9_-]+$ ]] || die "--name may hold letters, digits, - and _ only"
[[ "$prefix" != "rabbit" ]] || die "--name rabbit would clash with the machine's own node"
if [[ "$command" == kill || "$command" == start ]]; then
    if ! [[ "$arg" =~ ^[0-9]+$ ]] || ((arg < 1 || arg > nodes)); then
        die "$command takes a node number between 1 and $nodes"
    fi
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

# --- Where RabbitMQ is, and as whom it runs -------------------------------------------------
# Debian's /usr/sbin wrappers switch to the rabbitmq user but also pin the node's environment;
# the scripts behind them take every RABBITMQ_* variable we set.
sbin="${RABBITMQ_SBIN:-}"
if [[ -z "$sbin" ]]; then
    if [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]]; then
        sbin=/usr/lib/rabbitmq/bin
    else
        server="$(PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v rabbitmq-server || true)"
        [[ -n "$server" ]] || die "rabbitmq-server is not installed (Debian: apt-get install -y rabbitmq-server)"
        sbin="$(dirname "$(readlink -f "$server")")"
    fi
fi
run_as=()
if ((EUID == 0)); then
    id rabbitmq >/dev/null 2>&1 || die "running as root needs the rabbitmq user (install rabbitmq-server)"
    rabbitmq_home="$(getent passwd rabbitmq | cut -d: -f6)"
    run_as=(runuser -u rabbitmq -- env "HOME=$rabbitmq_home")
fi

node_name() { echo "$prefix-$1@localhost"; }
amqp_port() { echo $((base_port + $1 - 1)); }
dist_port() { echo $((base_port + 100 + $1 - 1)); }
node_dir() { echo "$dir/node-$1"; }
pid_file() { echo "$(node_dir "$1")/rabbitmq.pid"; }

# The environment of everything that talks to the nodes (server and CLI tools alike).
common_env() {
    echo "RABBITMQ_CTL_DIST_PORT_MIN=$((base_port + 200))"
    echo "RABBITMQ_CTL_DIST_PORT_MAX=$((base_port + 299))"
    echo "ERL_EPMD_ADDRESS=127.0.0.1"
    # No /etc/rabbitmq/rabbitmq-env.conf: it names the machine's own node.
    echo "RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf"
}

# ctl TOOL N ARGS...: a CLI tool (rabbitmqctl, rabbitmq-diagnostics, rabbitmq-queues) on node N.
ctl() {
    local tool="$1" n="$2"; shift 2
    local env_lines=()
    mapfile -t env_lines < <(common_env)
    "${run_as[@]}" env "${env_lines[@]}" "$sbin/$tool" -n "$(node_name "$n")" "$@"
}

pid_of() {
    local file
    file="$(pid_file "$1")"
    [[ -s "$file" ]] || return 1
    local pid
    pid="$(tr -dc '0-9' <"$file")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_config() {
    local n="$1" d
    d="$(node_dir "$n")"
    mkdir -p "$d/data" "$d/log"
    : >"$dir/rabbitmq-env.conf"
    {
        echo "# Written by scripts/rabbit-cluster.sh for $(node_name "$n")."
        echo "listeners.tcp.local = 127.0.0.1:$(amqp_port "$n")"
        echo "loopback_users.guest = true"
        echo "log.file.level = info"
        echo "log.console = false"
        # New nodes find the first node and join it (a restarted node rejoins by its data).
        echo "cluster_formation.peer_discovery_backend = classic_config"
        local i
        for ((i = 1; i <= nodes; i++)); do
            echo "cluster_formation.classic_config.nodes.$i = $(node_name "$i")"
        done
        # Three nodes on one small host: do not let each claim 40% of the memory.
        echo "vm_memory_high_watermark.relative = 0.2"
    } >"$d/rabbitmq.conf"
    echo "[]." >"$d/enabled_plugins"
    if ((EUID == 0)); then
        chown -R rabbitmq:rabbitmq "$d"
        runuser -u rabbitmq -- test -w "$d/data" \
            || die "the rabbitmq user cannot write $d (make $dir and its parents reachable: chmod o+x)"
    fi
}

start_node() {
    local n="$1" d
    d="$(node_dir "$n")"
    write_config "$n"
    rm -f "$(pid_file "$n")"
    local env_lines=()
    mapfile -t env_lines < <(common_env)
    say "starting $(node_name "$n") (AMQP :$(amqp_port "$n"), distribution :$(dist_port "$n"))"
    # setsid: the node outlives this script and ignores the caller's Ctrl-C.
    setsid "${run_as[@]}" env "${env_lines[@]}" \
        RABBITMQ_NODENAME="$(node_name "$n")" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$(amqp_port "$n")" \
        RABBITMQ_DIST_PORT="$(dist_port "$n")" \
        RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$d/data" \
        RABBITMQ_MNESIA_DIR="$d/data/mnesia" \
        RABBITMQ_LOG_BASE="$d/log" \
        RABBITMQ_PID_FILE="$(pid_file "$n")" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        "$sbin/rabbitmq-server" >"$d/log/server.out" 2>&1 </dev/null &
    disown
}

# wait_node N: until node N's app runs (or it dies, or 120 s pass).
wait_node() {
    local n="$1"
    if ! ctl rabbitmqctl "$n" wait "$(pid_file "$n")" --timeout 120 >/dev/null 2>&1; then
        tail -n 20 "$(node_dir "$n")/log/server.out" >&2 || true
        die "$(node_name "$n") did not start (logs: $(node_dir "$n")/log/)"
    fi
}

# Erlang list of node names (['a@h','b@h']) -> one name a line.
erl_list() { tr -d "[]' \n" | tr ',' '\n' | sed '/^$/d'; }

# running_nodes N: the running members as node N sees them, one a line.
running_nodes() { ctl rabbitmqctl "$1" eval 'rabbit_nodes:all_running().' 2>/dev/null | erl_list; }
member_nodes() { ctl rabbitmqctl "$1" eval 'rabbit_mnesia:cluster_nodes(all).' 2>/dev/null | erl_list; }

# ref_node [N]: a running node other than N (the lowest), for asking the cluster.
ref_node() {
    local i
    for ((i = 1; i <= nodes; i++)); do
        ((i == ${1:-0})) && continue
        pid_of "$i" >/dev/null && { echo "$i"; return 0; }
    done
    return 1
}

# ensure_member N: node N (running) is a member of the others' cluster; if it formed one of
# its own (it booted while no peer was reachable), it is reset and joined.
ensure_member() {
    local n="$1" ref
    ref="$(ref_node "$n")" || return 0
    if member_nodes "$ref" | grep -qx "$(node_name "$n")"; then
        return 0
    fi
    say "joining $(node_name "$n") to $(node_name "$ref")"
    ctl rabbitmqctl "$n" stop_app >/dev/null
    ctl rabbitmqctl "$n" reset >/dev/null
    ctl rabbitmqctl "$n" join_cluster "$(node_name "$ref")" >/dev/null
    ctl rabbitmqctl "$n" start_app >/dev/null
}

# wait_running_seen N...: until node 1 (or, when N is 1, another running node) sees every
# N running, or 60 s pass.
wait_running_seen() {
    local deadline=$((SECONDS + 60)) ref seen n missing
    while :; do
        missing=""
        for n in "$@"; do
            ref="$(ref_node "$n")" || ref="$n"
            seen="$(running_nodes "$ref" || true)"
            grep -qx "$(node_name "$n")" <<<"$seen" || missing+=" $(node_name "$n")"
        done
        [[ -z "$missing" ]] && return 0
        ((SECONDS < deadline)) || die "not running in the cluster after 60 s:$missing"
        sleep 1
    done
}

urls() {
    local i list=()
    for ((i = 1; i <= nodes; i++)); do
        list+=("amqp://guest:guest@127.0.0.1:$(amqp_port "$i")/%2f")
    done
    local IFS=,
    echo "${list[*]}"
}

check_ports_free() {
    local n="$1" port
    for port in "$(amqp_port "$n")" "$(dist_port "$n")"; do
        ! port_open "$port" || die "port $port (for $(node_name "$n")) is in use by something else"
    done
}

cmd_up() {
    local i started=()
    # Node 1 first: the others find it running and join it.
    for ((i = 1; i <= nodes; i++)); do
        if pid_of "$i" >/dev/null; then
            continue
        fi
        check_ports_free "$i"
        start_node "$i"
        started+=("$i")
        if ((i == 1)); then wait_node 1; fi
    done
    local waits=()
    for i in "${started[@]}"; do
        if ((i > 1)); then
            wait_node "$i" &
            waits+=("$!")
        fi
    done
    wait_all_or_die "${waits[@]}"
    for ((i = 2; i <= nodes; i++)); do ensure_member "$i"; done
    local all=()
    for ((i = 1; i <= nodes; i++)); do all+=("$i"); done
    wait_running_seen "${all[@]}"
    say "up: $nodes nodes, $(node_name 1) .. $(node_name "$nodes"), data in $dir"
    urls
}

# wait_all_or_die PID...: waits for those background jobs; fails if one did.
wait_all_or_die() {
    local job failed=0
    for job in "$@"; do wait "$job" || failed=1; done
    ((failed == 0)) || die "a node did not start"
}

stop_node() {
    local n="$1" pid
    pid="$(pid_of "$n")" || return 0
    say "stopping $(node_name "$n") (pid $pid)"
    ctl rabbitmqctl "$n" stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        say "$(node_name "$n") did not stop in 30 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$(pid_file "$n")"
}

cmd_down() {
    local i
    # Last node first, then in parallel: stopping nodes one by one would make each remaining
    # one wait for its peers; they are all going anyway.
    local stops=()
    for ((i = nodes; i >= 1; i--)); do
        stop_node "$i" &
        stops+=("$!")
    done
    wait_all_or_die "${stops[@]}"
    for ((i = 1; i <= nodes; i++)); do
        # Only our own subdirectory of DIR.
        rm -rf "$(node_dir "$i")/data"
    done
    say "down: data removed, logs kept in $dir/node-*/log"
}

cmd_status() {
    local i pid status=0 any=""
    for ((i = 1; i <= nodes; i++)); do
        if pid="$(pid_of "$i")"; then
            echo "$(node_name "$i") amqp=127.0.0.1:$(amqp_port "$i") running pid=$pid"
            [[ -n "$any" ]] || any="$i"
        else
            echo "$(node_name "$i") amqp=127.0.0.1:$(amqp_port "$i") stopped"
            status=1
        fi
    done
    if [[ -n "$any" ]]; then
        echo "members (seen by $(node_name "$any")): $(member_nodes "$any" | paste -sd' ')"
        echo "running (seen by $(node_name "$any")): $(running_nodes "$any" | paste -sd' ')"
    else
        echo "no node is running"
    fi
    return "$status"
}

cmd_kill() {
    local n="$1" pid
    pid="$(pid_of "$n")" || die "$(node_name "$n") is not running"
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    say "killed $(node_name "$n") (pid $pid, kill -9)"
}

cmd_start() {
    local n="$1"
    if ! pid_of "$n" >/dev/null; then
        check_ports_free "$n"
        start_node "$n"
        wait_node "$n"
    fi
    ensure_member "$n"
    wait_running_seen "$n"
    say "$(node_name "$n") is back in the cluster"
}

cmd_leader() {
    local queue="$1" i name leader asked=0
    for ((i = 1; i <= nodes; i++)); do
        pid_of "$i" >/dev/null || continue
        asked=1
        while IFS=$'\t' read -r name leader; do
            if [[ "$name" == "$queue" && -n "$leader" ]]; then
                echo "$leader"
                return 0
            fi
        done < <(ctl rabbitmqctl "$i" list_queues name leader -q --no-table-headers 2>/dev/null)
        # One running node's answer is the cluster's.
        break
    done
    ((asked)) || die "no node is running"
    die "no quorum queue named $queue (or it has no leader right now)"
}

cmd_ctl() {
    local n
    n="$(ref_node)" || die "no node is running"
    ctl rabbitmqctl "$n" "$@"
}

case "$command" in
    ctl) cmd_ctl "${ctl_args[@]}" ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    urls) urls ;;
    kill) cmd_kill "$arg" ;;
    start) cmd_start "$arg" ;;
    leader) cmd_leader "$arg" ;;
esac
