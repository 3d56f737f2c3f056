"""How a central parameter server's link was used, from the transfers the server recorded.

    python benchmarks/server_transfers.py emulated.db [--model resnet18] [--list K]

For every stored ok ps-* run with a central server, per direction (``pull``: the server's
outgoing link, ``push``: its incoming one): the share of the run some transfer was in
flight, the mean number in flight while any was (all N at once: the workers move in a
convoy), the mean transfer's seconds, and the bytes moved over the time some transfer was
in flight, and how far apart the first N of them started (ms: a convoy that starts
together breaks up by such head starts). A pull's record ends when its bytes are handed
to the socket, so for transfers smaller than the socket's buffer the pull rate overstates
the link; a push's record ends when the last byte arrived. ``--list K`` also prints each
run's first ``K`` transfers: direction, worker, start and end in ms after the first began.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any


def link_use(intervals: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(busy seconds, mean transfers in flight while busy, span) of ``intervals``."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    busy = area = 0.0
    in_flight, last = 0, events[0][0]
    for moment, change in events:
        if in_flight > 0:
            busy += moment - last
            area += in_flight * (moment - last)
        in_flight, last = in_flight + change, moment
    return busy, area / busy if busy > 0 else 0.0, events[-1][0] - events[0][0]


def server_record(extra: dict[str, Any], workers: int) -> dict[str, Any] | None:
    unit = (extra.get("ranks") or {}).get(str(workers)) or {}
    return unit.get("server")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db")
    parser.add_argument("--model", default=None)
    parser.add_argument("--list", type=int, default=0, metavar="K")
    args = parser.parse_args()
    if not Path(args.db).is_file():
        print(f"server_transfers: no such store: {args.db}", file=sys.stderr)
        return 2
    con = sqlite3.connect(args.db)
    query = (
        "select model, strategy, workers, extra, config from runs "
        "where status = 'ok' and strategy like 'ps-%'"
    )
    print(
        f"{'model':12} {'strategy':13} {'N':>3} dir  busy  in flight  mean s  MB/s busy"
        "  first N start within ms"
    )
    for model, strategy, workers, extra, config in con.execute(query):
        name = model.split(":")[-1]
        if args.model and name != args.model:
            continue
        if json.loads(config).get("servers") != "central":
            continue
        server = server_record(json.loads(extra), workers)
        if not server or not server.get("transfers"):
            continue
        size = 4 * int(server["elements"])
        for direction in ("pull", "push"):
            spans = [
                (t["start"], t["end"]) for t in server["transfers"] if t["direction"] == direction
            ]
            if not spans:
                continue
            busy, in_flight, span = link_use(spans)
            mean = sum(b - a for a, b in spans) / len(spans)
            rate = len(spans) * size / busy / 1e6 if busy > 0 else float("nan")
            first = sorted(a for a, _ in spans)[:workers]
            print(
                f"{name[:12]:12} {strategy:13} {workers:3} {direction:4} {busy / span:5.2f}"
                f" {in_flight:9.2f} {mean:7.3f} {rate:10.1f} {(first[-1] - first[0]) * 1e3:9.0f}"
            )
        if args.list > 0:
            print_first(server["transfers"], args.list)
    return 0


def print_first(transfers: list[dict[str, Any]], count: int) -> None:
    """The first ``count`` transfers by start, in ms after the first began."""
    ordered = sorted(transfers, key=lambda t: t["start"])[:count]
    origin = ordered[0]["start"]
    for t in ordered:
        print(
            f"    {t['direction']:4} worker {int(t['worker']):3}"
            f" {(t['start'] - origin) * 1e3:8.0f} -> {(t['end'] - origin) * 1e3:8.0f} ms"
        )


if __name__ == "__main__":
    sys.exit(main())
