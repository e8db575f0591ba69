#!/usr/bin/env bash
# A flash sale is an overload: more buyers than the stack can serve. Measured on the native
# stack, every buy writing (conditional, stock 100,000,000), in three parts:
#
#   scripts/bench-overload.sh [--out DIR] [--no-build] [--quick] [--parts LIST]
#                             [--target-wait-ms MS] [--soak-minutes M] [--summary-only]
#
#   3x         admission by time, on three stacks with default options side by side: the
#              prefetch-1 queue (one worker), the batched queue (--batch 64) and the
#              three-node quorum cluster (stack.sh --cluster), all on /mq/buy. For each, its
#              closed-loop capacity (c = 500, the front tier's time bound off: what the
#              stack serves), then, on a fresh stack with default options, an open loop at
#              3x that, then the capacity again on a fresh stack; C is the mean of the two.
#              Goals: the accepted answers' p99 under 500 ms, the refusals' p50 under
#              10 ms, oversold 0, lost 0 (loadtest --check), and at least 0.9 C accepted a
#              second (in the summary): shedding must not starve the stack;
#   2x         route by route on the batched stack (worker batch 64, gate off, default
#              options): closed-loop capacity C (c = 500, 10 s, time bound on; C counts the
#              buys served, not a refused buyer's fast 503s), then an open loop of a
#              steady 0.5 C for 50 s (the "base" run, which resets the sale and reads the
#              store at the end) and, from 10 s to 40 s, 1.5 C more (the "burst" run): 2 C
#              in all for 30 s, on 1,000 connections in all (each one costs the front tier
#              ~30 KB whatever it carries, so memory shows queued work, not sockets). Goals:
#              the accepted answers' p99 under 1 s, every other answer a fast 503, no
#              timeout, oversold 0, lost 0, every service's RSS under 2x its value at
#              capacity, and the base run's p99 back to normal within 2 s after the burst;
#   soak       both routes at once, each at a quarter of its capacity (half the stack's), for
#              M minutes (default 10): no error, and every service's RSS flat within 10%
#              after the first minute.
#
#   --out DIR          where the reports go (default results/overload)
#   --no-build         use the release binaries already built
#   --quick            shorter phases for trying the script (not for results)
#   --parts LIST       comma-separated parts to run (default 3x,2x,soak); soak needs 2x's
#                      capacities
#   --stacks LIST      the 3x part's stacks (default prefetch-1,batch-64,cluster)
#   --target-wait-ms MS  the front tier's target wait in every run but the capacity runs of
#                      3x (default: the front tier's own, or $FLASHSALE_TARGET_WAIT_MS)
#   --soak-minutes M   length of the soak (default 10; 0 skips it)
#   --summary-only     rebuild DIR/summary.md from the reports and samples already in DIR
#   LOADTEST           (env) the load tester to run (default target/release/loadtest)
#
# Writes DIR/summary.md with the goals met or missed next to the reports and the sampled CPU
# and RSS (CSV). Uses the stack's fixed ports (and, for 3x, the cluster's 5701-5703): run it
# alone, under `flock /tmp/flashsale-stack.lock` on a shared machine, and on a quiet one for
# results.
set -euo pipefail

