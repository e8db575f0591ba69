# shellcheck shell=bash
# shellcheck disable=SC2154,SC2034 # dir, layout, hosts, ...: set by scripts/hosts.sh, which sources this;
# as_postgres, as_rabbitmq: used by the other parts
# The processes of the hosts, for scripts/hosts.sh (sourced, not run).
#
# A service NAME on HOST runs in HOST's namespaces (on_host) and in a session of its own
# (setsid), so a Ctrl-C in the terminal that ran `up` does not reach it. Its pid is in
# DIR/HOST/run/NAME.pid and its output in DIR/HOST/logs/NAME.log; DIR/HOST/services lists
# the names in start order. `down` stops them by pid, then sweeps every process still in
# one of the stack's namespaces, so nothing it started can be left behind.

# Prefixes that run a command as the database's and the broker's system users, without a
# fork (setpriv execs), so a service's pid stays the server's own.
as_postgres=(setpriv --reuid postgres --regid postgres --init-groups)
as_rabbitmq=(setpriv --reuid rabbitmq --regid rabbitmq --init-groups)

# start_service HOST NAME CMD...: starts CMD on HOST in the background.
start_service() {
    local host="$1" name="$2"
    shift 2
    local hd="$dir/$host"
    mkdir -p "$hd/logs" "$hd/run"
    (on_host "$host" setsid "$@") >>"$hd/logs/$name.log" 2>&1 </dev/null &
    echo "$!" >"$hd/run/$name.pid"
    grep -qx "$name" "$hd/services" 2>/dev/null || echo "$name" >>"$hd/services"
}

# service_pid HOST NAME: the pid, if that service runs.
service_pid() {
    local file="$dir/$1/run/$2.pid" pid
    [[ -s "$file" ]] || return 1
    pid="$(tr -dc '0-9' <"$file")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# stop_service HOST NAME: SIGTERM, then SIGKILL after 15 s.
stop_service() {
    local host="$1" name="$2" pid
    pid="$(service_pid "$host" "$name")" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name on $host did not stop in 15 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/$host/run/$name.pid"
}

# host_processes HOST: "name:running name:stopped ..." for the services started there.
host_processes() {
    local host="$1" name out=()
    [[ -s "$dir/$host/services" ]] || { echo "(no services)"; return 0; }
    while read -r name; do
        if service_pid "$host" "$name" >/dev/null; then out+=("$name:running"); else out+=("$name:stopped"); fi
    done <"$dir/$host/services"
    echo "${out[*]}"
}

# log_tail HOST NAME: the end of a service's log, for an error message.
log_tail() { tail -n 15 "$dir/$1/logs/$2.log" 2>/dev/null | sed "s/^/  [$1 $2] /" >&2 || true; }

# wait_http FROM HOST NAME URL [SECONDS]: until URL answers 200 from host FROM (the
# `client`, so that the path across the bridge is what is checked), while service NAME of
# HOST runs.
wait_http() {
    local from="$1" host="$2" name="$3" url="$4" limit="${5:-90}"
    local deadline=$((SECONDS + limit))
    until run_on "$from" curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        if ! service_pid "$host" "$name" >/dev/null; then
            log_tail "$host" "$name"
            die "$name on $host exited during start-up (log: $dir/$host/logs/$name.log)"
        fi
        if ((SECONDS >= deadline)); then
            log_tail "$host" "$name"
            die "$name on $host: $url did not answer 200 within $limit s (log: $dir/$host/logs/$name.log)"
        fi
        sleep 0.3
    done
}

# Inode numbers of the stack's namespaces that exist now, one a line.
namespace_inodes() {
    local name
    while read -r name; do
        ns_exists "$name" && stat -L -c %i "/run/netns/$name"
    done < <(all_namespaces)
    return 0
}

# pids_in_namespaces INODE...: every process whose network namespace is one of those.
pids_in_namespaces() {
    local link pid inode
    for link in /proc/[0-9]*/ns/net; do
        inode="$(readlink "$link" 2>/dev/null)" || continue
        inode="${inode#net:[}"
        inode="${inode%]}"
        pid="${link#/proc/}"
        pid="${pid%%/*}"
        for want in "$@"; do
            [[ "$inode" == "$want" ]] && { echo "$pid"; break; }
        done
    done
    return 0
}

# sweep_processes: SIGTERM to every process in the stack's namespaces, SIGKILL after 20 s
# to what is left. Whatever started it (a service, a shell run with `exec`, a CLI tool).
sweep_processes() {
    local inodes=() pids=()
    mapfile -t inodes < <(namespace_inodes)
    ((${#inodes[@]})) || return 0
    mapfile -t pids < <(pids_in_namespaces "${inodes[@]}")
    ((${#pids[@]})) || return 0
    say "stopping ${#pids[@]} processes left in the hosts' namespaces"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while ((SECONDS < deadline)); do
        mapfile -t pids < <(pids_in_namespaces "${inodes[@]}")
        ((${#pids[@]})) || return 0
        sleep 0.2
    done
    say "killing ${#pids[@]} processes that did not stop in 20 s"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    sleep 0.5
}
