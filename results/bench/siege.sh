#!/usr/bin/env bash
# Agreement with siege: the same closed-loop load from siege and from loadtest.
# Usage: results/bench/siege.sh URL CONCURRENCY REPS ROUNDS [SIEGE_RC]
# (run from the repository root after `cargo build --release -p loadtest`).
# siege prints times rounded to 10 ms; loadtest prints them to the microsecond.
set -euo pipefail
url=$1; c=$2; r=$3; rounds=${4:-3}; rc=${5:-}
lt=${LOADTEST:-target/release/loadtest}
out=$(mktemp -d)
for i in $(seq 1 "$rounds"); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  s=$(siege ${rc:+-R "$rc"} -c "$c" -r "$r" -q -b "$url" 2>&1 | tr -d '\t ' |
      grep -E '"(transactions|elapsed_time|response_time|transaction_rate|longest_transaction|failed_transactions)"' | tr '\n' ' ')
  echo "round $i load $load siege    $s"
  load=$(cut -d' ' -f1 /proc/loadavg)
  "$lt" run "$url" --no-user-ids -c "$c" -r "$r" -q --out "$out" --label s >/dev/null
  python3 - "$out/s.json" "$i" "$load" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency_ms"]
print(f"round {sys.argv[2]} load {sys.argv[3]} loadtest requests {r['requests']} elapsed_s {r['elapsed_s']} "
      f"trans/sec {r['throughput_rps']:.2f} mean_ms {l['mean']:.2f} longest_s {l['max']/1000:.3f} errors {r['errors']}")
PY
done
rm -rf "$out"