usage() { sed -n '2,47p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bench_name=bench-overload
# shellcheck source=scripts/lib/bench-common.sh
source scripts/lib/bench-common.sh

out=results/overload build=1 quick=0 soak_minutes=10 summary_only=0 parts=3x,2x,soak
stacks=prefetch-1,batch-64,cluster
target_wait="${FLASHSALE_TARGET_WAIT_MS:-}"
while (($#)); do
    case "$1" in
        --out) (($# >= 2)) || usage; out="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --quick) quick=1; shift ;;
        --parts) (($# >= 2)) || usage; parts="$2"; shift 2 ;;
        --stacks) (($# >= 2)) || usage; stacks="$2"; shift 2 ;;
        --target-wait-ms) (($# >= 2)) || usage; target_wait="$2"; shift 2 ;;
        --soak-minutes) (($# >= 2)) || usage; soak_minutes="$2"; shift 2 ;;
        --summary-only) summary_only=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "bench-overload: unknown argument: $1" >&2; usage ;;
    esac
done
# Only this script sets the target, run by run.
unset FLASHSALE_TARGET_WAIT_MS
[[ -z "$target_wait" || "$target_wait" =~ ^[0-9]+$ ]] || die "--target-wait-ms takes milliseconds"
for part in ${parts//,/ }; do
    [[ "$part" == 3x || "$part" == 2x || "$part" == soak ]] || die "unknown part: $part"
done
has_part() { [[ ",$parts," == *",$1,"* ]]; }
if has_part soak && ! has_part 2x && ! ((summary_only)); then
    die "the soak takes its rates from the 2x part's capacities: --parts 2x,soak"
fi
has_part soak || soak_minutes=0
command -v python3 >/dev/null || die "python3 is needed to read the reports"
if ((quick)); then
    capacity_s=4 lead_s=4 burst_s=8 tail_s=6 overload_s=8
    soak_minutes=$((soak_minutes < 1 ? soak_minutes : 1))
else
    capacity_s=10 lead_s=10 burst_s=30 tail_s=10 overload_s=20
fi
base_s=$((lead_s + burst_s + tail_s))
# The stacks of the 3x part, each with its stack.sh options.
stack_options() {
    case "$1" in
        prefetch-1) options=() ;;
        batch-64) options=(--batch 64) ;;
        cluster) options=(--cluster) ;;
        *) return 1 ;;
    esac
}
for stack in ${stacks//,/ }; do stack_options "$stack" || die "unknown stack: $stack"; done

mkdir -p "$out"
# The run's facts, kept for --summary-only.
facts="$out/run.env"
if ((summary_only)); then
    # Runs before the 3x part wrote no `parts`.
    parts=2x,soak overload_s=0 stacks=prefetch-1,batch-64,cluster
    # shellcheck source=/dev/null
    source "$facts"
else
    if ((build)); then build_release; fi
    [[ -x "$loadtest" ]] || die "$loadtest not found"
    started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
    load_at_start="$(cut -d' ' -f1-3 /proc/loadavg)"
    machine="$(machine_line)"
    printf '%s=%q\n' started_at "$started_at" load_at_start "$load_at_start" machine "$machine" \
        quick "$quick" parts "$parts" stacks "$stacks" target_wait "$target_wait" \
        soak_minutes "$soak_minutes" capacity_s "$capacity_s" base_s "$base_s" \
        overload_s "$overload_s" >"$facts"
fi
stock=100000000
sale=(--admin-token "$FLASHSALE_ADMIN_TOKEN" --stock "$stock" --strategy conditional)

# Answers that were not an error, per second: what the stack served. (Not trans/sec: with the
# time bound on, a closed loop's refused buyers ask again at once and their fast 503s count.)
accepted_rps_of() {
    python3 -c 'import json,sys
r = json.load(open(sys.argv[1])); o = r["outcomes"]
print((o["ordered"] + o["sold_out"] + o["already_ordered"]) / r["elapsed_s"])' "$1"
}

# start_stack_targeting MS ARGS...: the stack with the front tier's target wait MS (empty:
# the front tier's default); stack.sh passes its environment on to the front tier. With MS 0
# (a capacity run: what the stack serves) the ceilings are the defaults too, whatever
# FLASHSALE_MAX_IN_FLIGHT_HTTP/_MQ the caller set for the overload runs.
start_stack_targeting() {
    local wait="$1" http="${FLASHSALE_MAX_IN_FLIGHT_HTTP-}" mq="${FLASHSALE_MAX_IN_FLIGHT_MQ-}"
    shift
    if [[ -n "$wait" ]]; then export FLASHSALE_TARGET_WAIT_MS="$wait"; fi
    if [[ "$wait" == 0 ]]; then unset FLASHSALE_MAX_IN_FLIGHT_HTTP FLASHSALE_MAX_IN_FLIGHT_MQ; fi
    start_stack "$@"
    unset FLASHSALE_TARGET_WAIT_MS
    if [[ -n "$http" ]]; then export FLASHSALE_MAX_IN_FLIGHT_HTTP="$http"; fi
    if [[ -n "$mq" ]]; then export FLASHSALE_MAX_IN_FLIGHT_MQ="$mq"; fi
}

# The cluster of the 3x part, if this script started it: stopped on exit.
started_cluster=0
cleanup() {
    stop_stack
    if ((started_cluster)); then
        say "stopping the RabbitMQ cluster"
        scripts/rabbit-cluster.sh down >/dev/null || true
        started_cluster=0
    fi
}
trap cleanup EXIT

# The front tier's admission on a route as /metrics shows it: "LIMIT RATE".
admission_now() {
    local metrics
    metrics="$(curl -fsS "$target/metrics")" || { echo "- -"; return; }
    python3 -c '
import re, sys
route, text = sys.argv[1], sys.argv[2]
def value(name):
    m = re.search(r"^%s\{route=\"%s\"\} (\S+)$" % (name, route), text, re.M)
    return str(round(float(m.group(1)))) if m else "-"
print(value("flashsale_frontend_admission_limit"),
      value("flashsale_frontend_admission_completion_rate"))' "$1" "$metrics"
}

# NAME=PID of the nodes of the RabbitMQ cluster that scripts/rabbit-cluster.sh runs, if any.
cluster_processes() {
    local n file
    for n in 1 2 3; do
        file=".stack/rabbit-cluster/node-$n/rabbitmq.pid"
        [[ -r "$file" ]] && echo "rabbitmq-$n=$(tr -dc '0-9' <"$file")"
    done
    return 0
}

# sampled_run LABEL LOADTEST_RUN_ARGS...: `loadtest run` against /mq/buy, reported as LABEL,
# with the CPU and RSS of every process in LABEL.csv: the load generator's and the cluster's
# nodes' too, since at 3x they share the two cores. A failed check (exit 3) is a result.
sampled_run() {
    local label="$1" run_pid status=0
    shift
    env -u FLASHSALE_ADMIN_TOKEN "$loadtest" run "$target/mq/buy" "$@" "${sale[@]}" -q \
        --label "$label" --out "$out" >/dev/null &
    run_pid=$!
    # shellcheck disable=SC2046 # one NAME=PID word each
    start_sampling "$out/$label.csv" "loadtest=$run_pid" $(cluster_processes)
    wait "$run_pid" || status=$?
    stop_sampling
    ((status == 0 || status == 3)) || die "loadtest run $label failed (exit $status)"
}

# capacity_run LABEL STACK_OPTIONS...: the closed-loop capacity (c = 500, time bound off) of a
# fresh stack, reported as LABEL, sampled (the summary's CPU per accepted buy).
capacity_run() {
    local label="$1"
    shift
    start_stack_targeting 0 --strategy conditional "$@"
    sampled_run "$label" -c 500 -t "${capacity_s}s"
    stop_stack
}

measure_3x() {
    local stack capacity rate options
    for stack in ${stacks//,/ }; do
        stack_options "$stack"
        if [[ "$stack" == cluster ]] && ! scripts/rabbit-cluster.sh status >/dev/null 2>&1; then
            say "starting the three-node RabbitMQ cluster"
            scripts/rabbit-cluster.sh up >/dev/null || die "the RabbitMQ cluster did not come up"
            started_cluster=1
        fi
        say "3x, $stack: closed-loop capacity (c = 500, ${capacity_s} s, time bound off)"
        capacity_run "3x-$stack-capacity" "${options[@]}"
        capacity="$(accepted_rps_of "$out/3x-$stack-capacity.json")"
        rate="$(python3 -c "print(round(3 * $capacity))")"
        say "3x, $stack: capacity $capacity/s; open loop at $rate/s for ${overload_s} s"
        start_stack_targeting "$target_wait" --strategy conditional "${options[@]}"
        sampled_run "3x-$stack" --rate "$rate" -c 1000 -t "${overload_s}s" --timeout-ms 10000 \
            --check 'accepted_p99<500ms' --check 'refused_p50<10ms' --check oversold==0 \
            --check lost==0
        admission_now mq >"$out/3x-$stack-admission.txt"
        stop_stack
        # Capacity again, after: a stack's rate drifts by 10-20% from run to run here, so C
        # is the mean of the runs on either side of the open loop.
        say "3x, $stack: closed-loop capacity again, after the open loop"
        capacity_run "3x-$stack-capacity-after" "${options[@]}"
    done
    if ((started_cluster)); then
        say "stopping the RabbitMQ cluster"
        scripts/rabbit-cluster.sh down >/dev/null || true
        started_cluster=0
    fi
}

# The 2x part and the soak, on one batched stack.
measure_2x_and_soak() {
    local route capacity base_rate burst_rate marks base_pid burst_start rate user_start admin pids pid
    start_stack_targeting "$target_wait" --strategy conditional --batch 64

    for route in http mq; do
        say "2x, $route: capacity (closed loop, c = 500, ${capacity_s} s)"
        start_sampling "$out/capacity-$route.csv"
        lt run "$target/$route/buy" -c 500 -t "${capacity_s}s" "${sale[@]}" -q \
            --label "capacity-$route" --out "$out" >/dev/null
        stop_sampling
        capacity="$(accepted_rps_of "$out/capacity-$route.json")"
        base_rate="$(python3 -c "print(round($capacity * 0.5))")"
        burst_rate="$(python3 -c "print(round($capacity * 1.5))")"
        say "2x, $route: capacity $capacity/s; overload: $base_rate/s for ${base_s} s, +$burst_rate/s from ${lead_s} s to $((lead_s + burst_s)) s"

        marks="$out/overload-$route-marks.txt"
        rm -f "$marks"
        start_sampling "$out/overload-$route.csv"
        lt run "$target/$route/buy" --rate "$base_rate" -c 250 -t "${base_s}s" "${sale[@]}" -q \
            --timeout-ms 10000 --marks-file "$marks" --label "overload-$route-base" --out "$out" \
            --check 'accepted_p99<1s' --check timeouts==0 --check oversold==0 --check lost==0 \
            >/dev/null &
        base_pid=$!
        # The base run connects and resets the sale before its clock starts (well under 1 s).
        sleep "$((lead_s + 1))"
        burst_start="$(date +%s.%N)"
        echo "$burst_start overload starts: +$burst_rate/s (1.5x capacity)" >>"$marks"
        # The end is marked by the clock, not when the burst run returns: it reads the store
        # afterwards, and the base run may read the markers before that is done.
        python3 -c "print(f'{$burst_start + $burst_s:.3f} overload stops')" >>"$marks"
        lt run "$target/$route/buy" --rate "$burst_rate" -c 750 -t "${burst_s}s" -q \
            --timeout-ms 10000 --user-start 1000000000 --label "overload-$route-burst" --out "$out" \
            --check 'accepted_p99<1s' --check 'refused_p99<100ms' --check timeouts==0 >/dev/null
        wait "$base_pid" || true
        stop_sampling
    done

    if ((soak_minutes > 0)); then
        say "soak: both routes at a quarter of their capacity each, ${soak_minutes} min"
        start_sampling "$out/soak.csv"
        pids=()
        for route in http mq; do
            rate="$(python3 -c "print(round($(accepted_rps_of "$out/capacity-$route.json") * 0.25))")"
            user_start=$([[ $route == http ]] && echo 1 || echo 2000000000)
            admin=()
            # One reset, by the first run only: they share the sale.
            [[ $route == http ]] && admin=("${sale[@]}")
            lt run "$target/$route/buy" --rate "$rate" -c 200 -t "${soak_minutes}m" "${admin[@]}" \
                --user-start "$user_start" -q --label "soak-$route" --out "$out" \
                --check errors==0 >/dev/null &
            pids+=($!)
            sleep 1
        done
        for pid in "${pids[@]}"; do wait "$pid" || true; done
        stop_sampling
    fi
    stop_stack
}

if ((!summary_only)); then
    if has_part 3x; then measure_3x; fi
    if has_part 2x; then measure_2x_and_soak; fi
fi

# --- Summary ---------------------------------------------------------------------------------
python3 - "$out" "$procstat" "$parts,stacks=$stacks" "$soak_minutes" "$capacity_s" "$base_s" "$overload_s" \
    <<'PY' >"$out/goals.md"
import importlib.util, json, math, os, statistics, sys
from datetime import datetime
out, procstat_path = sys.argv[1], sys.argv[2]
parts, stacks = sys.argv[3].split(",stacks=")
parts, stacks = parts.split(","), tuple(stacks.split(","))
soak_minutes, capacity_s, base_s, overload_s = (int(a) for a in sys.argv[4:8])
spec = importlib.util.spec_from_file_location("procstat", procstat_path)
procstat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(procstat)

def report(name):
    return json.load(open(f"{out}/{name}.json"))
def ok(flag):
    return "met" if flag else "**missed**"
def accepted(r):
    o = r["outcomes"]
    return o["ordered"] + o["sold_out"] + o["already_ordered"]
def lat(r, cls, field):
    return (r.get(f"latency_{cls}_ms") or {}).get(field)
def lag(r, field):
    return (r.get("send_lag_ms") or {}).get(field)
def ms(value):
    return "-" if value is None else f"{value:,.1f} ms"

if "3x" in parts:
    cap = {s: report(f"3x-{s}-capacity") for s in stacks}
    # Runs before the capacity was measured on both sides have no "after".
    after = {s: report(f"3x-{s}-capacity-after") if os.path.exists(
        f"{out}/3x-{s}-capacity-after.json") else None for s in stacks}
    run = {s: report(f"3x-{s}") for s in stacks}
    limits = {}
    for s in stacks:
        try:
            limits[s] = open(f"{out}/3x-{s}-admission.txt").read().split()
        except OSError:
            limits[s] = ["-", "-"]
    before = {s: accepted(cap[s]) / cap[s]["elapsed_s"] for s in stacks}
    later = {s: after[s] and accepted(after[s]) / after[s]["elapsed_s"] for s in stacks}
    c = {s: (before[s] + later[s]) / 2 if later[s] else before[s] for s in stacks}
    # Accepted a second over the sending time: the answers still coming after it are the
    # few admitted last, within the target.
    a = {s: accepted(run[s]) / run[s]["duration_s"] for s in stacks}
    print("### At 3x capacity, side by side")
    print()
    print("| | " + " | ".join(stacks) + " |")
    print("|---|" + "---|" * len(stacks))
    def row(name, cells):
        print(f"| {name} | " + " | ".join(cells) + " |")
    row("closed-loop capacity before / after (c = 500, time bound off)", [
        f"{before[s]:,.0f}/s, p99 {ms(cap[s]['latency_ms']['p99'])} / "
        + (f"{later[s]:,.0f}/s, p99 {ms(after[s]['latency_ms']['p99'])}" if later[s] else "-")
        for s in stacks])
    row("C: their mean (the open loop's rate is 3x the one before)",
        [f"{c[s]:,.0f}/s" for s in stacks])
    row(f"offered: open loop for {overload_s} s", [f"{run[s]['rate_rps']:,.0f}/s" for s in stacks])
    row("accepted a second", [f"{a[s]:,.0f}/s ({a[s] / c[s]:.2f} C)" for s in stacks])
    row("accepted p50 / p99 / max", [
        f"{ms(lat(run[s], 'accepted', 'p50'))} / {ms(lat(run[s], 'accepted', 'p99'))} / "
        f"{ms(lat(run[s], 'accepted', 'max'))}" for s in stacks])
    row("refused (503)", [
        f"{run[s]['outcomes']['http_5xx']:,} of {run[s]['requests']:,}" for s in stacks])
    row("refusals p50 / p99", [
        f"{ms(lat(run[s], 'refused', 'p50'))} / {ms(lat(run[s], 'refused', 'p99'))}"
        for s in stacks])
    row("timeouts, broken connections", [
        f"{sum(run[s]['outcomes'][k] for k in ('timeout', 'connect_error', 'io_error'))}"
        for s in stacks])
    row("oversold, lost", [f"{run[s]['oversold']}, {run[s]['lost_orders']}" for s in stacks])
    row("admission at the end: limit, measured rate",
        [f"{limits[s][0]} in flight, {limits[s][1]}/s" for s in stacks])
    row("sent behind schedule p50 / p99 (the load generator's own lag, inside every latency above)",
        [f"{ms(lag(run[s], 'p50'))} / {ms(lag(run[s], 'p99'))}" for s in stacks])
    # The CPU while the load ran, every process counted: the load generator's too, since it
    # shares the cores.
    def cores(label, seconds):
        path = f"{out}/{label}.csv"
        if not os.path.exists(path):
            return None
        used = procstat.per_name(procstat.load(path), 0, seconds + 1)
        return sum(u[0] for u in used.values()) / 100, used.get("loadtest", (0,))[0] / 100
    machine_cores = os.cpu_count() or 1
    use = {s: (cores(f"3x-{s}-capacity", capacity_s), cores(f"3x-{s}", overload_s)) for s in stacks}
    row(f"CPU in use, all processes (of them the load generator), of {machine_cores} cores: "
        "capacity run before / open loop", [
        " / ".join("-" if u is None else f"{u[0]:.2f} ({u[1]:.2f})" for u in use[s])
        for s in stacks])
    # Per answer, no model: the capacity run's CPU over its accepted buys, the open loop's
    # over every request it answered (a refusal or a buy).
    def per_answer(u, answers_per_s):
        return "-" if u is None or not answers_per_s else f"{1e6 * u[0] / answers_per_s:,.0f}"
    row("CPU per answer, all processes (µs): accepted buy in the capacity run / any answer "
        "in the open loop", [
        f"{per_answer(use[s][0], before[s])} / "
        f"{per_answer(use[s][1], run[s]['responses'] / run[s]['duration_s'])}" for s in stacks])
    print()
    print("| goal | " + " | ".join(stacks) + " |")
    print("|---|" + "---|" * len(stacks))
    row("accepted p99 under 500 ms",
        [ok((lat(run[s], "accepted", "p99") or math.inf) < 500) for s in stacks])
    row("refusals' p50 under 10 ms",
        [ok((lat(run[s], "refused", "p50") or math.inf) < 10) for s in stacks])
    row("oversold 0, lost 0",
        [ok(run[s]["oversold"] == 0 and run[s]["lost_orders"] == 0) for s in stacks])
    row("accepted throughput at least 0.9 C", [ok(a[s] >= 0.9 * c[s]) for s in stacks])
    print()

if "2x" in parts:
    print("### At 2x capacity, route by route, and the soak")
    print()
    print("| route | goal | measured | verdict |")
    print("|---|---|---|---|")
    for route in ("http", "mq"):
        capacity = report(f"capacity-{route}")
        base, burst = report(f"overload-{route}-base"), report(f"overload-{route}-burst")
        c = accepted(capacity) / capacity["elapsed_s"]
        print(f"| {route} | capacity (closed loop, c = 500): buys served a second | {c:,.0f}/s, "
              f"p99 {capacity['latency_ms']['p99']:.1f} ms, {capacity['outcomes']['http_5xx']:,} "
              f"refused | - |")
        acc = max((r.get("latency_accepted_ms") or {}).get("p99", 0) for r in (base, burst))
        print(f"| {route} | accepted answers' p99 under 1 s at 2x capacity | {acc:.1f} ms | {ok(acc < 1000)} |")
        refused = sum(r["outcomes"]["http_5xx"] + r["outcomes"]["http_4xx"] for r in (base, burst))
        ref_p50 = max((r.get("latency_refused_ms") or {}).get("p50", 0) for r in (base, burst))
        ref_p99 = max((r.get("latency_refused_ms") or {}).get("p99", 0) for r in (base, burst))
        other = sum(r["outcomes"][k] for r in (base, burst) for k in ("timeout", "connect_error", "io_error"))
        sent = base["requests"] + burst["requests"]
        print(f"| {route} | every other answer a fast 503 (no timeout or broken connection; "
              f"refusals' p50 under 10 ms and p99 under 100 ms) | {refused:,} of {sent:,} refused, "
              f"p50 {ref_p50:.1f} ms, p99 {ref_p99:.1f} ms; {other} timeouts or broken connections "
              f"| p50 {ok(other == 0 and ref_p50 < 10)}, p99 {ok(ref_p99 < 100)} |")
        print(f"| {route} | oversold 0, lost 0 | oversold {base['oversold']}, lost {base['lost_orders']} "
              f"| {ok(base['oversold'] == 0 and base['lost_orders'] == 0)} |")
        # Only while the load runs: after it, the load tester reads every buyer from the store
        # (the lost check), which is not the overload's doing.
        at_capacity = procstat.per_name(procstat.load(f"{out}/capacity-{route}.csv"), 0, capacity_s + 1)
        loaded = procstat.per_name(procstat.load(f"{out}/overload-{route}.csv"), 0, base_s + 1)
        worst = max(((loaded[n][2] / at_capacity[n][2], n) for n in loaded if n in at_capacity),
                    default=(0, "-"))
        print(f"| {route} | every service's RSS under 2x its value at capacity | highest ratio "
              f"{worst[0]:.2f}x ({worst[1]}) | {ok(worst[0] < 2)} |")
        # Recovery: the base run's p99, second by second, against its own before the burst;
        # the burst's place on the base run's clock from the two runs' own clocks.
        def clock(report):
            return datetime.fromisoformat(report["started_at"].replace("Z", "+00:00")[:26] + "+00:00")
        start = (clock(burst) - clock(base)).total_seconds()
        # The overload stops when the burst stops sending (its duration), not when its last
        # answer comes back.
        stop = start + burst["duration_s"]
        timeline = base["timeline"]
        before = [s["p99_ms"] for s in timeline if 2 <= s["t_s"] < start and s.get("p99_ms")]
        normal = statistics.median(before) if before else None
        after = [s for s in timeline if s["t_s"] >= stop]
        back = next((s["t_s"] for i, s in enumerate(after)
                     if all((x.get("p99_ms") or 0) <= max(2 * normal, normal + 10)
                            for x in after[i:i + 3])), None) if normal else None
        took = max(0.0, back - stop) if back is not None else None
        shown = (f"{took:.1f} s after the burst ended at {stop:.1f} s (p99 before it {normal:.1f} ms)"
                 if took is not None else "never")
        print(f"| {route} | p99 back to normal within 2 s after the burst | {shown} "
              f"| {ok(took is not None and took <= 2)} |")
        # Not a goal: how much of the latencies above is the load generator's own queue (the
        # machine's cores answering neither the buys nor the refusals in time).
        behind = "; ".join(f"{name} {ms(lag(r, 'p50'))} / {ms(lag(r, 'p99'))}"
                           for name, r in (("base", base), ("burst", burst)))
        print(f"| {route} | sent behind schedule p50 / p99 (the load generator's own lag, inside "
              f"every latency above) | {behind} | - |")
if soak_minutes:
    rows = procstat.load(f"{out}/soak.csv")
    # After the warm-up (the first minute; half of a one-minute soak), until the load ends
    # (the two runs start a second apart).
    end = 60 * soak_minutes
    warmup = 60 if soak_minutes > 1 else 30
    flat = procstat.per_name(rows, warmup, end)
    # A leak is growth: the most any service grew above its size when the warm-up ended.
    # (A service that gives memory back, e.g. nginx, is not leaking.)
    growth, ranges = {}, {}
    for name in flat:
        series = {}
        for t, n, pid, cpu, rss in rows:
            if n == name and warmup <= t <= end:
                series[t] = series.get(t, 0) + rss
        values = [series[t] for t in sorted(series)]
        growth[name] = (max(values) - values[0]) / values[0]
        ranges[name] = (min(values) / 1024, max(values) / 1024)
    name, most = max(growth.items(), key=lambda kv: kv[1])
    errors = sum(report(f"soak-{r}")["errors"] for r in ("http", "mq"))
    sent = sum(report(f"soak-{r}")["requests"] for r in ("http", "mq"))
    print(f"| both | {soak_minutes}-minute soak at half capacity: no error | {errors} errors in "
          f"{sent:,} requests | {ok(errors == 0)} |")
    shown = ", ".join(f"{n} {lo:.1f}-{hi:.1f}" for n, (lo, hi) in sorted(ranges.items()))
    print(f"| both | RSS flat after the first {warmup} s: no service grows more than 10% | most "
          f"growth {100 * most:.1f}% ({name}); MiB ranges: {shown} | {ok(most <= 0.10)} |")
PY

demote() { sed 's/^# /### /' "$1"; }
if [[ -n "$target_wait" ]]; then
    target_shown="$target_wait ms"
else
    target_shown="the front tier's default (200 ms)"
fi
{
    echo "# Overload: admission bounded by time, fast rejection, flat memory"
    echo
    echo "Run of \`scripts/bench-overload.sh$( ((quick)) && echo " --quick") --parts $parts\`" \
        "started $started_at on $machine; load average at start: $load_at_start. Native" \
        "stack: front tier, nginx, 2 backends, RabbitMQ, SQLite; conditional, stock $stock" \
        "(every buy writes); front tier target wait: $target_shown; ceilings" \
        "${FLASHSALE_MAX_IN_FLIGHT_HTTP:-512} (HTTP) and ${FLASHSALE_MAX_IN_FLIGHT_MQ:-512} (MQ)" \
        "in flight per route (front tier) outside the capacity runs, 512 per backend. The load" \
        "generator shares the machine:" \
        "open-loop latencies are timed from each request's intended send time, so they" \
        "include the generator's own lag."
    echo
    echo "## Goals"
    echo
    cat "$out/goals.md"
    if has_part 3x; then
        for stack in ${stacks//,/ }; do
            echo
            echo "## 3x capacity: $stack"
            echo
            echo "Timeline: [3x-$stack-timeline.svg](3x-$stack-timeline.svg)."
            echo
            demote "$out/3x-$stack-capacity.md"
            echo
            demote "$out/3x-$stack.md"
            echo
            if [[ -f "$out/3x-$stack-capacity-after.md" ]]; then
                demote "$out/3x-$stack-capacity-after.md"
                echo
            fi
            echo "CPU and memory of every service during the open loop (sampled every 0.5 s):"
            echo
            python3 "$procstat" window "$out/3x-$stack.csv" 0 "$((overload_s + 1))"
        done
    fi
    if has_part 2x; then
        for route in http mq; do
            echo
            echo "## 2x capacity: /$route/buy (worker batch 64)"
            echo
            echo "Timeline of the steady base load, with the burst marked: [overload-$route-base-timeline.svg](overload-$route-base-timeline.svg)."
            echo
            demote "$out/overload-$route-base.md"
            echo
            demote "$out/overload-$route-burst.md"
            echo
            echo "CPU and memory of every service while the base run's load ran (0-$((base_s + 1)) s; sampled every 0.5 s):"
            echo
            python3 "$procstat" window "$out/overload-$route.csv" 0 "$((base_s + 1))"
            echo
            echo "At capacity:"
            echo
            python3 "$procstat" window "$out/capacity-$route.csv" 0 "$((capacity_s + 1))"
        done
    fi
    if ((soak_minutes > 0)); then
        echo
        echo "## Soak: ${soak_minutes} minutes at half capacity"
        echo
        python3 "$procstat" rss "$out/soak.csv" "$(((soak_minutes > 1) ? 60 : 30))" "$((60 * soak_minutes))"
        echo
        demote "$out/soak-http.md"
        echo
        demote "$out/soak-mq.md"
    fi
} >"$out/summary.md"
say "done: $out/summary.md"
