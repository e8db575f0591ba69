#!/usr/bin/env python3
"""A partition run's verdict: every buyer's answer against the store, and the timeline.

    verdict.py REPORT.json BUYERS.jsonl ORDERS.tsv [--cut-s S] [--out VERDICT.json]

REPORT.json is `loadtest run`'s report (timeline, marks, stock), BUYERS.jsonl its
`--buyers-out` file (one buyer a line), ORDERS.tsv the store's orders of the sale, read
after the heal: `user_id<TAB>order_id` a line (scripts/bench-hosts.sh reads them with psql
on the db host, not through the services). Prints one JSON object (also to --out):

- buyers, answers (by outcome), store_orders, stock, oversold (orders beyond the stock);
- duplicate_buyers: users that appear more than once in the buyers file (every buyer must
  be answered exactly once); duplicate_orders: users the store holds more than once;
- lost: buyers answered ordered or already_ordered whose order the store does not hold
  (wrong_order_id: holds another one); false_sold_out: buyers answered sold_out whose order
  the store holds; unknown_with_order / unknown_without_order: buyers whose answer was an
  error (5xx, timeout, ...: no claim either way), split by what the store decided;
  orders_without_buyer: orders of users that never asked (must not exist; the load tester's
  own warm-up and sell-out buyers, ids from 2^40 on, are not counted);
- consistent: every answer that claims something agrees with the store, nothing oversold,
  one order per user, every buyer answered once;
- error_window_s: first to last second with an error (0 without errors), and those seconds;
- cut_at_s, heal_at_s: the first marks whose text starts with "cut" and "heal";
- baseline_rps: median answers per second before the cut (second 0 excluded); answers that
  are errors do not count in any rate (a fast 502 is not service);
- full_rate_after_heal_s: from the heal to the end of the first second after it with at
  least 90% of the baseline (0 when no second after the heal fell below; null when none
  reached it before the run ended; the run's last, partial second never counts);
  best_after_heal: the best second after the heal, as a fraction of the baseline (on a busy
  machine the rate drifts, and a miss by a little says more about the machine);
- goals: error_window_s <= cut duration + 5 (cut duration: --cut-s, else heal - cut), and
  full_rate_after_heal_s <= 5.
Exit code 0 when consistent and both goals are met, 1 otherwise, 2 on bad input.
"""

import argparse
import json
import statistics
import sys
from collections import Counter

CLAIMS = {"ordered", "already_ordered"}
# The load tester's warm-up (2^40 on) and sell-out (2^41 on) buyers are not in the buyers file.
LOADTEST_OWN_USERS = 1 << 40
ERRORS = ("http_4xx", "http_5xx", "timeout", "connect_error", "io_error")


def read_buyers(path):
    buyers = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                buyers.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"verdict: {path}:{n}: not JSON: {e}")
    return buyers


def read_orders(path):
    orders = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].isdigit():
                sys.exit(f"verdict: {path}:{n}: expected user_id<TAB>order_id, got {line!r}")
            orders.append((int(parts[0]), parts[1]))
    return orders


def answers_against_store(buyers, orders):
    held = {}
    duplicate_orders = 0
    for user, order_id in orders:
        if user in held:
            duplicate_orders += 1
        held[user] = order_id
    seen = Counter(b["user"] for b in buyers)
    out = Counter()
    for b in buyers:
        user, outcome = b["user"], b["outcome"]
        if outcome in CLAIMS:
            if user not in held:
                out["lost"] += 1
            elif b.get("order_id") != held[user]:
                out["wrong_order_id"] += 1
        elif outcome == "sold_out":
            if user in held:
                out["false_sold_out"] += 1
        elif user in held:
            out["unknown_with_order"] += 1
        else:
            out["unknown_without_order"] += 1
    return {
        "buyers": len(buyers),
        "answers": dict(Counter(b["outcome"] for b in buyers)),
        "store_orders": len(orders),
        "duplicate_buyers": sum(1 for n in seen.values() if n > 1),
        "duplicate_orders": duplicate_orders,
        "lost": out["lost"],
        "wrong_order_id": out["wrong_order_id"],
        "false_sold_out": out["false_sold_out"],
        "unknown_with_order": out["unknown_with_order"],
        "unknown_without_order": out["unknown_without_order"],
        "orders_without_buyer": sum(
            1 for user in held if user not in seen and user < LOADTEST_OWN_USERS
        ),
    }


