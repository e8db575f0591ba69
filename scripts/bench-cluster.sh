#!/usr/bin/env bash
# Beyond one broker node, measured side by side in one run, on the native stack:
#
#   scripts/bench-cluster.sh [--out DIR] [--no-build] [--quick]
#
#   (a) the queue route's matrix (routes mq; c = 100, 300, 500; -r 10; stock 100; count-insert
#       and conditional) on the local single node with a classic queue, then on a three-node
#       cluster (scripts/rabbit-cluster.sh) with a quorum queue: throughput and p99 per row,
#       oversold and lost; side by side in one-node-vs-cluster.md;
#   (b) failover: on the cluster, `loadtest run .../mq/buy -c 100 -t 30s` (conditional, stock
#       1,000,000: every buy writes) while the node that leads the request queue is killed
#       (kill -9 of its Erlang VM) about 10 s in, marked on the run's timeline; the error
#       window (first to last second with an error), the 5xx answers, and lost;
#   (c) competing consumers: 1, 2 and 4 workers (prefetch 1, batch 1) on the single node
#       (loadtest matrix --workers 1,2,4 --reconfigure 'scripts/stack.sh --reconfigure'):
#       the original protocol with count-insert (more than one worker races again and can
#       oversell, even through the queue) and conditional (correct with any number); and
#       every buy writing with conditional (stock 1,000,000, c = 100, 10 s).
#
#   --out DIR    where the reports go (default results/cluster)
#   --no-build   use the release binaries already built
#   --quick      a shorter run for trying the script (c = 100, -r 5, failover 20 s): not for
#                the committed results
#   LOADTEST     (env) the load tester to run (default target/release/loadtest)
#
# Writes DIR/summary.md (machine, date, load, the tables) next to every report (JSON,
# Markdown, SVG: one-node-classic, cluster-quorum, failover with its timeline SVG,
# workers-contended, workers-every-buy-writes). Runs the stack on its fixed ports
# (scripts/stack.sh): nothing else may use them; run it on a quiet machine, since the load
# generator, the services and three RabbitMQ nodes share its cores.
set -euo pipefail

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bench_name=bench-cluster
# shellcheck source=scripts/lib/bench-common.sh
source scripts/lib/bench-common.sh

