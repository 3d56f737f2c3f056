"""Does a sharded server's pull request wait behind a reply on its connection?

    python benchmarks/pull_requests.py STORE [--model M] [--workers N]

A unit and its worker are one process, and gloo keeps one connection per pair of ranks:
worker i's pull request to unit j crosses the connection from i to j, which also carries
unit i's replies to worker j. For every stored ok asynchronous sharded run, from the
transfers the units recorded: each pull of worker i from unit j, how long after worker
i's push (its last unit's) the pull began, split by whether a reply of unit i to worker
j was in flight on that connection when the push ended — and, where one was, how many
pulls began only once that reply had ended. A pull record ends when its bytes are handed
to the socket, so replies smaller than the socket's buffer look shorter than they were
on the wire: at 100 Mbit/s a squeezenet shard is handed over at once, and the split
there says little.
"""

from __future__ import annotations

import argparse
import sys
from statistics import median
from typing import Any

from distbench.store import open_store

Transfer = dict[str, Any]


def unit_transfers(extra: dict[str, Any]) -> dict[int, list[Transfer]]:
    """Every unit's recorded transfers (unit 0's are the run's own ``server`` record)."""
    units = {0: (extra.get("server") or {}).get("transfers") or []}
    for rank, record in (extra.get("ranks") or {}).items():
        units[int(rank)] = ((record or {}).get("server") or {}).get("transfers") or []
    return units


def pull_delays(units: dict[int, list[Transfer]]) -> list[tuple[float, float | None]]:
    """(ms from the worker's push end to the pull's start, ms from the push end to the end
    of the reply in flight on the request's connection, or None) for every pull."""
    pushes = [t for transfers in units.values() for t in transfers if t["direction"] == "push"]
    rows = []
    for unit, transfers in units.items():
        for pull in (t for t in transfers if t["direction"] == "pull"):
            worker = pull["worker"]
            ends = [
                p["end"]
                for p in pushes
                if p["worker"] == worker and pull["start"] - 2.0 < p["end"] <= pull["start"]
            ]
            if not ends:
                continue
            pushed = max(ends)
            replies = [
                r["end"]
                for r in units.get(worker, [])
                if r["direction"] == "pull" and r["worker"] == unit
                if r["start"] < pushed < r["end"]
            ]
            held = (max(replies) - pushed) * 1e3 if replies else None
            rows.append(((pull["start"] - pushed) * 1e3, held))
    return rows


def report(rows: list[tuple[float, float | None]]) -> list[str]:
    free = [began for began, held in rows if held is None]
    held = [(began, end) for began, end in rows if end is not None]
    lines = [f"{len(rows)} pulls; {len(held)} with a reply in flight on the request's connection"]
    if free:
        lines.append(f"  none in flight: began {median(free):.0f} ms after the push (median)")
    if held:
        waited = sum(1 for began, end in held if began >= end - 5.0)
        lines.append(
            f"  one in flight: began {median(b for b, _ in held):.0f} ms after the push, the"
            f" reply ended {median(e for _, e in held):.0f} ms after it (medians);"
            f" {waited} of {len(held)} began no earlier than 5 ms before it ended"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db")
    parser.add_argument("--model", default=None, help="only models whose name contains this")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    store = open_store(args.db)
    try:
        runs = store.query(strategy="ps-async", status="ok")
    finally:
        store.close()
    for run in runs:
        if run.config.get("servers") != "sharded":
            continue
        if args.model and args.model not in run.model:
            continue
        if args.workers and run.workers != args.workers:
            continue
        step = f"{run.step_time_median * 1e3:.0f} ms" if run.step_time_median else "-"
        print(f"{run.run_id} {run.model} x{run.workers}: step {step}")
        for line in report(pull_delays(unit_transfers(run.extra))):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
