#!/usr/bin/env bash
# PostgreSQL as the store, next to SQLite, in one run on the native stack:
#
#   scripts/bench-postgres.sh [--out DIR] [--no-build] [--quick]
#
#   (a) the original matrix (both routes; c = 100, 300, 500; -r 10; stock 100; strategies
#       count-insert, conditional, row-lock; worker batch 1, gate off) on SQLite, then the
#       same on PostgreSQL (scripts/stack.sh --reconfigure --store postgres: a fresh
#       database), side by side with `loadtest compare`;
#   (b) every buy writes, on PostgreSQL (stock 1,000,000; c = 100 and 500; 10 s a row):
#       HTTP row-lock, HTTP conditional, and the queue (row-lock) with batch 1 and batch 64,
#       all deciding on one hot sale row;
#   (c) what limits each row of (b): the same settings again with the CPU of every service,
#       of the PostgreSQL processes serving the store and of the load generator sampled from
#       /proc, and what the store's connections were waiting on sampled from
#       pg_stat_activity (a row lock, or the WAL flush) every 0.2 s;
#   (d) the goal row alone, where its time goes: HTTP conditional, stock 100, -r 10, at the
#       highest c, SQLite and PostgreSQL alternating on fresh stacks, 3 rounds: trans/sec, how long the sale took to sell its stock (first to last
#       order, from the store), and the CPU per answer of every process, for the run and for
#       a run after sell-out (--sold-out-first: sold-out answers only).
#
#   --out DIR    where the reports go (default results/postgres)
#   --no-build   use the release binaries already built
#   --quick      a short run for trying the script (c = 100 only, 3 s rows, 1 round of (d)):
#                not for results
#   LOADTEST         (env) the load tester (default target/release/loadtest)
#   FLASHSALE_PG_URL (env) the PostgreSQL server (default postgres://postgres@127.0.0.1:5432)
#
# Every part runs with the front tier's admission time bound off (FLASHSALE_TARGET_WAIT_MS=0):
# every answer is the store's decision, none a refusal.
# Writes DIR/summary.md (machine, date, PostgreSQL settings, every table, the goals met or
# missed) next to the reports. synchronous_commit and fsync stay as the server has them (on:
# an `ordered` answer must survive a crash); the summary records them. Uses the stack's fixed
# ports: run it alone (flock /tmp/flashsale-stack.lock) on a quiet machine.
set -euo pipefail