out=results/cluster build=1 quick=0
while (($#)); do
    case "$1" in
        --out) (($# >= 2)) || usage; out="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --quick) quick=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "bench-cluster: unknown argument: $1" >&2; usage ;;
    esac
done
command -v python3 >/dev/null || die "python3 is needed to read the reports"

if ((quick)); then
    concurrency=100 repetitions=5 failover_s=20 kill_at_s=7 writes_s=5
else
    concurrency=100,300,500 repetitions=10 failover_s=30 kill_at_s=10 writes_s=10
fi

if ((build)); then build_release; fi
[[ -x "$loadtest" ]] || die "$loadtest not found"
mkdir -p "$out"

matrix() {
    "$loadtest" matrix "$target" --out "$out" --routes mq --stock 100 \
        --concurrency "$concurrency" -r "$repetitions" -q "$@"
}

started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_at_start="$(cut -d' ' -f1-3 /proc/loadavg)"

# Capacity comparisons, as the experiment: without the front tier's admission time bound
# (at c = 500 the cluster's queue waits longer than its target and would refuse; that is
# bench-overload.sh's measurement).
export FLASHSALE_TARGET_WAIT_MS=0

# --- One node: (a) classic matrix, (c) competing workers ------------------------------------
start_stack
say "(a) matrix on one node, classic queue"
matrix --label one-node-classic --strategies count-insert,conditional
say "(c) 1, 2 and 4 workers, count-insert and conditional"
reconfigure="$PWD/scripts/stack.sh --reconfigure"
matrix --label workers-contended --strategies count-insert,conditional --workers 1,2,4 \
    --reconfigure "$reconfigure"
"$loadtest" matrix "$target" --out "$out" --routes mq --stock 1000000 --concurrency 100 \
    -t "${writes_s}s" -q --label workers-every-buy-writes --strategies conditional \
    --workers 1,2,4 --reconfigure "$reconfigure"
stop_stack

# --- Three nodes: (a) quorum matrix, (b) failover ----------------------------------------------
start_stack --cluster
say "(a) matrix on the three-node cluster, quorum queue"
matrix --label cluster-quorum --strategies count-insert,conditional

say "(b) failover: the queue leader's node is killed ${kill_at_s} s into a ${failover_s} s run"
marks="$out/failover-marks.txt"
rm -f "$marks"
"$loadtest" run "$target/mq/buy" -c 100 -t "${failover_s}s" --admin-token "$FLASHSALE_ADMIN_TOKEN" \
    --stock 1000000 --strategy conditional --label failover --out "$out" \
    --marks-file "$marks" -q &
load_pid=$!
sleep "$kill_at_s"
leader="$(scripts/rabbit-cluster.sh leader buy_requests)"
node="${leader%@*}"
node="${node##*-}"
killed_at="$(date +%s.%N)"
scripts/rabbit-cluster.sh kill "$node"
echo "$killed_at queue leader $leader killed" >>"$marks"
say "killed $leader (node $node)"
status=0
wait "$load_pid" || status=$?
((status == 0 || status == 3)) || die "the failover run failed (exit $status)"
say "restarting $leader"
scripts/rabbit-cluster.sh start "$node"
stop_stack

# --- Summary ---------------------------------------------------------------------------------------
"$loadtest" compare "$out/one-node-classic.json" "$out/cluster-quorum.json" \
    --markdown "$out/one-node-vs-cluster.md" >/dev/null
failover="$(python3 - "$out/failover.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
timeline = report.get("timeline") or []
def errors(second):
    return sum(v for v in second.get("errors", {}).values() if isinstance(v, (int, float)))
failing = [s["t_s"] for s in timeline if errors(s) > 0]
marks = report.get("marks") or []
outcomes = report.get("outcomes", {})
window = (max(failing) - min(failing) + 1) if failing else 0
print(f"| kill at (s) | error window (s) | seconds with errors | 5xx | timeouts | other errors | requests | lost |")
print(f"|---|---|---|---|---|---|---|---|")
kill = ", ".join(f"{m['t_s']:.1f}" for m in marks) or "?"
other = report.get("errors", 0) - outcomes.get("http_5xx", 0) - outcomes.get("timeout", 0)
seconds = ", ".join(str(s) for s in failing) or "none"
print(f"| {kill} | {window} | {seconds} | {outcomes.get('http_5xx', 0)} | {outcomes.get('timeout', 0)} "
      f"| {other} | {report.get('requests')} | {report.get('lost_orders')} |")
PY
)"
# A report's Markdown inside the summary: its title one level down.
demote() { sed 's/^# /### /' "$1"; }
{
    echo "# Beyond one broker node: one node vs a three-node cluster, failover, competing workers"
    echo
    echo "Run of \`scripts/bench-cluster.sh$( ((quick)) && echo " --quick")\` started $started_at on" \
        "$(machine_line); load average at start: $load_at_start. The load generator, the" \
        "services and the RabbitMQ nodes share the machine."
    echo
    echo "## (a) The queue route: one node (classic queue) vs three nodes (quorum queue)"
    echo
    cat "$out/one-node-vs-cluster.md"
    echo
    echo "## (b) Failover: the request queue's leader killed mid-run (timeline: failover-timeline.svg)"
    echo
    echo "$failover"
    echo
    echo "## (c) Competing consumers: 1, 2 and 4 workers"
    echo
    echo "Original protocol (stock 100), count-insert and conditional:"
    echo
    demote "$out/workers-contended.md"
    echo
    echo "Every buy writes (stock 1,000,000, c = 100, ${writes_s} s):"
    echo
    demote "$out/workers-every-buy-writes.md"
} >"$out/summary.md"
say "done: $out/summary.md"
