#!/usr/bin/env bash
# Tests of scripts/hosts.sh, the stack across network namespaces (run by .ci/run):
#
#   scripts/hosts-test.sh [--bin-dir DIR]
#
#   1. `up` after a failed `up` works: an `up` with binaries that exit at once fails (after
#      the network, PostgreSQL and the RabbitMQ cluster are up) and leaves them behind; the
#      next `up` clears them and brings the whole stack up;
#   2. a buy from `client` through `edge` reaches `db`, on both routes: the answer's order
#      is the one psql reads on db; the machine itself cannot reach the hosts;
#   3. partition scenario b (scripts/lib/hosts/scenarios.sh, shortened): app1 cut off while
#      its worker holds an unacknowledged batch; the brokers redeliver it and app2's worker
#      settles it; every buyer is answered exactly once (no error), with the order the store
#      holds; nothing oversold, one order per user;
#   4. `down` leaves nothing behind: no namespace, link, /etc/netns entry, folder or process.
#
#   --bin-dir DIR   backend, worker, frontend and loadtest (default: target/debug, built with
#                   cargo build first)
#
# Needs root and network namespaces: without them it says SKIPPED and why, and exits 0.
# Runs its own stack (prefix fst, subnet 10.213.8) and removes it however it ends. Exits 1
# at the first failed check.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "hosts-test: $*"; }
fail() { echo "hosts-test: FAILED: $*" >&2; exit 1; }
skip() { echo "hosts-test: SKIPPED: $*"; exit 0; }

