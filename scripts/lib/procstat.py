#!/usr/bin/env python3
"""CPU time and resident memory of the stack's processes, sampled from /proc, for the
benchmark scripts: which process a row's load lands on (what limits it), and whether a
service's memory stays flat.

  procstat.py sample OUT.csv INTERVAL_S NAME=PID...   sample until SIGTERM/SIGINT
  procstat.py window OUT.csv FROM_S TO_S              per name: CPU used (% of one core) and
                                                      RSS (first, max, last) between two
                                                      offsets of the sampling's clock
  procstat.py rss OUT.csv FROM_S TO_S                 RSS only, as a Markdown table
  procstat.py per-answer OUT.csv ANSWERS              CPU microseconds per answer of each name
                                                      over the whole sampling (those above
                                                      0.5), and their total, on one line

A NAME may be given several pids (nginx's workers): their CPU and RSS add up. The CSV has
one row per sample and pid: t_s, name, pid, cpu_s (user + system, cumulative), rss_kb.
"""

import csv
import os
import signal
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def read(pid):
    """(cpu seconds, rss kB) of a live pid, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may hold spaces: fields start after its closing parenthesis.
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICKS
        rss = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        return cpu, rss
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def sample(out, interval, targets):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    started = time.monotonic()
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["t_s", "name", "pid", "cpu_s", "rss_kb"])
        while not stop:
            t = time.monotonic() - started
            for name, pid in targets:
                got = read(pid)
                if got:
                    writer.writerow([f"{t:.3f}", name, pid, f"{got[0]:.2f}", got[1]])
            f.flush()
            time.sleep(interval)


def load(out):
    with open(out) as f:
        return [
            (float(r["t_s"]), r["name"], r["pid"], float(r["cpu_s"]), int(r["rss_kb"]))
            for r in csv.DictReader(f)
        ]


def per_name(rows, start, end):
    """name -> (cpu % of one core over the window, first, max, last RSS in MiB)."""
    names = {}
    for t, name, pid, cpu, rss in rows:
        if start <= t <= end:
            names.setdefault(name, {}).setdefault(pid, []).append((t, cpu, rss))
    result = {}
    for name, pids in names.items():
        cpu = 0.0
        span = 0.0
        by_time = {}
        for samples in pids.values():
            cpu += samples[-1][1] - samples[0][1]
            span = max(span, samples[-1][0] - samples[0][0])
            for t, _, rss in samples:
                by_time[t] = by_time.get(t, 0) + rss
        rss = [by_time[t] / 1024 for t in sorted(by_time)]
        result[name] = (100 * cpu / span if span else 0.0, rss[0], max(rss), rss[-1])
    return result


def window(out, start, end):
    print("| process | CPU (% of one core) | RSS MiB first / max / last |")
    print("|---|---|---|")
    for name, (cpu, first, peak, last) in sorted(per_name(load(out), start, end).items()):
        print(f"| {name} | {cpu:.0f} | {first:.1f} / {peak:.1f} / {last:.1f} |")


def rss(out, start, end):
    print("| process | RSS MiB first / max / last |")
    print("|---|---|")
    for name, (_, first, peak, last) in sorted(per_name(load(out), start, end).items()):
        print(f"| {name} | {first:.1f} / {peak:.1f} / {last:.1f} |")


def per_answer(out, answers):
    used = {}
    for _, name, pid, cpu, _ in load(out):
        first, _ = used.setdefault(name, {}).get(pid, (cpu, cpu))
        used[name][pid] = (first, cpu)
    micros = {
        name: 1e6 * sum(last - first for first, last in pids.values()) / answers
        for name, pids in used.items()
    }
    cells = [f"{name} {us:.0f}" for name, us in sorted(micros.items()) if us >= 0.5]
    print(", ".join(cells + [f"total {sum(micros.values()):.0f}"]))


def main(argv):
    if len(argv) >= 4 and argv[1] == "sample":
        targets = [tuple(t.split("=", 1)) for t in argv[4:]]
        sample(argv[2], float(argv[3]), targets)
    elif len(argv) == 4 and argv[1] == "per-answer":
        per_answer(argv[2], int(argv[3]))
    elif len(argv) == 5 and argv[1] in ("window", "rss"):
        {"window": window, "rss": rss}[argv[1]](argv[2], float(argv[3]), float(argv[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
