"""Rows of `loadtest matrix` reports, for the benchmark scripts' summaries.

The scripts run from the repository's root and import this with
`sys.path.insert(0, "scripts/lib")`.
"""
import json


def reader(out):
    """A function that reads the rows of the report `<out>/<name>.json`."""
    def rows(name):
        with open(f"{out}/{name}.json") as report:
            return json.load(report)["rows"]
    return rows


def value(v):
    """A cell's median when the row was repeated, else the cell."""
    return v["median"] if isinstance(v, dict) else v


def pick(rows, **want):
    """The first row whose route, strategy, concurrency (`c`) and stack dimensions match."""
    for row in rows:
        dims = dict(row.get("dimensions", {}), route=row["route"],
                    strategy=row.get("strategy"), c=row["concurrency"])
        if all(str(dims.get(k)) == str(v) for k, v in want.items()):
            return row
    raise SystemExit(f"no row {want}")


def verdict(ratio, goal):
    """`1.23x (met, goal >= 1.0x)`."""
    return f"{ratio:.2f}x ({'met' if ratio >= goal else 'missed'}, goal >= {goal}x)"