usage() { sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bench_name=bench-postgres
# shellcheck source=scripts/lib/bench-common.sh
source scripts/lib/bench-common.sh

out=results/postgres build=1 quick=0
while (($#)); do
    case "$1" in
        --out) (($# >= 2)) || usage; out="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --quick) quick=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "bench-postgres: unknown argument: $1" >&2; usage ;;
    esac
done
command -v python3 >/dev/null || die "python3 is needed to read the reports"
command -v psql >/dev/null || die "psql is needed (Debian: apt-get install -y postgresql-client)"
if ((quick)); then
    concurrency=100 writes_concurrency=100 writes=3s rounds=1
else
    concurrency=100,300,500 writes_concurrency=100,500 writes=10s rounds=3
fi
pg_server="${FLASHSALE_PG_URL:-postgres://postgres@127.0.0.1:5432}"
pg_server="${pg_server%/}"

if ((build)); then build_release; fi
[[ -x "$loadtest" ]] || die "$loadtest not found"
mkdir -p "$out"
reconfigure="$PWD/scripts/stack.sh --reconfigure"
started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_at_start="$(cut -d' ' -f1-3 /proc/loadavg)"
pg_settings="$(psql -X -At -d "$pg_server/postgres" -c "SELECT 'PostgreSQL ' ||
    current_setting('server_version') || ', synchronous_commit=' ||
    current_setting('synchronous_commit') || ', fsync=' || current_setting('fsync') ||
    ', max_connections=' || current_setting('max_connections')")" \
    || die "PostgreSQL at $pg_server does not answer"

admin=(--admin-token "$FLASHSALE_ADMIN_TOKEN")

# Capacity comparisons, as the experiment: every answer is the store's decision, none a
# refusal of the front tier's admission time bound (its refusals would count as
# transactions; scripts/bench-overload.sh measures it).
export FLASHSALE_TARGET_WAIT_MS=0
start_stack --store sqlite

say "(a) the original matrix on SQLite"
lt matrix "$target" "${admin[@]}" --out "$out" --label original-sqlite \
    --concurrency "$concurrency" -r 10 --stock 100 \
    --strategies count-insert,conditional,row-lock --check lost==0 -q
say "(a) the original matrix on PostgreSQL"
scripts/stack.sh --reconfigure --store postgres
lt matrix "$target" "${admin[@]}" --out "$out" --label original-postgres \
    --concurrency "$concurrency" -r 10 --stock 100 \
    --strategies count-insert,conditional,row-lock --check lost==0 -q
lt compare "$out/original-sqlite.json" "$out/original-postgres.json" >"$out/original-compare.md"

say "(b) every buy writes on PostgreSQL: stock 1,000,000, c = $writes_concurrency, $writes"
lt matrix "$target" "${admin[@]}" --out "$out" --label writes-http \
    --concurrency "$writes_concurrency" -t "$writes" --stock 1000000 --routes http \
    --strategies row-lock,conditional --check oversold==0 --check lost==0 -q
lt matrix "$target" "${admin[@]}" --out "$out" --label writes-mq \
    --concurrency "$writes_concurrency" -t "$writes" --stock 1000000 --routes mq \
    --strategies row-lock --batch 1,64 --reconfigure "$reconfigure" \
    --check oversold==0 --check lost==0 -q

# (c) Each setting of (b) again, sampled: CPU per process, and the store's waits.
database="flashsale_stack_$stack_pid"
limits="$out/limits.md"
{
    echo "| setting | trans/sec | CPU, % of one core, per process (sampled from /proc) |" \
        "store connections: active / waiting for a lock / waiting on the WAL or I/O (means) |"
    echo "|---|---|---|---|"
} >"$limits"

# What the stack database's connections wait on, one line per 0.2 s (psql's \watch).
waits_query="SELECT extract(epoch FROM clock_timestamp()),
       count(*) FILTER (WHERE state = 'active'),
       count(*) FILTER (WHERE wait_event_type = 'Lock'),
       count(*) FILTER (WHERE wait_event_type = 'IO' OR wait_event LIKE 'WAL%')
  FROM pg_stat_activity
 WHERE datname = '$database' AND pid <> pg_backend_pid()
\\watch 0.2"

# The PostgreSQL processes a row's load lands on: the store's connections and the WAL writer.
pg_processes() {
    psql -X -At -d "$pg_server/postgres" -c "SELECT CASE WHEN datname = '$database'
        THEN 'postgres-connections' ELSE 'postgres-' || replace(backend_type, ' ', '-') END
        || '=' || pid FROM pg_stat_activity
        WHERE datname = '$database' OR backend_type IN ('walwriter', 'checkpointer')"
}

sample_interval=0.2
# limit_run LABEL BATCH ROUTE STRATEGY C: reconfigure, run with everything sampled, summarize.
limit_run() {
    local label="$1" batch="$2" route="$3" strategy="$4" c="$5"
    FLASHSALE_BATCH="$batch" scripts/stack.sh --reconfigure
    local samples="$out/limits-$label.csv" waits="$out/limits-$label-waits.csv"
    local run_pid waits_pid status=0 cpu rps wait_means
    env -u FLASHSALE_ADMIN_TOKEN "$loadtest" run "$target/$route/buy" --label "limits-$label" \
        --out "$out" -q "${admin[@]}" --strategy "$strategy" --stock 1000000 -c "$c" \
        -t "$writes" >/dev/null &
    run_pid=$!
    # The pool opens its connections under the first buys: look for them a moment later.
    sleep 1
    # shellcheck disable=SC2046 # one NAME=PID word each
    start_sampling "$samples" "loadtest=$run_pid" $(pg_processes)
    psql -X -At -F, -d "$pg_server/postgres" <<<"$waits_query" >"$waits" 2>/dev/null &
    waits_pid=$!
    wait "$run_pid" || status=$?
    kill -TERM "$waits_pid" 2>/dev/null || true
    wait "$waits_pid" 2>/dev/null || true
    stop_sampling
    ((status == 0 || status == 3)) || die "loadtest run $label failed (exit $status)"
    cpu="$(cpu_cells "$samples")"
    rps="$(report_rps "$out/limits-$label.json")"
    wait_means="$(python3 - "$waits" <<'PY'
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) == 4 and r[0][:1].isdigit()]
if not rows:
    print("no samples")
else:
    mean = lambda i: sum(float(r[i]) for r in rows) / len(rows)
    print(f"{mean(1):.1f} / {mean(2):.1f} / {mean(3):.1f} ({len(rows)} samples)")
PY
)"
    echo "| $label | $rps | $cpu | $wait_means |" >>"$limits"
}
say "(c) what limits each row of (b)"
for c in ${writes_concurrency//,/ }; do
    limit_run "http-row-lock-c$c" 1 http row-lock "$c"
    limit_run "http-conditional-c$c" 1 http conditional "$c"
    limit_run "mq-row-lock-b1-c$c" 1 mq row-lock "$c"
    limit_run "mq-row-lock-b64-c$c" 64 mq row-lock "$c"
done
stop_stack

# (d) The goal row alone, on fresh stacks with admission by time off.
goal_c="${concurrency##*,}"
goal="$out/goal-row.md"
{
    echo "| store | round | run | trans/sec | 5xx | sold its stock in (ms) | CPU µs per answer, per process (sampled from /proc) |"
    echo "|---|---|---|---|---|---|---|"
} >"$goal"
# How long the current sale took from its first order to its last (ms), from the store.
selling_ms() {
    if [[ "$1" == postgres ]]; then
        psql -X -At -d "$pg_server/$database" -c "SELECT round(1000 * extract(epoch FROM
            max(created_at) - min(created_at))) FROM orders
            WHERE generation = (SELECT generation FROM sale WHERE id = 1)"
    else
        python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(
            "SELECT round((julianday(max(created_at)) - julianday(min(created_at))) * 86400000)"
            " FROM orders").fetchone()[0])' .stack/flashsale.db
    fi
}
# goal_run STORE ROUND KIND [LOADTEST OPTIONS...]: one run of the goal row, sampled.
goal_run() {
    local store="$1" round="$2" kind="$3" label run_pid status=0 answers selling=""
    shift 3
    label="goal-$store-$kind-$round"
    env -u FLASHSALE_ADMIN_TOKEN "$loadtest" run "$target/http/buy" --label "$label" \
        --out "$out" -q "${admin[@]}" --strategy conditional --stock 100 -c "$goal_c" -r 10 \
        "$@" >/dev/null &
    run_pid=$!
    # shellcheck disable=SC2046 # one NAME=PID word each
    start_sampling "$out/$label.csv" "loadtest=$run_pid" $([[ "$store" == postgres ]] && pg_processes)
    wait "$run_pid" || status=$?
    stop_sampling
    ((status == 0 || status == 3)) || die "loadtest run $label failed (exit $status)"
    [[ "$kind" == run ]] && selling="$(selling_ms "$store")"
    read -r answers errors < <(python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))
