#!/usr/bin/env bash
# The queue route at HTTP speed, measured side by side in one run on the native stack:
#
#   scripts/bench-queue.sh [--out DIR] [--no-build] [--repeat K] [--quick]
#
#   (a) the original protocol (stock 100; c = 100, 300, 500; -r 10; both strategies; both
#       routes), gate off, one worker with batch 1 (the original) and batch 64, every row
#       --repeat K times (median and spread): goal, the queue route with batch 64 at >= 0.8x
#       the naive HTTP route's trans/sec at c = 500, oversold 0 and lost 0 in every row;
#   (b) every buy writes (stock 1,000,000, c = 100, 10 s), batch 1 vs batch 64, the worker's
#       /metrics scraped around each row: goal, the batched queue route at >= 3x its own
#       prefetch-1 throughput; decisions per store transaction from the worker's batch sizes;
#   (c) 5 s after sell-out (conditional, batch 64), the front tier's gate off vs on: goal,
#       /mq/buy and /http/buy with the gate at >= 2x /http/buy without it;
#   (d) what limits each row: the same settings again (a few seconds each) with every
#       service's CPU sampled from /proc (scripts/lib/procstat.py).
#
#   --out DIR    where the reports go (default results/queue)
#   --no-build   use the release binaries already built
#   --repeat K   runs per row of (a) (default 3)
#   --quick      a short run for trying the script (c = 100 only, 3 s rows): not for results
#   LOADTEST     (env) the load tester to run (default target/release/loadtest)
#
# Writes DIR/summary.md (machine, date, load, every table, the goals met or missed) next to
# the reports (JSON, Markdown, SVG). Uses the stack's fixed ports (scripts/stack.sh): run it
# on a quiet machine, since the generator, the services and RabbitMQ share its cores.
set -euo pipefail

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bench_name=bench-queue
# shellcheck source=scripts/lib/bench-common.sh
source scripts/lib/bench-common.sh

