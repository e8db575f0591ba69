#!/usr/bin/env bash
# Many hosts, one sale, measured (scripts/hosts.sh): the stack across network namespaces
# next to the same stack on one host, and five partitions mid-sale.
#
#   scripts/bench-hosts.sh [--out DIR] [--no-build] [--quick] [--skip-matrix]
#                          [--scenarios a,b,c,d,e]
#
#   (1) the matrix, on one host (hosts.sh --layout one: every host in one namespace, the same
#       processes and settings) and then across hosts, in the same run: the batched queue
#       route (worker --batch 64) and the HTTP route, `conditional`, gate off and on:
#       the original protocol (stock 100, c = 100, 300, 500, -r 10) and every buy writing
#       (stock 1,000,000, c = 100, 10 s, 3 runs a row: the steady rows the goal is read on,
#       across hosts >= 0.8x one host for the queue route); side by side, with the ratios;
#   (2) five partitions, across hosts, each mid-sale (c = 100, 25 s, the cut about 5 s in,
#       marked on the run's timeline with the heal):
#       a. the host of the request queue's leader cut off from every host for 10 s (/mq/buy);
#       b. app1 cut off for 10 s while its worker holds an unacknowledged batch: app1 is cut
#          from db first, so that its worker stalls inside a batch, then from everyone
#          (/mq/buy);
#       c. db cut off for 5 s (/http/buy);
#       d. fe1 cut off from rmq1..3 only for 10 s, after the sale sold out (/http/buy,
#          --sold-out-first, gate on): its gate must fall back to the store while it cannot
#          hear the sale's events, and close again after the heal; fe1's gate state is
#          sampled every 0.5 s (partition-d-gate.tsv);
#       e. app1 cut off for 10 s behind the front tiers' nginx (/http/buy).
#       Each: every buyer's answer (--buyers-out) against the store's orders read with psql
#       on db after the heal, lost, oversold, one order per user, the error window and the
#       time from the heal to full rate (scripts/lib/hosts/verdict.py).
#
#   --out DIR       where the reports go (default results/hosts)
#   --no-build      use the release binaries already built
#   --quick         shorter, for trying the script (c = 100 only, -r 5, one 5 s run a row):
#                   not for the committed results
#   --skip-matrix   only the partitions
#   --scenarios L   which partitions (default a,b,c,d,e; none: only the matrix)
#   --bin-dir DIR   the binaries to run (default target/release, built first); implies
#                   --no-build
#   FLASHSALE_HOSTS_PREFIX, FLASHSALE_HOSTS_SUBNET (env): as scripts/hosts.sh
#
# Writes DIR/summary.md (machine, date, the tables) next to every report (JSON, Markdown,
# SVG; each partition's timeline is partition-X-timeline.svg, its verdict
# partition-X-verdict.json). Needs root and network namespaces (scripts/hosts.sh says why
# not). Uses no fixed port of the machine, but the whole machine's CPU: run it when nothing
# else does.
set -euo pipefail