print(r["responses"], r["outcomes"]["http_5xx"])' "$out/$label.json")
    echo "| $store | $round | $kind | $(report_rps "$out/$label.json") | $errors | $selling" \
        "| $(python3 "$procstat" per-answer "$out/$label.csv" "$answers") |" >>"$goal"
}
say "(d) the goal row alone (conditional, HTTP, c = $goal_c), admission by time off, $rounds round(s)"
sample_interval=0.1
for ((round = 1; round <= rounds; round++)); do
    for store in sqlite postgres; do
        start_stack --store "$store" --strategy conditional
        database="flashsale_stack_$stack_pid"
        # Every pooled connection open before the sampling looks for them.
        lt run "$target/http/buy" "${admin[@]}" --out "$out/warm-up" --label warm-up -q \
            --strategy conditional --stock 100 -c "$goal_c" -r 2 >/dev/null
        goal_run "$store" "$round" run
        goal_run "$store" "$round" sold-out --sold-out-first
        stop_stack
    done
done
rm -rf "$out/warm-up"

# --- Summary: the tables, and each goal from the reports ---------------------------------
goals="$(python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
sys.path.insert(0, "scripts/lib")
from matrix_rows import pick, reader, value, verdict
rows = reader(out)

print("| goal | measured | verdict |")
print("|---|---|---|")
sqlite, pg = rows("original-sqlite"), rows("original-postgres")
c = max(r["concurrency"] for r in pg)
on_pg = value(pick(pg, route="http", strategy="conditional", c=c)["throughput_rps"])
on_sqlite = value(pick(sqlite, route="http", strategy="conditional", c=c)["throughput_rps"])
print(f"| (a) conditional over HTTP at c = {c}, PostgreSQL vs SQLite "
      f"| {on_pg:,.0f} vs {on_sqlite:,.0f} trans/sec | {verdict(on_pg / on_sqlite, 0.7)} |")
naive = [r for r in pg if r["route"] == "http" and r.get("strategy") == "count-insert"]
oversold = [f"c = {r['concurrency']}: {value(r.get('oversold') or 0):.0f}" for r in naive]
print(f"| (a) count-insert over HTTP on PostgreSQL still oversells | oversold {', '.join(oversold)} "
      f"| {'met' if any(value(r.get('oversold') or 0) > 0 for r in naive) else 'missed'} |")
