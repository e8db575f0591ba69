#!/usr/bin/env bash
# Fairness of every design of the main matrix, measured on the native stack: did the first
# buyers win?
#
#   scripts/bench-fairness.sh [--out DIR] [--no-build] [--repeat K] [--concurrency C]
#                             [-r N] [--quick]
#
# Runs `loadtest matrix` twice over both routes x count-insert and conditional x worker
# batch 1 and 64 x sold-out gate off and on (stock 100, -c C -r N, --repeat K):
#   (a) closed loop, as the main matrix runs (label `closed`);
#   (b) --start-together: every connection warm before the clock starts, every client's
#       first buy released at one instant (label `together`);
# then writes DIR/summary.md (machine, load, fcfs_precision, inversions and the winners'
# median send rank per design and mode, the spread of the first sends) and renders
# DIR/together.html to DIR/together.png with headless Chromium, so the report can be seen
# without a browser.
#
#   --out DIR         where the reports go (default results/fairness)
#   --no-build        use the release binaries already built
#   --repeat K        runs per row (default 3)
#   --concurrency C   clients (default 500, the main matrix's largest)
#   -r N              requests per client (default 10, as the main matrix)
#   --quick           a short run for trying the script (c = 100, -r 3, 1 run a row, batch 1
#                     and gate off only): not for results
#   LOADTEST          (env) the load tester to run (default target/release/loadtest)
#
# The front tier's admission time bound is off, as in the main matrix (scripts/bench.sh): a
# refused first sender could not win, so refusals would be counted as unfairness of the
# design when they are the admission's choice.
#
# Uses the stack's fixed ports (scripts/stack.sh): run it under the stack lock on a quiet
# machine. Fairness is judged on the generator's own clock: the send order of this one load
# machine, not the order in which the server saw the requests.
set -euo pipefail

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bench_name=bench-fairness
# shellcheck source=scripts/lib/bench-common.sh
source scripts/lib/bench-common.sh

