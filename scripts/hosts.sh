#!/usr/bin/env bash
# Many hosts on one machine: the flash-sale stack across Linux network namespaces, one per
# host, joined by a bridge, and partitions between them.
#
#   scripts/hosts.sh [OPTIONS] up [UP-OPTIONS]
#   scripts/hosts.sh [OPTIONS] down|status
#   scripts/hosts.sh [OPTIONS] exec HOST CMD...
#   scripts/hosts.sh [OPTIONS] cut HOST [--from HOST,...]
#   scripts/hosts.sh [OPTIONS] heal [HOST]
#   scripts/hosts.sh [OPTIONS] leader [QUEUE]
#   scripts/hosts.sh [OPTIONS] unacked HOST
#   scripts/hosts.sh [OPTIONS] reconfigure [--batch N] [--gate on|off]
#   scripts/hosts.sh [OPTIONS] ctl HOST RABBITMQCTL-ARGS...
#   scripts/hosts.sh [OPTIONS] psql [PSQL-ARGS...]
#   scripts/hosts.sh [OPTIONS] orders
#
#   up           the network and the stack on it; waits until a buy can cross every tier.
#                After a failed or partial `up` it clears what is left first; on a stack that
#                is up and healthy it does nothing.
#   down         stops every process it started, removes every namespace, link, cut, file
#                under /etc/netns and folder it made; also after a failed `up`. Then checks
#                that nothing is left and says so (exit 1 if something is).
#   status       each host: address, its processes (running or not), the cuts in place, the
#                RabbitMQ cluster as rmq1..3 see it; exit 1 if something is not running
#   exec         runs CMD on HOST (its network, its name, its /etc/hosts), in the foreground
#   cut          HOST loses every packet to and from the other hosts (or only those given
#                with --from): nftables rules that drop in HOST's namespace, like a cable
#                pulled (nothing is refused, nothing answers). Cuts add up until `heal`.
#   heal         removes the cuts of HOST, or of every host
#   leader       the host (rmq1..3) whose node leads quorum queue QUEUE (default buy_requests)
#   unacked      messages the AMQP clients of HOST hold unacknowledged (e.g. a worker's batch)
#   reconfigure  restarts the workers and the front tiers with another batch size or gate
#                (options, else FLASHSALE_BATCH / FLASHSALE_SOLD_OUT_GATE, as
#                `loadtest matrix --reconfigure` sets them; a setting given nowhere keeps
#                its value), and waits until a buy crosses every tier again
#   ctl          rabbitmqctl ARGS against the node of HOST (rmq1..3), run on that host
#   psql         psql as the database's owner, run on `db` (e.g. psql -Atc 'select 1')
#   orders       the current sale's orders as the database holds them, read on `db`:
#                user_id<TAB>order_id a line
#
# Options (also from the environment):
#   --prefix P     names: namespaces P-db .. P-client, bridge P-br, veths P-<host>, nft
#                  tables P_cut (FLASHSALE_HOSTS_PREFIX, default fsh; 2-5 letters/digits)
#   --subnet A.B.C the hosts' /24 (FLASHSALE_HOSTS_SUBNET, default 10.213.7); with --layout
#                  one, the loopback addresses 127.B.C.x instead
#   --dir DIR      every file of the stack (FLASHSALE_HOSTS_DIR, default
#                  /tmp/flashsale-hosts-P); reachable by the postgres and rabbitmq users
#   --layout L     hosts (default): one namespace per host. one: every host in ONE
#                  namespace, each on its own loopback address and with its own name, the
#                  same processes and settings: the one-host reference for the benchmarks
#                  (no cut there). Given to `up`; later commands read it from DIR.
# UP-OPTIONS (also from the environment):
#   --bin-dir DIR  backend, worker, frontend, loadtest (FLASHSALE_HOSTS_BIN_DIR, default
#                  target/release: run `cargo build --release` first)
#   --batch N      worker batch size (FLASHSALE_BATCH, default 64)
#   --gate on|off  front tiers' sold-out gate (FLASHSALE_SOLD_OUT_GATE, default on)
#   --stock N      stock of the first sale (FLASHSALE_STOCK, default 100)
#   --strategy S   strategy of the first sale (FLASHSALE_STRATEGY, default conditional)
#   --heartbeat S  AMQP heartbeat in seconds, set on the RabbitMQ nodes (default 2)
#   --timeout-ms MS  front tiers' buy timeout (FLASHSALE_TIMEOUT_MS, default 20000)
#
# Hosts and what runs there (host names resolve on every host through
# /etc/netns/P-<host>/hosts; every connection goes by name across the bridge):
#   db       PostgreSQL (initdb into DIR/db, listening on db:5432; database and user
#            flashsale, password generated per `up`)
#   rmq1..3  one RabbitMQ node each (rabbit@rmq1 .., AMQP 5672, its own epmd and cookie),
#            one cluster; the request queue is a quorum queue
#   app1,2   a backend (:3000) and a worker (health :3100), on the PostgreSQL store
#   fe1,2    a front tier (:5000, gate on) and nginx on its loopback (:8000) over app1 and
#            app2 (deploy/hosts/nginx-backends.conf)
#   edge     nginx (nginx/edge.conf) on edge:5000 over fe1 and fe2: /healthz, /http/buy,
#            /mq/buy, /sale, /admin/sale as the front tier answers them
#   client   nothing: run the load tester there, e.g.
#            scripts/hosts.sh exec client target/release/loadtest run http://edge:5000/mq/buy
# The services get the caller's environment (FLASHSALE_ADMIN_TOKEN, default
# change-me-local-only; RUST_LOG, default info) with their host's settings over it.
#
# Needs root, network namespaces, nftables (nft), unshare, setpriv, PostgreSQL's server
# binaries (initdb, postgres, psql), rabbitmq-server, nginx and curl; without them it says
# why and exits 1. The machine's own PostgreSQL, RabbitMQ, epmd and network settings are
# never touched: the bridge has no address and nothing is routed to or from the machine.
set -euo pipefail

