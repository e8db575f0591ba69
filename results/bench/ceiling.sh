#!/usr/bin/env bash
# Generator ceiling: wrk and loadtest, interleaved, against nginx answering 200.
# Usage: results/bench/ceiling.sh URL ROUNDS SECONDS   (run from the repository root,
# after `cargo build --release -p loadtest`). Prints one line per run.
set -euo pipefail
url=${1:-http://127.0.0.1:18080/}
rounds=${2:-5}
secs=${3:-4}
lt=${LOADTEST:-target/release/loadtest}
out=$(mktemp -d)
for i in $(seq 1 "$rounds"); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  w=$( { /usr/bin/time -f "cpu %U+%S" wrk -t2 -c100 -d"${secs}s" --latency "$url"; } 2>&1 )
  rps=$(grep Requests/sec <<<"$w" | awk '{print $2}')
  p50=$(grep -E '^ +50%' <<<"$w" | awk '{print $2}')
  p99=$(grep -E '^ +99%' <<<"$w" | awk '{print $2}')
  avg=$(grep -E '^ +Latency +[0-9]' <<<"$w" | awk '{print $2}')
  cpu=$(grep '^cpu' <<<"$w" | awk '{print $2}')
  echo "round $i load $load wrk      rps $rps mean $avg p50 $p50 p99 $p99 cpu(s) $cpu"
  load=$(cut -d' ' -f1 /proc/loadavg)
  l=$( { /usr/bin/time -f "cpu %U+%S" "$lt" run "$url" --no-user-ids -c 100 -t "${secs}s" -q --out "$out" --label lt; } 2>&1 )
  j="$out/lt.json"
  rps=$(python3 -c "import json;r=json.load(open('$j'));print(r['throughput_rps'])")
  lat=$(python3 -c "import json;r=json.load(open('$j'))['latency_ms'];print('mean %.3fms p50 %.3fms p99 %.3fms' % (r['mean'], r['p50'], r['p99']))")
  cpu=$(grep '^cpu' <<<"$l" | awk '{print $2}')
  echo "round $i load $load loadtest rps $rps $lat cpu(s) $cpu"
done
rm -rf "$out"