def first_mark(marks, word):
    for m in marks:
        if m["text"].lower().startswith(word):
            return m["t_s"]
    return None


def timeline_verdict(report):
    timeline = report.get("timeline") or []
    errors = lambda s: sum(s.get("errors", {}).get(k, 0) for k in ERRORS)
    # The rate that counts is of answers: fast errors (a 502 at once) are not service.
    served = lambda s: s["requests"] - errors(s)
    failing = [s["t_s"] for s in timeline if errors(s) > 0]
    marks = report.get("marks") or []
    cut, heal = first_mark(marks, "cut"), first_mark(marks, "heal")
    # The last second is cut short by the end of the run: never a fair rate.
    whole = timeline[:-1] if timeline else []
    before = [served(s) for s in whole if 1 <= s["t_s"] and (cut is None or s["t_s"] + 1 <= cut)]
    baseline = statistics.median(before) if before else None
    full_rate = best_after_heal = None
    if baseline and cut is not None and heal is not None:
        full = lambda s: served(s) >= 0.9 * baseline
        after_heal = [s for s in whole if s["t_s"] + 1 > heal]
        if after_heal:
            best_after_heal = round(max(served(s) for s in after_heal) / baseline, 3)
        if all(full(s) for s in after_heal):
            full_rate = 0.0  # full rate again before the heal (or never lost)
        else:
            first = next((s for s in after_heal if full(s)), None)
            if first is not None:
                full_rate = round(max(0.0, first["t_s"] + 1 - heal), 3)
    return {
        "error_window_s": (max(failing) - min(failing) + 1) if failing else 0,
        "error_seconds": failing,
        "errors": sum(errors(s) for s in timeline),
        "cut_at_s": cut,
        "heal_at_s": heal,
        "baseline_rps": baseline,
        "full_rate_after_heal_s": full_rate,
        "best_after_heal": best_after_heal,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report")
    parser.add_argument("buyers")
    parser.add_argument("orders")
    parser.add_argument("--cut-s", type=float, help="how long the cut lasted (default: heal - cut)")
    parser.add_argument("--out")
    args = parser.parse_args()
    try:
        with open(args.report) as f:
            report = json.load(f)
        buyers = read_buyers(args.buyers)
        orders = read_orders(args.orders)
    except (OSError, json.JSONDecodeError) as e:
        print(f"verdict: {e}", file=sys.stderr)
        return 2

    verdict = answers_against_store(buyers, orders)
    stock = report.get("stock")
    verdict["stock"] = stock
    verdict["oversold"] = max(0, len(orders) - stock) if isinstance(stock, int) else None
    verdict.update(timeline_verdict(report))
    verdict["consistent"] = (
        verdict["lost"] == 0
        and verdict["wrong_order_id"] == 0
        and verdict["false_sold_out"] == 0
        and verdict["duplicate_buyers"] == 0
        and verdict["duplicate_orders"] == 0
        and verdict["orders_without_buyer"] == 0
        and not verdict["oversold"]
    )
    cut_s = args.cut_s
    if cut_s is None and verdict["cut_at_s"] is not None and verdict["heal_at_s"] is not None:
        cut_s = verdict["heal_at_s"] - verdict["cut_at_s"]
    verdict["cut_s"] = cut_s
    verdict["goal_error_window"] = cut_s is not None and verdict["error_window_s"] <= cut_s + 5
    full = verdict["full_rate_after_heal_s"]
    verdict["goal_full_rate"] = full is not None and full <= 5
    text = json.dumps(verdict, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    ok = verdict["consistent"] and verdict["goal_error_window"] and verdict["goal_full_rate"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