out=results/fairness build=1 repeat=3 concurrency=500 reps=10 quick=0
while (($#)); do
    case "$1" in
        --out) (($# >= 2)) || usage; out="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --repeat) (($# >= 2)) || usage; repeat="$2"; shift 2 ;;
        --concurrency) (($# >= 2)) || usage; concurrency="$2"; shift 2 ;;
        -r) (($# >= 2)) || usage; reps="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "bench-fairness: unknown argument: $1" >&2; usage ;;
    esac
done
command -v python3 >/dev/null || die "python3 is needed to read the reports"
chromium=/usr/bin/chromium
batch=1,64 gate=off,on
if ((quick)); then
    concurrency=100 reps=3 repeat=1 batch=1 gate=off
fi

if ((build)); then build_release; fi
[[ -x "$loadtest" ]] || die "$loadtest not found"
mkdir -p "$out"
started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_at_start="$(cut -d' ' -f1-3 /proc/loadavg)"

FLASHSALE_TARGET_WAIT_MS=0 start_stack --strategy conditional
for mode in closed together; do
    extra=()
    [[ "$mode" == together ]] && extra=(--start-together)
    say "($mode) c = $concurrency, -r $reps, batch $batch, gate $gate, --repeat $repeat"
    lt matrix "$target" --admin-token "$FLASHSALE_ADMIN_TOKEN" --out "$out" --label "$mode" \
        --concurrency "$concurrency" -r "$reps" --stock 100 --routes http,mq \
        --strategies count-insert,conditional --batch "$batch" --gate "$gate" \
        --reconfigure "$PWD/scripts/stack.sh --reconfigure" --repeat "$repeat" \
        --check lost==0 "${extra[@]}" -q
done
stop_stack

# The HTML report as a picture: a fresh profile, and no background network (there is none).
png="$out/together.png"
out_abs="$(cd "$out" && pwd)"
if [[ -x "$chromium" ]]; then
    profile="$(mktemp -d)"
    if timeout 120 "$chromium" --headless --no-sandbox --disable-gpu \
        --disable-background-networking --disable-component-update --no-first-run \
        --disable-sync --disable-quic --user-data-dir="$profile" --hide-scrollbars \
        --screenshot="$out_abs/together.png" --window-size=1700,6000 \
        "file://$out_abs/together.html" \
        >/dev/null 2>&1; then
        say "rendered $png"
    else
        say "warning: chromium could not render $out/together.html"
        png=""
    fi
    rm -rf "$profile"
else
    say "warning: $chromium not found: no PNG of the HTML report"
    png=""
fi

# --- Summary ------------------------------------------------------------------------------
table="$(python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def rows(name):
    return {(r["route"], r.get("strategy"), r["dimensions"].get("batch"), r["dimensions"].get("gate")): r
            for r in json.load(open(f"{out}/{name}.json"))["rows"]}
closed, together = rows("closed"), rows("together")
def cell(r, key, d=2):
    s = r.get(key)
    if not s:
        return "n/a"
    if r["runs"] < 2:
        return f"{s['median']:.{d}f}"
    return f"{s['median']:.{d}f} ({s['min']:.{d}f}-{s['max']:.{d}f})"
route = {"http": "HTTP", "mq": "RabbitMQ RPC"}
print("| route | strategy | batch | gate | closed: fcfs_precision | closed: inversions "
      "| together: fcfs_precision | together: inversions | together: winners' median rank "
      "| together: first sends spread (ms) | oversold (worst) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for key, c in closed.items():
    t = together.get(key, {})
    oversold = max(x.get("oversold") or 0 for x in (c, t) if x)
    print(f"| {route.get(key[0], key[0])} | {key[1]} | {key[2]} | {key[3]} | {cell(c, 'fcfs_precision')} "
          f"| {cell(c, 'inversions')} | {cell(t, 'fcfs_precision')} | {cell(t, 'inversions')} "
          f"| {cell(t, 'winners_median_send_rank', 1)} | {cell(t, 'first_send_spread_ms', 3)} | {oversold} |")
PY
)"
{
    echo "# Fairness: did the first buyers win?"
    echo
    echo "Run of \`scripts/bench-fairness.sh$( ((quick)) && echo " --quick")\` started $started_at" \
        "on $(machine_line); load average at start: $load_at_start. The load generator, the" \
        "front tier, nginx, 2 backends, the worker and RabbitMQ share the machine; the store is" \
        "the embedded SQLite file; the front tier's admission time bound is off, as in the main" \
        "matrix. Stock 100, c = $concurrency, -r $reps, $repeat run(s) a row" \
        "(median, min-max); \`closed\`: the clients start as the clock starts on connections" \
        "just opened; \`together\`: \`--start-together\`."
    echo
    echo "$table"
    echo
    echo "- \`fcfs_precision\`: the share of the 100 winners among the 100 buyers who sent" \
        "first (1 = first come, first served). \`inversions\`: the share of winner-loser pairs" \
        "in which the loser sent first (0 = perfect order, 0.5 = a lottery); with -r > 1 most" \
        "losers sent long after the sell-out, which pulls it towards 0: read \`fcfs_precision\`" \
        "first. The winners' median send rank is about 50 under first come, first served."
    echo "- Send order is this load generator's monotonic clock, taken just before each request" \
        "is written; the network, the kernel's accept queue, nginx and the front tier lie" \
        "between it and the order in which the store decides."
    echo "- Where each design decides the order: the HTTP route lets up to 2 backends x 512" \
        "buys race in the store (SQLite takes one writer at a time, in whatever order the" \
        "backends' connections get the lock); the RabbitMQ route puts every buy in one FIFO" \
        "queue that one worker consumes (batch 1: one at a time; batch 64: in arrival order" \
        "within each batch); the gate only answers after the store has sold out, so it" \
        "changes who is told \`sold_out\` faster, not who wins."
    echo
    echo "## Closed loop"
    echo
    sed 's/^# /### /' "$out/closed.md"
    echo
    echo "## Start together"
    echo
    sed 's/^# /### /' "$out/together.md"
    if [[ -n "$png" ]]; then
        echo
        echo "The start-together report (\`together.html\`) as rendered by headless Chromium:"
        echo
        echo "![together.html](together.png)"
    fi
} >"$out/summary.md"
say "wrote $out/summary.md"