out=results/queue build=1 repeat=3 quick=0
while (($#)); do
    case "$1" in
        --out) (($# >= 2)) || usage; out="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --repeat) (($# >= 2)) || usage; repeat="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "bench-queue: unknown argument: $1" >&2; usage ;;
    esac
done
command -v python3 >/dev/null || die "python3 is needed to read the reports"
if ((quick)); then
    concurrency=100 writes=3s after=3s repeat=1
else
    concurrency=100,300,500 writes=10s after=5s
fi

if ((build)); then build_release; fi
[[ -x "$loadtest" ]] || die "$loadtest not found"
mkdir -p "$out"
reconfigure="$PWD/scripts/stack.sh --reconfigure"
worker_metrics=http://127.0.0.1:3101/metrics
started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_at_start="$(cut -d' ' -f1-3 /proc/loadavg)"

# Capacity comparisons, as the experiment: without the front tier's admission time bound
# (its refusals would cap the slower routes' latency; bench-overload.sh measures it).
export FLASHSALE_TARGET_WAIT_MS=0
start_stack --strategy conditional

say "(a) the original protocol, batch 1 and 64, gate off, --repeat $repeat"
# (count-insert oversells over HTTP: that is the experiment, so only `lost` is checked here.)
lt matrix "$target" --admin-token "$FLASHSALE_ADMIN_TOKEN" --out "$out" --label original --concurrency "$concurrency" \
    -r 10 --stock 100 --batch 1,64 --gate off --reconfigure "$reconfigure" \
    --repeat "$repeat" --check lost==0 -q

say "(b) every buy writes: stock 1,000,000, c = 100, $writes"
lt matrix "$target" --admin-token "$FLASHSALE_ADMIN_TOKEN" --out "$out" --label every-buy-writes --concurrency 100 \
    -t "$writes" --stock 1000000 --routes mq,http --batch 1,64 --gate off \
    --reconfigure "$reconfigure" --metrics "$worker_metrics" \
    --check oversold==0 --check lost==0 -q

say "(c) $after after sell-out, gate off and on (batch 64, conditional)"
lt matrix "$target" --admin-token "$FLASHSALE_ADMIN_TOKEN" --out "$out" --label after-sell-out --concurrency 100 \
    -t "$after" --sold-out-first --strategies conditional --routes http,mq --batch 64 \
    --gate off,on --reconfigure "$reconfigure" --check oversold==0 --check lost==0 -q

# (d) One run per setting with the services' CPU sampled around it.
limits="$out/limits.md"
{
    echo "| setting | route | trans/sec | CPU, % of one core, per process (sampled from /proc) |"
    echo "|---|---|---|---|"
} >"$limits"
# limit_run LABEL BATCH GATE ROUTE LOADTEST-ARGS...: reconfigure, run with the services and
# the load generator sampled, summarize.
sample_interval=0.2
limit_run() {
    local label="$1" batch="$2" gate="$3" route="$4"
    shift 4
    FLASHSALE_BATCH="$batch" FLASHSALE_SOLD_OUT_GATE="$gate" scripts/stack.sh --reconfigure
    local samples="$out/limits-$label.csv" run_pid status=0 cpu rps
    env -u FLASHSALE_ADMIN_TOKEN "$loadtest" run "$target/$route/buy" --label "limits-$label" \
        --out "$out" -q --admin-token "$FLASHSALE_ADMIN_TOKEN" --strategy conditional "$@" \
        >/dev/null &
    run_pid=$!
    start_sampling "$samples" "loadtest=$run_pid"
    wait "$run_pid" || status=$?
    stop_sampling
    ((status == 0 || status == 3)) || die "loadtest run $label failed (exit $status)"
    cpu="$(cpu_cells "$samples")"
    rps="$(report_rps "$out/limits-$label.json")"
    echo "| $label | $route | $rps | $cpu |" >>"$limits"
}
say "(d) what limits each row"
limit_run original-http-c500 1 off http -c 500 -t "$after" --stock 100
limit_run original-mq-b1-c500 1 off mq -c 500 -t "$after" --stock 100
limit_run original-mq-b64-c500 64 off mq -c 500 -t "$after" --stock 100
limit_run writes-mq-b1 1 off mq -c 100 -t "$writes" --stock 1000000
limit_run writes-mq-b64 64 off mq -c 100 -t "$writes" --stock 1000000
limit_run after-sell-out-http-gate-off 64 off http -c 100 -t "$after" --stock 100 --sold-out-first
limit_run after-sell-out-http-gate-on 64 on http -c 100 -t "$after" --stock 100 --sold-out-first
limit_run after-sell-out-mq-gate-on 64 on mq -c 100 -t "$after" --stock 100 --sold-out-first
stop_stack

# --- Summary: the tables, and each goal's ratio from the reports ------------------------------
goals="$(python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
sys.path.insert(0, "scripts/lib")
from matrix_rows import pick, reader, verdict
rows = reader(out)

print("| goal | measured | ratio |")
print("|---|---|---|")
original = rows("original")
c = max(r["concurrency"] for r in original)
for strategy in ("count-insert", "conditional"):
    http = pick(original, route="http", strategy=strategy, c=c, batch=1)["throughput_rps"]
    mq = pick(original, route="mq", strategy=strategy, c=c, batch=64)["throughput_rps"]
    print(f"| (a) MQ batch 64 vs naive HTTP, {strategy}, c = {c} (medians) "
          f"| {mq['median']:,.0f} vs {http['median']:,.0f} trans/sec "
          f"| {verdict(mq['median'] / http['median'], 0.8)} |")
# count-insert over HTTP oversells by design (the experiment); every other row must not.
bad = [r["label"] for r in original if r.get("lost_orders")
       or (r.get("oversold") and not (r["route"] == "http" and r.get("strategy") == "count-insert"))]
print(f"| (a) oversold 0 (but naive HTTP count-insert, the experiment) and lost 0 in every row "
      f"| {len(original)} rows | {'met' if not bad else 'missed: ' + ', '.join(bad)} |")

writes = json.load(open(f"{out}/every-buy-writes.json"))
for strategy in ("count-insert", "conditional"):
    b1 = pick(writes["rows"], route="mq", strategy=strategy, batch=1)["throughput_rps"]["median"]
    b64 = pick(writes["rows"], route="mq", strategy=strategy, batch=64)["throughput_rps"]["median"]
    print(f"| (b) every buy writes, MQ batch 64 vs batch 1, {strategy} "
          f"| {b64:,.0f} vs {b1:,.0f} trans/sec | {verdict(b64 / b1, 3)} |")
for step in writes["steps"]:
    if step["route"] != "mq":
        continue
    counters = next(iter(step.get("server_metrics", {}).values()), {}).get("counters", {})
    decided = counters.get("flashsale_worker_batch_size_sum", 0)
    batches = counters.get("flashsale_worker_batch_size_count", 0)
    if batches:
        print(f"| (b) decisions per store transaction, {step['strategy']}, batch "
              f"{step['dimensions'].get('batch')} | {decided:,.0f} decisions in {batches:,.0f} "
              f"transactions, {decided / step['elapsed_s']:,.0f} decisions/s "
              f"| {decided / batches:.1f} per transaction |")

after = rows("after-sell-out")
base = pick(after, route="http", gate="off")["throughput_rps"]["median"]
for route in ("mq", "http"):
    gated = pick(after, route=route, gate="on")["throughput_rps"]["median"]
    print(f"| (c) after sell-out, /{route}/buy gate on vs /http/buy gate off "
          f"| {gated:,.0f} vs {base:,.0f} trans/sec | {verdict(gated / base, 2)} |")
PY
)"
demote() { sed 's/^# /### /' "$1"; }
{
    echo "# The queue route at HTTP speed: batched decisions and the sold-out gate"
    echo
    echo "Run of \`scripts/bench-queue.sh$( ((quick)) && echo " --quick")\` started $started_at" \
        "on $(machine_line); load average at start: $load_at_start. The load generator, the" \
        "front tier, nginx, 2 backends, the worker and RabbitMQ share the machine; the store is" \
        "the embedded SQLite file."
    echo
    echo "## Goals"
    echo
    echo "$goals"
    echo
    echo "## (a) The original protocol, gate off, batch 1 and 64 ($repeat runs a row)"
    echo
    demote "$out/original.md"
    echo
    echo "## (b) Every buy writes (stock 1,000,000, c = 100, $writes)"
    echo
    demote "$out/every-buy-writes.md"
    echo
    echo "## (c) $after after sell-out: the gate off and on"
    echo
    demote "$out/after-sell-out.md"
    echo
    echo "## (d) What limits each row"
    echo
    echo "Each setting run again for $after (the original protocol's stock of 100, so mostly" \
        "sold-out answers; every buy writing for $writes), with the CPU time of every service and" \
        "of the load generator read from /proc every 0.2 s: a process near 100% is bound to one" \
        "core (the front tier runs two threads); all of them together near 200% means both cores" \
        "are full."
    echo
    cat "$limits"
} >"$out/summary.md"
say "done: $out/summary.md"