locked = [r for r in sqlite + pg if r.get("strategy") == "row-lock"]
bad = [r["label"] for r in locked if value(r.get("oversold") or 0) or value(r.get("lost_orders") or 0)]
print(f"| (a) row-lock oversold 0 and lost 0 in every row, both stores | {len(locked)} rows "
      f"| {'met' if not bad else 'missed: ' + ', '.join(bad)} |")
lost = [r["label"] for r in sqlite + pg if value(r.get("lost_orders") or 0)]
print(f"| (a) lost 0 in every row | {len(sqlite) + len(pg)} rows "
      f"| {'met' if not lost else 'missed: ' + ', '.join(lost)} |")

runs = {}
for line in open(f"{out}/goal-row.md"):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 7 and cells[2] == "run" and cells[1].isdigit():
        runs.setdefault(int(cells[1]), {})[cells[0]] = float(cells[3])
ratios = sorted(r["postgres"] / r["sqlite"] for r in runs.values() if len(r) == 2)
if ratios:
    median = ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1:][:2]) / 2
    shown = ", ".join(f"{x:.2f}" for x in ratios)
    print(f"| (d) the same row alone, admission by time off, PostgreSQL vs SQLite, median of "
          f"{len(ratios)} round(s) back to back | {shown} | {verdict(median, 0.7)} |")

http, mq = rows("writes-http"), rows("writes-mq")
for c in sorted({r["concurrency"] for r in http}):
    row_lock = value(pick(http, strategy="row-lock", c=c)["throughput_rps"])
    batched = value(pick(mq, c=c, batch=64)["throughput_rps"])
    print(f"| (b) every buy writes, c = {c}: the queue with batch 64 vs HTTP row-lock, "
          f"decisions/s on one hot row | {batched:,.0f} vs {row_lock:,.0f} "
          f"| {verdict(batched / row_lock, 5)} |")
PY
)"
demote() { sed 's/^# /### /' "$1"; }
{
    echo "# PostgreSQL as the store, next to SQLite"
    echo
    echo "Run of \`scripts/bench-postgres.sh$( ((quick)) && echo " --quick")\` started $started_at" \
        "on $(machine_line), $pg_settings; load average at start: $load_at_start. The load" \
        "generator, the front tier, nginx, 2 backends, the worker, RabbitMQ and the PostgreSQL" \
        "server share the machine. Each PostgreSQL run uses a fresh database the stack creates" \
        "and drops."
    echo
    echo "## Goals"
    echo
    echo "$goals"
    echo
    echo "## (a) The original matrix, SQLite and PostgreSQL side by side"
    echo
    echo "\`loadtest compare original-sqlite.json original-postgres.json\`:"
    echo
    cat "$out/original-compare.md"
    echo
    echo "### SQLite"
    echo
    demote "$out/original-sqlite.md"
    echo
    echo "### PostgreSQL"
    echo
    demote "$out/original-postgres.md"
    echo
    echo "## (b) Every buy writes, on PostgreSQL (stock 1,000,000, $writes a row)"
    echo
    demote "$out/writes-http.md"
    echo
    demote "$out/writes-mq.md"
    echo
    echo "## (c) What limits each row of (b)"
    echo
    echo "Each setting run again for $writes, with the CPU time of every service, of the" \
        "PostgreSQL processes serving the stack's database (its connections together, the WAL" \
        "writer, the checkpointer) and of the load generator read from /proc every 0.2 s (100%" \
        "= one core; the machine has $(nproc)), and the store's connections sampled from" \
        "pg_stat_activity: how many were active, how many of those waited for a lock (the sale" \
        "row's) and how many on the WAL flush or other I/O."
    echo
    cat "$limits"
    echo
    echo "## (d) The goal row alone, where its time goes"
    echo
    echo "HTTP \`conditional\`, stock 100, c = $goal_c, -r 10, as in (a) with admission by time" \
        "off (\`FLASHSALE_TARGET_WAIT_MS=0\`, as in the whole script), three rounds with" \
        "SQLite and PostgreSQL alternating on fresh stacks." \
        "\"sold its stock in\": first to last order of the sale, from the store's timestamps;" \
        "the rest of the run is sold-out answers. \"sold-out\" runs start after the stock is" \
        "sold (\`--sold-out-first\`). CPU per answer: each process's CPU time, read from" \
        "/proc every 0.1 s over the whole run (reset and settling included), over the answers."
    echo
    cat "$goal"
} >"$out/summary.md"
say "done: $out/summary.md"
