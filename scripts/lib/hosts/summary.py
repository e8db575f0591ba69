#!/usr/bin/env python3
"""summary.md of scripts/bench-hosts.sh, from the reports in DIR.

    summary.py DIR --started WHEN --machine TEXT --load TEXT --command TEXT

Reads DIR/matrix-{one,hosts}.json, DIR/writes-{one,hosts}.json and their compare tables
(when the matrix ran) and DIR/partition-X.json with partition-X-verdict.json (for each
partition that ran); prints Markdown.
"""

import argparse
import json
import os
import sys
from datetime import datetime, timezone

SCENARIOS = {
    "a": "the request queue's leader host cut off from every host",
    "b": "app1 cut off while its worker holds an unacknowledged batch",
    "c": "db cut off",
    "d": "fe1 cut off from rmq1..3 after the sell-out (gate on)",
    "e": "app1 cut off behind the front tiers' nginx",
}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def rows_by_key(report):
    out = {}
    for row in (report or {}).get("rows", []):
        dims = row.get("dimensions") or {}
        key = (row["route"], row["concurrency"], dims.get("gate"))
        out[key] = row["throughput_rps"]["median"]
    return out


def ratio_table(one, hosts, title):
    one_rows, hosts_rows = rows_by_key(one), rows_by_key(hosts)
    lines = [
        f"**{title}**: trans/sec (median of the runs of a row) across hosts ÷ on one host.",
        "",
        "| route | c | gate | one host | across hosts | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for key in sorted(one_rows):
        if key not in hosts_rows:
            continue
        route, c, gate = key
        a, b = one_rows[key], hosts_rows[key]
        ratio = f"{b / a:.2f}×" if a else "-"
        name = "RabbitMQ RPC (batch 64)" if route == "mq" else "HTTP"
        lines.append(f"| {name} | {c} | {gate} | {a:,.0f} | {b:,.0f} | {ratio} |")
    return "\n".join(lines)


def from_memory(report):
    """Per gate-on step: (route, c, buys the front tiers' gates answered, requests)."""
    out = []
    for step in (report or {}).get("steps", []):
        if (step.get("dimensions") or {}).get("gate") != "on":
            continue
        gate = sum(
            value
            for metrics in (step.get("server_metrics") or {}).values()
            for series, value in (metrics.get("counters") or {}).items()
            if series.startswith("flashsale_frontend_gate_answers_total")
        )
        out.append((step.get("route"), step.get("concurrency"), int(gate), step.get("requests")))
    return out


def seconds(value):
    return "-" if value is None else f"{value:g}"


def full_rate(verdict):
    """The time to full rate, or how close the best second after the heal came."""
    if verdict["full_rate_after_heal_s"] is not None:
        return seconds(verdict["full_rate_after_heal_s"])
    best = verdict.get("best_after_heal")
    return "never" if best is None else f"never (best second: {best:.0%} of before the cut)"


def partition_rows(directory):
    lines = [
        "| scenario | route | cut (s) | error window (s) | errors | full rate after heal (s) "
        "| buyers | lost | oversold | one order per user | answers consistent | goals |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for s, text in SCENARIOS.items():
        report = load(os.path.join(directory, f"partition-{s}.json"))
        verdict = load(os.path.join(directory, f"partition-{s}-verdict.json"))
        if not report or not verdict:
            continue
        one_order = verdict["duplicate_orders"] == 0
        answers = verdict["lost"] + verdict["wrong_order_id"] + verdict["false_sold_out"]
        consistent = "yes" if verdict["consistent"] else f"**no** ({answers} answers disagree)"
        goals = []
        goals.append("window ok" if verdict["goal_error_window"] else "**window missed**")
        goals.append("rate ok" if verdict["goal_full_rate"] else "**rate missed**")
        lines.append(
            f"| {s}. {text} | {report.get('route')} | {seconds(verdict['cut_s'])} "
            f"| {verdict['error_window_s']} | {verdict['errors']:,} "
            f"| {full_rate(verdict)} | {verdict['buyers']:,} "
            f"| {verdict['lost'] + verdict['wrong_order_id']} | {verdict['oversold']} "
            f"| {'yes' if one_order else '**no**'} | {consistent} | {', '.join(goals)} |"
        )
        unknown = verdict["unknown_with_order"] + verdict["unknown_without_order"]
        if unknown:
            notes.append(
                f"- {s}: {unknown:,} buyers got an error (no claim): the store holds an order "
                f"for {verdict['unknown_with_order']:,} of them (asking again answers "
                "`already_ordered` with it)."
            )
        held = os.path.join(directory, f"partition-{s}-held.txt")
        if os.path.exists(held):
            with open(held) as f:
                notes.append(
                    f"- {s}: app1's worker held {f.read().strip()} unacknowledged requests "
                    "when app1 was cut from every host."
                )
    return "\n".join(lines), notes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--started", required=True)
    parser.add_argument("--machine", required=True)
    parser.add_argument("--load", required=True)
    parser.add_argument("--command", required=True)
    args = parser.parse_args()
    d = args.dir

    print("# Many hosts, one sale: the stack across network namespaces, and partitions")
    print()
    print(
        f"Run of `{args.command}` started {args.started} on {args.machine}; load average at "
        f"start: {args.load}. Every host is a network namespace of this one machine, so the "
        "hosts share its cores: the numbers compare the two layouts, not machines."
    )
    one, hosts = load(f"{d}/matrix-one.json"), load(f"{d}/matrix-hosts.json")
    if one and hosts:
        print()
        print("## The matrix: one host and across hosts")
        print()
        w_one, w_hosts = load(f"{d}/writes-one.json"), load(f"{d}/writes-hosts.json")
        if w_one and w_hosts:
            print(ratio_table(w_one, w_hosts, "Every buy writes (stock 1,000,000)"))
            print()
            print(
                "The goal, the batched queue route across hosts at ≥ 0.8× its one-host "
                "throughput, is read on these rows: every buy crosses every tier for as long "
                "as the row runs."
            )
            print()
        print(ratio_table(one, hosts, "Original protocol (stock 100, -r per client)"))
        print()
        print(
            "These rows last about a second each (a few thousand buys), so their ratios "
            "are noisy."
        )
        memory = from_memory(hosts)
        if memory:
            print()
            print(
                "Across hosts, with the gate on, the front tiers answered from memory "
                "(`flashsale_frontend_gate_answers_total` on fe1 and fe2): "
                + "; ".join(
                    f"{route} c = {c}: {gate:,} of {requests:,} buys" for route, c, gate, requests in memory
                )
                + "."
            )
        print()
        print("Side by side, every field: `matrix-one-vs-hosts.md`, `writes-one-vs-hosts.md`.")
    table, notes = partition_rows(d)
    if len(table.splitlines()) > 2:
        print()
        print("## Partitions mid-sale")
        print()
        print(
            "Each run: c = 100 against the edge, the cut about 5 s in, the heal after the "
            "cut's length; timelines with both marked: `partition-X-timeline.svg`. "
            "Lost, oversold and the answers are checked buyer by buyer against the orders "
            "read with psql on db after the heal (`partition-X-verdict.json`). Goals: an "
            "error window no longer than the cut + 5 s, full rate within 5 s of the heal."
        )
        print()
        print(table)
        if notes:
            print()
            print("\n".join(notes))
        gate = os.path.join(d, "partition-d-gate.tsv")
        if os.path.exists(gate):
            print()
            print(gate_story(gate, load(os.path.join(d, "partition-d.json"))))
    return 0


def gate_story(path, report):
    """fe1's gate during scenario d: when it opened and closed, relative to the run."""
    start = None
    if report and report.get("started_at"):
        # RFC 3339 with up to nanoseconds; Python reads microseconds.
        text = report["started_at"].rstrip("Z")
        whole, _, fraction = text.partition(".")
        stamp = datetime.fromisoformat(whole).replace(tzinfo=timezone.utc)
        start = stamp.timestamp() + float(f"0.{fraction or 0}")
    changes, last = [], None
    with open(path) as f:
        next(f, None)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                continue
            state = (parts[1], parts[2])
            if state != last:
                changes.append((float(parts[0]), parts[1], parts[2]))
                last = state
    if not changes:
        return "fe1's gate was not sampled."
    t0 = start if start is not None else changes[0][0]
    steps = ", then ".join(
        f"{state} (event link {link}) at {t - t0:.1f} s" for t, state, link in changes
    )
    marks = ", ".join(f"{m['text']} at {m['t_s']:.1f} s" for m in (report or {}).get("marks", []))
    return (
        f"fe1's gate during d (sampled every 0.5 s, seconds from the run's start): {steps}"
        f" ({marks})."
    )


if __name__ == "__main__":
    sys.exit(main())