bin_dir=""
while (($#)); do
    case "$1" in
        --bin-dir) (($# >= 2)) || { echo "usage: $0 [--bin-dir DIR]" >&2; exit 2; }; bin_dir="$2"; shift 2 ;;
        *) echo "usage: $0 [--bin-dir DIR]" >&2; exit 2 ;;
    esac
done

export PATH="$PATH:/usr/sbin:/sbin"
((EUID == 0)) || skip "not root (network namespaces need it)"
command -v ip >/dev/null || skip "no ip command (iproute2)"
ip netns add fst-probe$$ 2>/dev/null || skip "cannot create a network namespace here"
ip netns del fst-probe$$

if [[ -z "$bin_dir" ]]; then
    say "building debug binaries (cargo build)"
    cargo build --locked -q -p backend -p worker -p frontend -p loadtest
    bin_dir="${CARGO_TARGET_DIR:-$PWD/target}/debug"
fi
bin_dir="$(cd "$bin_dir" && pwd)"

export FLASHSALE_HOSTS_PREFIX=fst FLASHSALE_HOSTS_SUBNET=10.213.8
# hosts.sh's folder, set here so that the checks below look where it writes.
export FLASHSALE_HOSTS_DIR=/tmp/flashsale-hosts-fst
hosts_dir="$FLASHSALE_HOSTS_DIR"
export FLASHSALE_ADMIN_TOKEN="${FLASHSALE_ADMIN_TOKEN:-change-me-local-only}"
unset FLASHSALE_BATCH FLASHSALE_SOLD_OUT_GATE FLASHSALE_STOCK FLASHSALE_STRATEGY
# The front tiers' time bound at 1 s, not 200 ms: this test checks that a partition loses and
# duplicates nothing, every buyer answered with an order. Its closed loop of 100 on debug
# binaries waits 100-300 ms on a slow machine, where a 200 ms bound rightly refuses some
# buyers (a correct answer, but not the one checked here).
export FLASHSALE_TARGET_WAIT_MS="${FLASHSALE_TARGET_WAIT_MS:-1000}"
hosts_cmd=(scripts/hosts.sh)
work="$(mktemp -d)"
chmod 755 "$work"
cleanup() {
    local status=$?
    if ((status != 0)) && [[ -d /run/netns ]]; then
        # What the front tiers refused, and why: the first thing to read after a failure.
        for fe in fe1 fe2; do
            "${hosts_cmd[@]}" exec client curl -s --max-time 2 "http://$fe:5000/metrics" 2>/dev/null \
                | grep -E '^flashsale_frontend_(rejections_total|admission)' | sed "s/^/$fe: /" >&2 || true
        done
    fi
    "${hosts_cmd[@]}" down >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# --- 1. up after a failed up ----------------------------------------------------------------------
say "1. an up that fails (binaries that exit at once), then an up that works"
mkdir -p "$work/broken"
for b in backend worker frontend loadtest; do
    printf '#!/bin/sh\necho "a broken build"\nexit 1\n' >"$work/broken/$b"
    chmod +x "$work/broken/$b"
done
if "${hosts_cmd[@]}" up --bin-dir "$work/broken" >"$work/failed-up.log" 2>&1; then
    fail "up with binaries that exit at once succeeded"
fi
grep -q "exited during start-up" "$work/failed-up.log" \
    || { cat "$work/failed-up.log" >&2; fail "the failed up did not say which service exited"; }
[[ -e /run/netns/fst-db ]] || fail "the failed up left no namespace: it failed too early to test the cleanup"
"${hosts_cmd[@]}" up --bin-dir "$bin_dir" >"$work/up.log" 2>&1 \
    || { tail -n 30 "$work/up.log" >&2; fail "up after a failed up did not work"; }
"${hosts_cmd[@]}" status >/dev/null || { "${hosts_cmd[@]}" status >&2; fail "status after up says something is not running"; }
say "   ok"

# --- 2. a buy from client through edge reaches db ---------------------------------------------------
say "2. a buy from client through edge reaches db, on both routes"
# A fresh sale; the answer must be the order psql reads on db.
"${hosts_cmd[@]}" exec client curl -fsS --max-time 10 -X POST http://edge:5000/admin/sale \
    -H "Authorization: Bearer $FLASHSALE_ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d '{"stock": 10, "strategy": "conditional"}' >/dev/null || fail "resetting the sale through edge"
for route in http mq; do
    user=4242
    [[ "$route" == mq ]] && user=4343
    answer="$("${hosts_cmd[@]}" exec client curl -fsS --max-time 20 "http://edge:5000/$route/buy?user=$user")" \
        || fail "GET /$route/buy through edge failed"
    order_id="$(python3 -c 'import json,sys; a=json.loads(sys.argv[1]); assert a["outcome"]=="ordered", a; print(a["order_id"])' "$answer")" \
        || fail "/$route/buy answered $answer, not ordered"
    stored="$("${hosts_cmd[@]}" orders | awk -F'\t' -v u="$user" '$1 == u {print $2}')"
    [[ "$stored" == "$order_id" ]] || fail "/$route/buy answered order $order_id for user $user; db holds '${stored}'"
done
edge_address="$("${hosts_cmd[@]}" exec client getent hosts edge | cut -d' ' -f1)"
if curl -fsS -o /dev/null --max-time 2 "http://$edge_address:5000/healthz" 2>/dev/null; then
    fail "the machine itself reaches edge at $edge_address: the hosts' network is not private"
fi
say "   ok"

# --- 3. scenario b ---------------------------------------------------------------------------------
say "3. scenario b: app1 cut off while its worker holds an unacknowledged batch"
loadtest="$bin_dir/loadtest" out="$work/reports" token="$FLASHSALE_ADMIN_TOKEN"
run_s=20 cut_at_s=3
mkdir -p "$out"
# shellcheck source=scripts/lib/hosts/scenarios.sh
source scripts/lib/hosts/scenarios.sh
die() { fail "$*"; }
# Longer than the heartbeat's two missed beats (~4 s), after which the brokers redeliver.
cut_s_override=8
run_scenario b || true
verdict="$out/partition-b-verdict.json"
evidence="$out/partition-b-evidence.json"
[[ -s "$verdict" && -s "$evidence" ]] || fail "scenario b wrote no verdict"
# HOSTS_TEST_KEEP_LOGS=DIR keeps the front tiers' logs (e.g. with RUST_LOG=debug).
if [[ -n "${HOSTS_TEST_KEEP_LOGS:-}" ]]; then
    for fe in fe1 fe2; do
        cp "$hosts_dir/$fe/logs/frontend.log" "$HOSTS_TEST_KEEP_LOGS/$fe.log" || true
    done
fi
python3 - "$verdict" "$evidence" <<'PY' || { cat "$verdict" "$evidence" >&2; fail "scenario b: see above"; }
import json, sys
verdict = json.load(open(sys.argv[1]))
evidence = json.load(open(sys.argv[2]))
problems = []
if evidence["held_unacked"] <= 0:
    problems.append("app1's worker held no unacknowledged request when app1 was cut")
if evidence["redelivered_during_cut"] < evidence["held_unacked"]:
    problems.append(f"the brokers redelivered {evidence['redelivered_during_cut']} messages during "
                    f"the cut, fewer than the {evidence['held_unacked']} app1's worker held")
if evidence["app2_settled_during_cut"] <= 0:
    problems.append("app2's worker settled nothing while app1 was cut off")
answers = verdict["answers"]
if set(answers) - {"ordered", "already_ordered"}:
    problems.append(f"not every buyer was answered with an order: {answers}")
if verdict["buyers"] == 0:
    problems.append("no buyer")
for field in ("lost", "wrong_order_id", "false_sold_out", "duplicate_buyers", "duplicate_orders",
              "orders_without_buyer", "unknown_with_order", "unknown_without_order"):
    if verdict[field]:
        problems.append(f"{field}: {verdict[field]}")
if verdict["oversold"]:
    problems.append(f"oversold: {verdict['oversold']}")
if verdict["store_orders"] != verdict["buyers"]:
    problems.append(f"{verdict['buyers']} buyers but {verdict['store_orders']} orders in the store")
for p in problems:
    print(f"  - {p}", file=sys.stderr)
print(f"hosts-test:    {verdict['buyers']} buyers, answers {answers}, "
      f"held {evidence['held_unacked']}, redelivered {evidence['redelivered_during_cut']}, "
      f"app2 settled {evidence['app2_settled_during_cut']} during the cut")
sys.exit(1 if problems else 0)
PY
say "   ok"

# --- 4. down leaves nothing behind ------------------------------------------------------------------
say "4. down leaves nothing behind"
mapfile -t inodes < <(for ns in /run/netns/fst-*; do [[ -e "$ns" ]] && stat -L -c %i "$ns"; done)
"${hosts_cmd[@]}" down >"$work/down.log" 2>&1 || { cat "$work/down.log" >&2; fail "down failed"; }
left=()
for ns in /run/netns/fst-*; do [[ -e "$ns" ]] && left+=("namespace ${ns##*/}"); done
for entry in /etc/netns/fst-*; do [[ -e "$entry" ]] && left+=("$entry"); done
while read -r link; do [[ -n "$link" ]] && left+=("link $link"); done \
    < <(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^fst-' || true)
[[ -e "$hosts_dir" ]] && left+=("folder $hosts_dir")
for link in /proc/[0-9]*/ns/net; do
    inode="$(readlink "$link" 2>/dev/null)" || continue
    inode="${inode#net:[}" inode="${inode%]}"
    for want in "${inodes[@]}"; do
        [[ "$inode" == "$want" ]] && left+=("process ${link#/proc/} in a deleted namespace")
    done
done
while read -r pid; do [[ -n "$pid" ]] && left+=("process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline"))"); done \
    < <(pgrep -f "$hosts_dir/" || true)
((${#left[@]} == 0)) || { printf '  - %s\n' "${left[@]}" >&2; fail "down left these behind"; }
say "   ok"
say "all passed"
