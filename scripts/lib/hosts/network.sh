# shellcheck shell=bash
# shellcheck disable=SC2154 # dir, layout, hosts, ...: set by scripts/hosts.sh, which sources this
# The hosts' network, for scripts/hosts.sh (sourced, not run): namespaces, the bridge, the
# veth pairs, names, and the cuts.
#
# Layout `hosts`: one namespace per host, each with `lo` and an `eth0` (a veth whose other end
# is in the bridge P-br, in the machine's namespace). The bridge has no address: the machine
# cannot reach the hosts, nor they it, and nothing is routed. Layout `one`: a single
# namespace whose `lo` carries every host's 127.x address.
#
# Names: /etc/netns/<namespace>/hosts, which `ip netns exec` binds over /etc/hosts for every
# process of that namespace; each host's file is its own.
#
# Cuts: an nftables table P_cut in the cut host's own namespace, dropping what goes out to and
# comes in from the addresses it is cut from (or everything on eth0). Silence, not refusal:
# a peer sees nothing at all, as when a cable is pulled, so only timeouts and heartbeats
# notice. Removing the table (heal) restores the path; TCP connections that survived resume
# with their next retransmission.

# hosts_file HOST: HOST's /etc/hosts.
hosts_file() {
    local host="$1" other
    echo "# Written by scripts/hosts.sh for $host ($layout layout)."
    echo "127.0.0.1 localhost"
    echo "::1 localhost ip6-localhost ip6-loopback"
    for other in "${hosts[@]}"; do
        echo "$(addr "$other") $other"
    done
}

network_up() {
    if [[ ! -d /etc/netns ]]; then
        mkdir -p /etc/netns
        # Ours to remove again once no namespace of any prefix uses it.
        touch "$dir/created-etc-netns"
    fi
    if [[ "$layout" == one ]]; then
        local one
        one="$(ns client)"
        ip netns add "$one"
        ip -n "$one" link set lo up
        mkdir -p "/etc/netns/$one"
        hosts_file client >"/etc/netns/$one/hosts"
        say "network: one namespace $one, hosts on 127.${subnet#*.}.x"
        return
    fi
    ip link add "$bridge" type bridge
    ip link set "$bridge" up
    local host name
    for host in "${hosts[@]}"; do
        name="$(ns "$host")"
        ip netns add "$name"
        # The peer is created inside the namespace as eth0, so no other name can collide.
        ip link add "$prefix-$host" type veth peer name eth0 netns "$name"
        ip link set "$prefix-$host" master "$bridge" up
        ip -n "$name" addr add "$(addr "$host")/24" dev eth0
        ip -n "$name" link set lo up
        ip -n "$name" link set eth0 up
        mkdir -p "/etc/netns/$name"
        hosts_file "$host" >"/etc/netns/$name/hosts"
    done
    wait_bridge_forwarding
    say "network: ${#hosts[@]} namespaces on bridge $bridge, $subnet.0/24"
}

# A port joins a bridge in the `listening` state first (STP is off, but the port still
# passes through it for a moment): wait until every port forwards.
wait_bridge_forwarding() {
    local deadline=$((SECONDS + 30)) host state
    for host in "${hosts[@]}"; do
        while :; do
            state="$(cat "/sys/class/net/$prefix-$host/brport/state" 2>/dev/null || echo 0)"
            ((state == 3)) && break
            ((SECONDS < deadline)) || die "bridge port $prefix-$host does not forward (state $state)"
            sleep 0.1
        done
    done
}

network_down() {
    local name
    while read -r name; do
        if ns_exists "$name"; then
            ip netns del "$name" || say "warning: could not delete namespace $name"
        fi
        rm -rf "/etc/netns/$name"
    done < <(all_namespaces)
    # Deleting a namespace deletes its veth and the peer with it; the rest by name.
    local link
    for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^$prefix-" || true); do
        ip link del "$link" 2>/dev/null || true
    done
    if [[ -e "$dir/created-etc-netns" ]]; then
        rmdir /etc/netns 2>/dev/null || true
    fi
}

# host_list_addresses H1,H2,...: their addresses, for an nftables set.
host_list_addresses() {
    local list="$1" host out=()
    IFS=, read -r -a list_hosts <<<"$list"
    for host in "${list_hosts[@]}"; do
        is_host "$host" || die "no host named '$host' (hosts: ${hosts[*]})"
        out+=("$(addr "$host")")
    done
    ((${#out[@]})) || die "--from needs at least one host"
    local IFS=,
    echo "${out[*]}"
}

cut_host() {
    local host="$1" from="$2"
    [[ "$layout" == hosts ]] || die "cut needs the hosts layout (every host in one namespace has no network between them)"
    is_host "$host" || die "no host named '$host' (hosts: ${hosts[*]})"
    local name
    name="$(ns "$host")"
    ns_exists "$name" || die "host $host does not exist: run scripts/hosts.sh up"
    local rules
    # One table per host; a second cut adds its rules to it. Priority -10: before anything
    # else that could accept.
    rules="table inet $nft_table {
  chain input { type filter hook input priority -10; policy accept; }
  chain output { type filter hook output priority -10; policy accept; }
}"
    if [[ -z "$from" ]]; then
        rules+="
add rule inet $nft_table input iifname \"eth0\" drop
add rule inet $nft_table output oifname \"eth0\" drop"
    else
        local addresses
        addresses="$(host_list_addresses "$from")"
        rules+="
add rule inet $nft_table input ip saddr { $addresses } drop
add rule inet $nft_table output ip daddr { $addresses } drop"
    fi
    ip netns exec "$name" nft -f - <<<"$rules" || die "nft could not cut $host"
    say "cut $host from ${from:-every host}"
}

heal_host() {
    local host="$1" name
    is_host "$host" || die "no host named '$host' (hosts: ${hosts[*]})"
    [[ "$layout" == hosts ]] || return 0
    name="$(ns "$host")"
    ns_exists "$name" || return 0
    if ip netns exec "$name" nft list table inet "$nft_table" >/dev/null 2>&1; then
        ip netns exec "$name" nft delete table inet "$nft_table"
        say "healed $host"
    fi
}

heal_all() {
    local host
    for host in "${hosts[@]}"; do heal_host "$host"; done
}

# cuts_of HOST: the drop rules in place on HOST, one line.
cuts_of() {
    [[ "$layout" == hosts ]] || return 0
    ip netns exec "$(ns "$1")" nft list table inet "$nft_table" 2>/dev/null \
        | grep -o '\(iifname\|oifname\|ip saddr\|ip daddr\) .* drop' | sed 's/ drop$//' \
        | paste -sd';' || true
}
