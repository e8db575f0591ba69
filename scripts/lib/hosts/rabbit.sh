# shellcheck shell=bash
# shellcheck disable=SC2154 # dir, layout, hosts, ...: set by scripts/hosts.sh, which sources this
# RabbitMQ on rmq1..rmq3, for scripts/hosts.sh (sourced, not run): one node per host, one
# cluster.
#
# Each node runs as the rabbitmq user from its host's folder DIR/rmqN/rabbitmq (config,
# data, logs, and a HOME holding the cluster's Erlang cookie, generated per `up`), on the
# standard ports of its host: AMQP 5672, distribution 25672, epmd 4369, Prometheus 15692.
# Debian's /etc/rabbitmq/rabbitmq-env.conf would pin epmd and distribution to 127.0.0.1 (and
# name the machine's own node): each node reads an empty env file of its own instead
# (RABBITMQ_CONF_ENV_FILE), ERL_FLAGS is cleared, and epmd is started in the host's
# namespace before the node, listening on every address of that host.
# In the `one` layout the three nodes share one namespace and so one epmd, which knows a
# node by the name before the @ and refuses a distribution port twice: they are
# rabbit1@rmq1 .. rabbit3@rmq3 there, each bound to its own loopback address, with
# distribution ports 25672, 25673, 25674.
#
# The cluster: the nodes find each other by host name (classic config peer discovery);
# rmq1 boots first and the others join it. The request queue is a quorum queue (the workers
# and front tiers declare it), replicated by Raft on the three nodes: a message is
# confirmed to the front tier once two of them hold it.
#
# Partition handling (cluster_partition_handling = pause_minority): a node that finds itself
# in a minority (it sees fewer than two of the three nodes) pauses: it closes its client
# connections and listeners until the partition heals, then resumes by itself. Clients of a
# cut-off node fail over to a node of the majority, which goes on serving; nothing is
# decided on both sides of a partition, so nothing has to be thrown away at the heal
# (autoheal would restart the losing side and drop what it did meanwhile; ignore would
# leave two clusters for an operator to reconcile). Quorum queues are consistent whatever
# this setting says; it matters for what is not Raft-replicated: the front tiers' exclusive
# reply queues and the sale events' queues live on the node their owner is connected to.
#
# Partition detection (net_ticktime = 5 s): a node declares a silent peer down after 4 to
# 6 s. Then the majority's Mnesia stops waiting for it, Raft elects a new leader for a
# quorum queue whose leader was cut off, and the cut node pauses. With RabbitMQ's default
# (60 s) a cut shorter than a minute is never declared: every Mnesia transaction (a queue's
# declaration, the record of a queue's new leader) waits on the silent node, and the queue
# route stops for the whole cut and a little beyond, although Raft has its majority. The
# price: a node that stalls for 5 s (a machine starved of CPU) is declared down too, and
# pause_minority restarts it.
#
# The heartbeat (`heartbeat = 2` s, negotiated with every client): a connection whose peer
# went silent is closed after two missed heartbeats, ~4 s, on both ends. That is what hands
# a cut-off worker's unacknowledged messages to another worker, and what tells a client that
# its node is gone so that it fails over. RabbitMQ's default (60 s) would leave them waiting
# two minutes, far past a buyer's timeout.

rabbit_sbin() {
    if [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]]; then
        echo /usr/lib/rabbitmq/bin
        return
    fi
    local server
    server="$(command -v rabbitmq-server)" || die "rabbitmq-server is missing ($(install_hint rabbitmq-server))"
    dirname "$(readlink -f "$server")"
}

rabbit_hosts=(rmq1 rmq2 rmq3)
# Seconds of silence after which a node declares a peer down (see the top of this file).
rabbit_net_ticktime=5