usage() { sed -n '2,81p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
say() { echo "hosts: $*" >&2; }
die() { echo "hosts: error: $*" >&2; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${FLASHSALE_HOSTS_PREFIX:-fsh}"
subnet="${FLASHSALE_HOSTS_SUBNET:-10.213.7}"
dir="${FLASHSALE_HOSTS_DIR:-}"
layout=""

while (($#)); do
    case "$1" in
        --prefix) (($# >= 2)) || usage; prefix="$2"; shift 2 ;;
        --subnet) (($# >= 2)) || usage; subnet="$2"; shift 2 ;;
        --dir) (($# >= 2)) || usage; dir="$2"; shift 2 ;;
        --layout) (($# >= 2)) || usage; layout="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        -*) echo "hosts: unknown option: $1" >&2; usage ;;
        *) break ;;
    esac
done
(($#)) || usage
command="$1"
shift
[[ "$prefix" =~ ^[a-z][a-z0-9]{1,4}$ ]] || die "--prefix must be 2-5 lower-case letters or digits, starting with a letter"
octet='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
[[ "$subnet" =~ ^$octet\.$octet\.$octet$ ]] || die "--subnet must be three octets, e.g. 10.213.7"
dir="${dir:-/tmp/flashsale-hosts-$prefix}"
[[ "$dir" == /* ]] || dir="$PWD/$dir"

# --- Hosts, names and addresses ---------------------------------------------------------------
hosts=(db rmq1 rmq2 rmq3 app1 app2 fe1 fe2 edge client)
declare -A host_number=([db]=10 [rmq1]=11 [rmq2]=12 [rmq3]=13 [app1]=21 [app2]=22
    [fe1]=31 [fe2]=32 [edge]=40 [client]=50)
bridge="$prefix-br"
nft_table="${prefix}_cut"
settings_file="$dir/settings"

is_host() { [[ -n "${host_number[$1]:-}" ]]; }

# The layout comes from the stack itself once it is up; `up` takes it from --layout.
if [[ -z "$layout" && -s "$settings_file" ]]; then
    layout="$(sed -n 's/^layout=//p' "$settings_file")"
    subnet="$(sed -n 's/^subnet=//p' "$settings_file")"
fi
layout="${layout:-hosts}"
[[ "$layout" == hosts || "$layout" == one ]] || die "--layout must be hosts or one, not '$layout'"

# addr HOST: the address HOST's services listen on and its name resolves to.
addr() {
    if [[ "$layout" == one ]]; then
        echo "127.${subnet#*.}.${host_number[$1]}"
    else
        echo "$subnet.${host_number[$1]}"
    fi
}
# local_addr HOST: an address only HOST reaches (its sidecar nginx listens there).
local_addr() { if [[ "$layout" == one ]]; then addr "$1"; else echo 127.0.0.1; fi; }
# ns HOST: the network namespace HOST lives in.
ns() { if [[ "$layout" == one ]]; then echo "$prefix-one"; else echo "$prefix-$1"; fi; }
# Every namespace name this prefix may have made, whatever the layout.
all_namespaces() {
    local host
    for host in "${hosts[@]}"; do echo "$prefix-$host"; done
    echo "$prefix-one"
}
namespaces() {
    if [[ "$layout" == one ]]; then echo "$prefix-one"; else all_namespaces | grep -v -- '-one$'; fi
}
ns_exists() { [[ -e "/run/netns/$1" ]]; }

# on_host HOST CMD...: CMD in HOST's network namespace (where `ip netns exec` also binds
# /etc/netns/NS/hosts over /etc/hosts) and in a UTS namespace of its own named HOST, so
# that `hostname` says HOST, as on a machine of its own (RabbitMQ's CLI names itself after
# it). Replaces itself with CMD: run in the background, $! is CMD's pid.
on_host() {
    local host="$1"
    shift
    # fd 9 is the command lock (see lock): a service that kept it would hold it forever.
    # shellcheck disable=SC2016 # expanded by that shell
    exec ip netns exec "$(ns "$host")" unshare --uts -- /bin/sh -c 'hostname "$0" && exec "$@"' \
        "$host" "$@" 9>&-
}
# run_on HOST CMD...: the same, as a child (for commands that return).
run_on() { (on_host "$@"); }

# --- Preconditions --------------------------------------------------------------------------------
export PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"
need_root_and_namespaces() {
    ((EUID == 0)) || die "needs root (network namespaces, nftables, other users' processes); run it with sudo"
    command -v ip >/dev/null || die "the ip command is missing (Debian: apt-get install -y iproute2)"
    local probe="$prefix-probe$$"
    ip netns add "$probe" 2>/dev/null || die "cannot create a network namespace here (ip netns add failed: no CAP_SYS_ADMIN, or no namespace support)"
    ip netns del "$probe"
}
need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is missing ($(install_hint "$tool"))"
    done
}
install_hint() {
    case "$1" in
        nft) echo "Debian: apt-get install -y nftables" ;;
        unshare|setpriv) echo "Debian: apt-get install -y util-linux" ;;
        nginx) echo "Debian: apt-get install -y nginx" ;;
        curl) echo "Debian: apt-get install -y curl" ;;
        epmd|rabbitmq-server) echo "Debian: apt-get install -y rabbitmq-server" ;;
        initdb|pg_ctl|psql|postgres) echo "Debian: apt-get install -y postgresql" ;;
        *) echo "install it" ;;
    esac
}

# PostgreSQL's server binaries: on PATH, else Debian's versioned directory.
pg_bin() {
    local found
    if found="$(command -v "$1")"; then echo "$found"; return; fi
    found="$(printf '%s\n' /usr/lib/postgresql/*/bin/"$1" | grep -v '\*' | sort -V | tail -n 1)"
    [[ -n "$found" ]] || die "$1 is missing ($(install_hint "$1"))"
    echo "$found"
}

# --- Settings of a running stack --------------------------------------------------------------
# get SETTING: its value from DIR/settings (written by `up`, changed by `reconfigure`).
get() { sed -n "s/^$1=//p" "$settings_file" 2>/dev/null | tail -n 1; }
set_setting() {
    local key="$1" value="$2"
    if grep -q "^$key=" "$settings_file"; then
        sed -i "s|^$key=.*|$key=$value|" "$settings_file"
    else
        echo "$key=$value" >>"$settings_file"
    fi
}
secret() { sed -n "s/^$1=//p" "$dir/secrets"; }

# --- The parts ------------------------------------------------------------------------------------
# shellcheck source=scripts/lib/hosts/network.sh
source "$root/scripts/lib/hosts/network.sh"
# shellcheck source=scripts/lib/hosts/processes.sh
source "$root/scripts/lib/hosts/processes.sh"
# shellcheck source=scripts/lib/hosts/db.sh
source "$root/scripts/lib/hosts/db.sh"
# shellcheck source=scripts/lib/hosts/rabbit.sh
source "$root/scripts/lib/hosts/rabbit.sh"
# shellcheck source=scripts/lib/hosts/tiers.sh
source "$root/scripts/lib/hosts/tiers.sh"

# One command at a time per stack: two `up`s, or an `up` and a `down`, would trample each
# other. exec, cut, heal, status and the rest only read, or change what they alone own.
lock() {
    exec 9>"/run/lock/flashsale-hosts-$prefix.lock"
    flock -w 600 9 || die "another hosts.sh command has held the lock for 10 minutes"
}

# --- Commands -----------------------------------------------------------------------------------
anything_left() {
    local name
    [[ -e "$dir" ]] && return 0
    while read -r name; do ns_exists "$name" && return 0; done < <(all_namespaces)
    ip link show "$bridge" >/dev/null 2>&1 && return 0
    return 1
}

cmd_up() {
    local bin_dir="${FLASHSALE_HOSTS_BIN_DIR:-$root/target/release}"
    local batch="${FLASHSALE_BATCH:-64}" gate="${FLASHSALE_SOLD_OUT_GATE:-on}"
    local stock="${FLASHSALE_STOCK:-100}" strategy="${FLASHSALE_STRATEGY:-conditional}"
    local heartbeat=2 timeout_ms="${FLASHSALE_TIMEOUT_MS:-20000}"
    while (($#)); do
        case "$1" in
            --bin-dir) (($# >= 2)) || usage; bin_dir="$2"; shift 2 ;;
            --batch) (($# >= 2)) || usage; batch="$2"; shift 2 ;;
            --gate) (($# >= 2)) || usage; gate="$2"; shift 2 ;;
            --stock) (($# >= 2)) || usage; stock="$2"; shift 2 ;;
            --strategy) (($# >= 2)) || usage; strategy="$2"; shift 2 ;;
            --heartbeat) (($# >= 2)) || usage; heartbeat="$2"; shift 2 ;;
            --timeout-ms) (($# >= 2)) || usage; timeout_ms="$2"; shift 2 ;;
            *) echo "hosts: unknown argument to up: $1" >&2; usage ;;
        esac
    done
    check_tier_settings "$batch" "$gate" || die "$problem"
    [[ "$stock" =~ ^[0-9]+$ ]] || die "--stock must be a number, not '$stock'"
    [[ "$heartbeat" =~ ^[1-9][0-9]*$ ]] || die "--heartbeat must be a positive number of seconds"
    [[ "$timeout_ms" =~ ^[1-9][0-9]*$ ]] || die "--timeout-ms must be a positive number"
    [[ "$bin_dir" == /* ]] || bin_dir="$PWD/$bin_dir"
    local b
    for b in backend worker frontend; do
        [[ -x "$bin_dir/$b" ]] || die "$bin_dir/$b not found: run cargo build --release (or give --bin-dir)"
    done
    need_root_and_namespaces
    need_tools nft unshare setpriv nginx curl epmd flock
    pg_bin initdb >/dev/null
    pg_bin postgres >/dev/null
    pg_bin psql >/dev/null
    rabbit_sbin >/dev/null
    lock

    local wanted
    wanted="$(printf '%s\n' "layout=$layout" "subnet=$subnet" "bin_dir=$bin_dir" \
        "batch=$batch" "gate=$gate" "stock=$stock" "strategy=$strategy" \
        "heartbeat=$heartbeat" "timeout_ms=$timeout_ms")"
    # The same stack, up: nothing to do. It may be catching up after a cut: give it a moment
    # before deciding that it is broken and starting again.
    if [[ -s "$dir/ready" && "$(cat "$settings_file")" == "$wanted" ]] && wait_healthy 30; then
        say "already up ($layout layout, dir $dir); nothing to do"
        echo "http://$(addr edge):5000"
        return 0
    fi
    if anything_left; then
        say "clearing what a previous up left behind (or a stack with other settings)"
        down_all
    fi

    say "up: $layout layout, prefix $prefix, dir $dir"
    mkdir -p "$dir"
    chmod 755 "$dir"
    echo "$wanted" >"$settings_file"
    (
        umask 077
        echo "amqp_password=$(random_secret)" >"$dir/secrets"
        echo "db_password=$(random_secret)" >>"$dir/secrets"
        echo "cookie=$(random_secret | tr 'a-f' 'A-F')" >>"$dir/secrets"
    )

    network_up
    db_up
    rabbit_up
    tiers_up
    date -u '+%Y-%m-%dT%H:%M:%SZ' >"$dir/ready"
    say "ready: $layout layout; try: scripts/hosts.sh exec client curl -s 'http://edge:5000/mq/buy?user=1'"
    echo "http://$(addr edge):5000"
}

random_secret() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# The namespaces' inode numbers, taken before they are deleted: a process left in one keeps
# it alive under the same number, which is how `down` finds it.
down_inodes=()
down_all() {
    # The layout of the stack that is there, whatever the caller asked for.
    local layout
    layout="$(get layout)"
    layout="${layout:-hosts}"
    mapfile -t down_inodes < <(namespace_inodes)
    tiers_down
    rabbit_down
    db_down
    sweep_processes
    network_down
    rm -rf "$dir"
}

cmd_down() {
    need_root_and_namespaces
    lock
    down_all
    local left
    left="$(leftovers)"
    if [[ -n "$left" ]]; then
        echo "$left" >&2
        die "down: something is left (above)"
    fi
    say "down: no namespace, link, process, /etc/netns entry or folder of prefix $prefix is left"
}

# leftovers: one line per thing of this prefix that still exists.
leftovers() {
    local name
    while read -r name; do
        ns_exists "$name" && echo "namespace $name"
        [[ -e "/etc/netns/$name" ]] && echo "/etc/netns/$name"
    done < <(all_namespaces)
    ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 \
        | grep -E "^$prefix-" | sed 's/^/link /' || true
    [[ -e "$dir" ]] && echo "folder $dir"
    local pid
    if ((${#down_inodes[@]})); then
        for pid in $(pids_in_namespaces "${down_inodes[@]}"); do
            echo "process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
        done
    fi
    return 0
}

cmd_status() {
    [[ -s "$settings_file" ]] || { echo "not up (no $settings_file)"; return 1; }
    local host status=0
    echo "layout $(get layout), prefix $prefix, dir $dir, batch $(get batch), gate $(get gate)"
    for host in "${hosts[@]}"; do
        local line
        line="$(printf '%-7s %-15s' "$host" "$(addr "$host")")"
        ns_exists "$(ns "$host")" || { echo "$line namespace missing"; status=1; continue; }
        line+=" $(host_processes "$host")" || status=1
        [[ "$line" == *stopped* ]] && status=1
        local cuts
        cuts="$(cuts_of "$host")"
        [[ -z "$cuts" ]] || line+=" CUT: $cuts"
        echo "$line"
    done
    rabbit_status || status=1
    return "$status"
}

cmd_exec() {
    (($# >= 2)) || usage
    is_host "$1" || die "no host named '$1' (hosts: ${hosts[*]})"
    ns_exists "$(ns "$1")" || die "host $1 does not exist: run scripts/hosts.sh up"
    on_host "$@"
}

cmd_cut() {
    (($# >= 1)) || usage
    local host="$1" from=""
    shift
    while (($#)); do
        case "$1" in
            --from) (($# >= 2)) || usage; from="$2"; shift 2 ;;
            *) usage ;;
        esac
    done
    cut_host "$host" "$from"
}

cmd_heal() {
    if (($#)); then heal_host "$1"; else heal_all; fi
}

cmd_reconfigure() {
    [[ -s "$dir/ready" ]] || die "the stack is not up (no $dir/ready)"
    local batch="${FLASHSALE_BATCH:-$(get batch)}" gate="${FLASHSALE_SOLD_OUT_GATE:-$(get gate)}"
    while (($#)); do
        case "$1" in
            --batch) (($# >= 2)) || usage; batch="$2"; shift 2 ;;
            --gate) (($# >= 2)) || usage; gate="$2"; shift 2 ;;
            *) usage ;;
        esac
    done
    check_tier_settings "$batch" "$gate" || die "$problem"
    lock
    tiers_reconfigure "$batch" "$gate"
}

case "$command" in
    up) cmd_up "$@" ;;
    down) (($# == 0)) || usage; cmd_down ;;
    status) (($# == 0)) || usage; cmd_status ;;
    exec) cmd_exec "$@" ;;
    cut) cmd_cut "$@" ;;
    heal) (($# <= 1)) || usage; cmd_heal "$@" ;;
    leader) (($# <= 1)) || usage; rabbit_leader "${1:-buy_requests}" ;;
    unacked) (($# == 1)) || usage; rabbit_unacked "$1" ;;
    reconfigure) cmd_reconfigure "$@" ;;
    ctl) (($# >= 2)) || usage; rabbit_ctl "$@" ;;
    psql) db_psql "$@" ;;
    orders) (($# == 0)) || usage; db_orders ;;
    *) echo "hosts: unknown command: $command" >&2; usage ;;
esac