usage() { sed -n '2,46p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bench_name=bench-hosts
# shellcheck source=scripts/lib/bench-common.sh
source scripts/lib/bench-common.sh

out=results/hosts build=1 quick=0 matrix=1 scenarios=a,b,c,d,e bin_dir=""
while (($#)); do
    case "$1" in
        --out) (($# >= 2)) || usage; out="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --quick) quick=1; shift ;;
        --skip-matrix) matrix=0; shift ;;
        --scenarios) (($# >= 2)) || usage; scenarios="$2"; shift 2 ;;
        --bin-dir) (($# >= 2)) || usage; bin_dir="$2"; build=0; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "bench-hosts: unknown argument: $1" >&2; usage ;;
    esac
done
[[ "$scenarios" =~ ^(none|[a-e](,[a-e])*)$ ]] || die "--scenarios takes letters a..e, comma-separated, or none"
command -v python3 >/dev/null || die "python3 is needed to read the reports"
((EUID == 0)) || die "needs root (network namespaces): run it with sudo"

if ((quick)); then
    concurrency=100 repetitions=5 writes_s=5 writes_repeat=1 run_s=25
else
    concurrency=100,300,500 repetitions=10 writes_s=10 writes_repeat=3 run_s=25
fi
cut_at_s=5

if ((build)); then build_release; fi
up_options=(--batch 64 --gate on)
if [[ -n "$bin_dir" ]]; then
    bin_dir="$(cd "$bin_dir" && pwd)"
    loadtest="$bin_dir/loadtest"
    up_options+=(--bin-dir "$bin_dir")
fi
[[ -x "$loadtest" ]] || die "$loadtest not found"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# Buyers files and the store's orders: large, and only the verdicts are worth keeping.
work="$(mktemp -d)"
token="$FLASHSALE_ADMIN_TOKEN"
hosts_cmd=(scripts/hosts.sh)
# shellcheck source=scripts/lib/hosts/scenarios.sh
source scripts/lib/hosts/scenarios.sh

# The stack this script brought up is taken down however the script ends.
stack_up=0
down() {
    if ((stack_up)); then
        "${hosts_cmd[@]}" down >/dev/null || say "warning: scripts/hosts.sh down failed"
        stack_up=0
    fi
}
trap 'down; rm -rf "$work"' EXIT

# up [HOSTS-OPTIONS]: scripts/hosts.sh [HOSTS-OPTIONS] up with this run's settings.
up() {
    say "scripts/hosts.sh $* up ${up_options[*]}"
    stack_up=1
    "${hosts_cmd[@]}" "$@" up "${up_options[@]}" >/dev/null
}

started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_at_start="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- (1) The matrix: one host, then across hosts ---------------------------------------------
matrix_rows() {
    local layout="$1" reconfigure="$PWD/scripts/hosts.sh reconfigure"
    on_client "$loadtest" matrix "$scenario_edge" --admin-token "$token" --out "$out" -q \
        --label "matrix-$layout" --routes mq,http --strategies conditional --stock 100 \
        --concurrency "$concurrency" -r "$repetitions" --batch 64 --gate off,on \
        --reconfigure "$reconfigure" --metrics http://fe1:5000/metrics,http://fe2:5000/metrics
    on_client "$loadtest" matrix "$scenario_edge" --admin-token "$token" --out "$out" -q \
        --label "writes-$layout" --routes mq,http --strategies conditional --stock 1000000 \
        --concurrency 100 -t "${writes_s}s" --repeat "$writes_repeat" --batch 64 --gate on \
        --reconfigure "$reconfigure"
}

if ((matrix)); then
    for layout in one hosts; do
        up --layout "$layout"
        say "(1) the matrix, $layout layout"
        matrix_rows "$layout"
        down
    done
    "$loadtest" compare "$out/matrix-one.json" "$out/matrix-hosts.json" \
        --markdown "$out/matrix-one-vs-hosts.md" >/dev/null
    "$loadtest" compare "$out/writes-one.json" "$out/writes-hosts.json" \
        --markdown "$out/writes-one-vs-hosts.md" >/dev/null
fi

# --- (2) Partitions, across hosts --------------------------------------------------------------------
if [[ "$scenarios" != none ]]; then
    up --layout hosts
    IFS=, read -r -a letters <<<"$scenarios"
    for s in "${letters[@]}"; do
        run_scenario "$s" || say "($s): a check or a goal failed (see partition-$s-verdict.json)"
        # The next one starts on a whole stack again (up rebuilds a broken one).
        up --layout hosts
    done
    down
fi

# --- Summary ----------------------------------------------------------------------------------------
python3 scripts/lib/hosts/summary.py "$out" --started "$started_at" --machine "$(machine_line)" \
    --load "$load_at_start" --command "scripts/bench-hosts.sh$( ((quick)) && echo " --quick")" \
    >"$out/summary.md"
say "done: $out/summary.md"