# node_name HOST: the node on rmqN.
node_name() {
    if [[ "$layout" == one ]]; then echo "rabbit${1#rmq}@$1"; else echo "rabbit@$1"; fi
}
# dist_port HOST: the node's Erlang distribution port.
dist_port() {
    if [[ "$layout" == one ]]; then echo $((25671 + ${1#rmq})); else echo 25672; fi
}
# host_of_node NODE: rabbit@rmq2 -> rmq2.
host_of_node() { echo "${1#*@}"; }
rabbit_dir() { echo "$dir/$1/rabbitmq"; }

# The environment of everything that talks to node HOST (the node and its CLI tools alike).
rabbit_env() {
    local d
    d="$(rabbit_dir "$1")"
    echo "HOME=$d/home"
    echo "RABBITMQ_CONF_ENV_FILE=$d/rabbitmq-env.conf"
}

# rabbit_ctl HOST ARGS...: rabbitmqctl ARGS against HOST's node, on HOST.
rabbit_ctl() {
    local host="$1"
    shift
    [[ " ${rabbit_hosts[*]} " == *" $host "* ]] || die "ctl takes rmq1, rmq2 or rmq3, not '$host'"
    local env_lines=()
    mapfile -t env_lines < <(rabbit_env "$host")
    run_on "$host" "${as_rabbitmq[@]}" env -u ERL_FLAGS -u ERL_EPMD_ADDRESS "${env_lines[@]}" \
        "$(rabbit_sbin)/rabbitmqctl" -n "$(node_name "$host")" "$@"
}

rabbit_config() {
    local host="$1" other i=1
    echo "# Written by scripts/hosts.sh for $(node_name "$host"); see scripts/lib/hosts/rabbit.sh."
    echo "listeners.tcp.1 = $(addr "$host"):5672"
    # guest stays loopback-only; the services log in as flashsale from the other hosts.
    echo "loopback_users.guest = true"
    echo "default_user = flashsale"
    echo "default_pass = $(secret amqp_password)"
    echo "heartbeat = $(get heartbeat)"
    echo "cluster_partition_handling = pause_minority"
    echo "net_ticktime = $rabbit_net_ticktime"
    echo "cluster_formation.peer_discovery_backend = classic_config"
    for other in "${rabbit_hosts[@]}"; do
        echo "cluster_formation.classic_config.nodes.$i = $(node_name "$other")"
        i=$((i + 1))
    done
    # Three nodes (and everything else) on one machine: none may claim 40% of its memory.
    echo "vm_memory_high_watermark.relative = 0.15"
    echo "prometheus.tcp.ip = $(addr "$host")"
    echo "prometheus.tcp.port = 15692"
    # Global counters (e.g. messages redelivered) only: per-object statistics cost CPU.
    echo "management_agent.disable_metrics_collector = true"
    echo "log.file.level = info"
    echo "log.console = false"
}

# The dotted address as an Erlang tuple: 10.213.7.11 -> {10,213,7,11}.
erl_address() { echo "{$(addr "$1" | tr . ,)}"; }

start_rabbit_node() {
    local host="$1" d
    d="$(rabbit_dir "$host")"
    mkdir -p "$d/home" "$d/mnesia" "$d/log"
    rabbit_config "$host" >"$d/rabbitmq.conf"
    : >"$d/rabbitmq-env.conf"
    echo "[rabbitmq_prometheus]." >"$d/enabled_plugins"
    (umask 077 && secret cookie >"$d/home/.erlang.cookie")
    chown -R rabbitmq:rabbitmq "$dir/$host"
    chmod 400 "$d/home/.erlang.cookie"
    "${as_rabbitmq[@]}" test -w "$d/mnesia" \
        || die "the rabbitmq user cannot write $d (give --dir a folder it can reach)"
    local env_lines=()
    mapfile -t env_lines < <(rabbit_env "$host")
    if [[ "$layout" == hosts || "$host" == rmq1 ]]; then
        # -daemon: epmd detaches; `down` finds it in the namespace.
        run_on "$host" "${as_rabbitmq[@]}" env -u ERL_EPMD_ADDRESS "${env_lines[@]}" epmd -daemon
    fi
    say "rmq: starting $(node_name "$host") on $(addr "$host"):5672"
    start_service "$host" rabbitmq "${as_rabbitmq[@]}" env -u ERL_FLAGS -u ERL_EPMD_ADDRESS \
        "${env_lines[@]}" \
        RABBITMQ_NODENAME="$(node_name "$host")" \
        RABBITMQ_DIST_PORT="$(dist_port "$host")" \
        RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$d/mnesia" \
        RABBITMQ_MNESIA_DIR="$d/mnesia/node" \
        RABBITMQ_LOG_BASE="$d/log" \
        RABBITMQ_PID_FILE="$d/rabbitmq.pid" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface $(erl_address "$host")" \
        "$(rabbit_sbin)/rabbitmq-server"
}

# wait_rabbit_node HOST: until its app runs (or the node dies, or 180 s pass).
wait_rabbit_node() {
    local host="$1"
    if ! rabbit_ctl "$host" wait "$(rabbit_dir "$host")/rabbitmq.pid" --timeout 180 >/dev/null 2>&1; then
        tail -n 20 "$(rabbit_dir "$host")/log/"*.log >&2 2>/dev/null || log_tail "$host" rabbitmq
        die "$(node_name "$host") did not start (logs: $(rabbit_dir "$host")/log/)"
    fi
}

# Erlang list of node names (['a@h','b@h']) -> one name a line.
erl_list() { { tr -d "[]' \n" | tr ',' '\n'; echo; } | sed '/^$/d'; }
running_nodes() { rabbit_ctl "$1" eval 'rabbit_nodes:all_running().' 2>/dev/null | erl_list; }
member_nodes() { rabbit_ctl "$1" eval 'rabbit_mnesia:cluster_nodes(all).' 2>/dev/null | erl_list; }

# A node that booted while no peer answered formed a cluster of its own: reset it and join.
ensure_member() {
    local host="$1"
    member_nodes rmq1 | grep -qx "$(node_name "$host")" && return 0
    say "rmq: joining $(node_name "$host") to $(node_name rmq1)"
    rabbit_ctl "$host" stop_app >/dev/null
    rabbit_ctl "$host" reset >/dev/null
    rabbit_ctl "$host" join_cluster "$(node_name rmq1)" >/dev/null
    rabbit_ctl "$host" start_app >/dev/null
}

rabbit_up() {
    id rabbitmq >/dev/null 2>&1 || die "the rabbitmq user is missing ($(install_hint rabbitmq-server))"
    start_rabbit_node rmq1
    wait_rabbit_node rmq1
    start_rabbit_node rmq2
    start_rabbit_node rmq3
    wait_rabbit_node rmq2
    wait_rabbit_node rmq3
    ensure_member rmq2
    ensure_member rmq3
    local deadline=$((SECONDS + 90)) seen
    while :; do
        seen="$(running_nodes rmq1 | wc -l)"
        ((seen == 3)) && break
        ((SECONDS < deadline)) || die "the cluster has $seen running nodes, not 3, after 90 s"
        sleep 1
    done
    say "rmq: cluster of $(running_nodes rmq1 | paste -sd' ')"
}

rabbit_down() {
    local host pid
    for host in "${rabbit_hosts[@]}"; do
        ns_exists "$(ns "$host")" || continue
        pid="$(service_pid "$host" rabbitmq)" || continue
        # SIGTERM: the node stops its applications in order, as `rabbitmqctl stop` would.
        kill -TERM "$pid" 2>/dev/null || true
    done
    for host in "${rabbit_hosts[@]}"; do
        pid="$(service_pid "$host" rabbitmq)" || continue
        local deadline=$((SECONDS + 30))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    done
}

# amqp_urls FIRST: the three nodes' URLs, starting at rmqFIRST, so that clients spread over
# the cluster and each fails over to the next.
amqp_urls() {
    local first="$1" i list=() password
    password="$(secret amqp_password)"
    for i in 0 1 2; do
        list+=("amqp://flashsale:$password@rmq$(((first - 1 + i) % 3 + 1)):5672/%2f")
    done
    local IFS=,
    echo "${list[*]}"
}

rabbit_status() {
    local host
    for host in "${rabbit_hosts[@]}"; do
        service_pid "$host" rabbitmq >/dev/null || continue
        echo "cluster as $host sees it: running $(running_nodes "$host" | paste -sd' ')"
        return 0
    done
    echo "cluster: no node is running"
    return 1
}

# rabbit_leader QUEUE: the host whose node leads it, asked of the first node that answers
# (a cut-off or paused node may not).
rabbit_leader() {
    local queue="$1" host name leader
    for host in "${rabbit_hosts[@]}"; do
        while IFS=$'\t' read -r name leader; do
            if [[ "$name" == "$queue" && "$leader" == *@* ]]; then
                host_of_node "$leader"
                return 0
            fi
        done < <(rabbit_ctl "$host" list_queues name leader -q --no-table-headers --timeout 10 2>/dev/null)
    done
    die "no node knows a leader of quorum queue $queue"
}

# rabbit_unacked HOST: messages HOST's AMQP clients hold unacknowledged, as the cluster sees
# them (channels are listed cluster-wide by the first node that answers; a channel's name
# begins with its client's address).
rabbit_unacked() {
    local host="$1" node listing name unacked total=0
    is_host "$host" || die "no host named '$host' (hosts: ${hosts[*]})"
    for node in "${rabbit_hosts[@]}"; do
        listing="$(rabbit_ctl "$node" list_channels name messages_unacknowledged -q \
            --no-table-headers --timeout 10 2>/dev/null)" || continue
        while IFS=$'\t' read -r name unacked; do
            [[ "$name" == "$(addr "$host"):"* ]] && total=$((total + unacked))
        done <<<"$listing"
        echo "$total"
        return 0
    done
    die "no RabbitMQ node answers"
}

# rabbit_whole: every node runs, sees the other two and no partition (a short cut can leave
# Mnesia partitioned after the heal, which only a restart of a node mends).
rabbit_whole() {
    local host answer
    for host in "${rabbit_hosts[@]}"; do
        answer="$(rabbit_ctl "$host" eval \
            '{length(rabbit_nodes:all_running()), rabbit_node_monitor:partitions()}.' 2>/dev/null)" \
            || return 1
        [[ "$answer" == "{3,[]}" ]] || return 1
    done
}
