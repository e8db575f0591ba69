# shellcheck shell=bash
# shellcheck disable=SC2154 # dir, layout, hosts, ...: set by scripts/hosts.sh, which sources this
# The service tiers, for scripts/hosts.sh (sourced, not run): app1 and app2 (a backend and a
# worker each), fe1 and fe2 (a front tier and, on its loopback, nginx over the backends),
# and edge (nginx over the front tiers).
#
# Secrets (the store's and the brokers' passwords) reach the services as environment
# variables (FLASHSALE_STORE, FLASHSALE_AMQP_URL), never on a command line that `ps` shows.
# Every other setting is an option; options win over the caller's FLASHSALE_* variables,
# which the services otherwise inherit (FLASHSALE_ADMIN_TOKEN among them).

# nginx on a front tier's host, over the backends: nginx/nginx.conf's settings but for
# backends that may vanish behind a partition; the file says why, for these parameters too
# (max_conns as nginx/backend-servers.compose.conf: 1.5 x the backend's 512 buys in flight).
backends_template() { echo "$root/deploy/hosts/nginx-backends.conf"; }
backends_server_params="max_fails=1 fail_timeout=3s max_conns=768"

problem=""
# check_tier_settings BATCH GATE: sets $problem and returns 1 if one is unusable.
check_tier_settings() {
    problem=""
    if ! [[ "$1" =~ ^[1-9][0-9]{0,4}$ ]] || (($1 > 65535)); then
        problem="--batch must be 1..65535, not '$1'"
    elif [[ "$2" != on && "$2" != off ]]; then
        problem="--gate must be on or off, not '$2'"
    fi
    [[ -z "$problem" ]]
}

bin() { echo "$(get bin_dir)/$1"; }
service_env() { echo "RUST_LOG=${RUST_LOG:-info}" "FLASHSALE_ADMIN_TOKEN=${FLASHSALE_ADMIN_TOKEN:-change-me-local-only}"; }

start_backend() {
    local host="$1" env_words
    read -r -a env_words <<<"$(service_env)"
    start_service "$host" backend env "${env_words[@]}" FLASHSALE_STORE="$(db_url)" \
        "$(bin backend)" --listen "$(addr "$host"):3000" \
        --stock "$(get stock)" --strategy "$(get strategy)"
}

start_worker() {
    local host="$1" env_words
    read -r -a env_words <<<"$(service_env)"
    # A batched worker's prefetch is its batch: an inherited FLASHSALE_PREFETCH would
    # contradict it.
    start_service "$host" worker env -u FLASHSALE_PREFETCH "${env_words[@]}" \
        FLASHSALE_STORE="$(db_url)" FLASHSALE_AMQP_URL="$(amqp_urls "${host#app}")" \
        "$(bin worker)" --queue-type quorum --batch "$(get batch)" \
        --health-listen "$(addr "$host"):3100" --connection-name "flashsale-worker-$host" \
        --stock "$(get stock)" --strategy "$(get strategy)"
}

start_sidecar() {
    local host="$1"
    start_service "$host" nginx "$root/scripts/nginx-native.sh" --config "$(backends_template)" \
        --server-params "$backends_server_params" --listen "$(local_addr "$host"):8000" --dir "$dir/$host/nginx" app1:3000 app2:3000
}

start_frontend() {
    local host="$1" env_words
    read -r -a env_words <<<"$(service_env)"
    # fe1 starts with rmq3, fe2 with rmq1: with app1 on rmq1 and app2 on rmq2, every node
    # has clients.
    local first=$(((${host#fe} + 1) % 3 + 1))
    start_service "$host" frontend env "${env_words[@]}" \
        FLASHSALE_AMQP_URL="$(amqp_urls "$first")" FLASHSALE_SOLD_OUT_GATE="$(get gate)" \
        "$(bin frontend)" --listen "$(addr "$host"):5000" \
        --backend-url "http://$(local_addr "$host"):8000" --queue-type quorum \
        --timeout-ms "$(get timeout_ms)" --connection-name "flashsale-frontend-$host"
}

start_edge() {
    start_service edge nginx "$root/scripts/nginx-native.sh" --config "$root/nginx/edge.conf" \
        --listen "$(addr edge):5000" --dir "$dir/edge/nginx" fe1:5000 fe2:5000
}

start_workers() {
    local host
    for host in app1 app2; do start_worker "$host"; done
    for host in app1 app2; do wait_http client "$host" worker "http://$host:3100/healthz"; done
}

start_frontends() {
    local host
    for host in fe1 fe2; do start_frontend "$host"; done
    for host in fe1 fe2; do wait_http client "$host" frontend "http://$host:5000/healthz"; done
}

tiers_up() {
    local host
    say "app: backends and workers on app1, app2 (store: postgres://flashsale@db:5432/flashsale)"
    for host in app1 app2; do start_backend "$host"; done
    for host in app1 app2; do wait_http client "$host" backend "http://$host:3000/healthz"; done
    start_workers
    say "fe: nginx over the backends and a front tier on fe1, fe2 (gate $(get gate))"
    for host in fe1 fe2; do start_sidecar "$host"; done
    for host in fe1 fe2; do
        wait_http "$host" "$host" nginx "http://$(local_addr "$host"):8000/healthz"
    done
    start_frontends
    say "edge: nginx on edge:5000 over fe1, fe2"
    start_edge
    wait_http client edge nginx "http://edge:5000/healthz"
}

tiers_down() {
    local host
    ns_exists "$(ns edge)" && stop_service edge nginx
    for host in fe1 fe2; do
        ns_exists "$(ns "$host")" || continue
        stop_service "$host" frontend
        stop_service "$host" nginx
    done
    for host in app1 app2; do
        ns_exists "$(ns "$host")" || continue
        stop_service "$host" worker
        stop_service "$host" backend
    done
}

tiers_reconfigure() {
    local batch="$1" gate="$2" host
    say "reconfiguring: batch $batch, gate $gate (restarting the front tiers and the workers)"
    for host in fe1 fe2; do stop_service "$host" frontend; done
    for host in app1 app2; do stop_service "$host" worker; done
    set_setting batch "$batch"
    set_setting gate "$gate"
    start_workers
    start_frontends
    wait_http client edge nginx "http://edge:5000/healthz"
    say "reconfigured: batch $batch, gate $gate"
}

# stack_healthy: every service runs, every backend, worker, front tier and the edge answers
# /healthz 200 from the client host, and the RabbitMQ cluster is whole.
stack_healthy() {
    local host name url
    for host in "${hosts[@]}"; do
        [[ -s "$dir/$host/services" ]] || continue
        while read -r name; do
            service_pid "$host" "$name" >/dev/null || return 1
        done <"$dir/$host/services"
    done
    for url in http://app1:3000 http://app2:3000 http://app1:3100 http://app2:3100 \
        http://fe1:5000 http://fe2:5000 http://edge:5000; do
        run_on client curl -fsS -o /dev/null --max-time 3 "$url/healthz" 2>/dev/null || return 1
    done
    rabbit_whole
}

# wait_healthy SECONDS: until stack_healthy, or SECONDS pass (returns 1).
wait_healthy() {
    local deadline=$((SECONDS + $1))
    until stack_healthy; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}
