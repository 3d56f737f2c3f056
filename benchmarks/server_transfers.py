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
``--handoffs``: for asynchronous runs behind the semaphore, how the push turn passes from
one worker to the next: the median gap from a push's last byte to the next push's go, the
median time from a push's last byte to the end of the update of its gradient, and the next
go's start after that update's end (from the server's update records in the run's
directory, ``rank<N>.jsonl``; ms). A next go that starts about as the last update ends
waits for it; one that starts as the last push ends does not.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sqlite3
import sys
from pathlib import Path
from statistics import median
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
    parser.add_argument("--handoffs", action="store_true")
    args = parser.parse_args()
    if not Path(args.db).is_file():
        print(f"server_transfers: no such store: {args.db}", file=sys.stderr)
        return 2
    con = sqlite3.connect(args.db)
    query = (
        "select model, strategy, workers, extra, config, run_dir from runs "
        "where status = 'ok' and strategy like 'ps-%'"
    )
    if args.handoffs:
        return print_handoffs(con.execute(query).fetchall(), args.model)
    print(
        f"{'model':12} {'strategy':13} {'N':>3} dir  busy  in flight  mean s  MB/s busy"
        "  first N start within ms"
    )
    for model, strategy, workers, extra, config, _ in con.execute(query):
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


def updates_of(run_dir: str, workers: int) -> list[tuple[float, float, int]]:
    """(start, end, worker) of every update the central server (rank ``workers``) recorded
    in ``run_dir``; [] where the directory is gone."""
    path = Path(run_dir) / f"rank{workers}.jsonl"
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        (r["t"], r["t"] + r["step_time"], int(r["worker"]))
        for r in records
        if r.get("kind") == "step" and r.get("worker") is not None
    ]


def handoffs(
    pushes: list[dict[str, Any]], updates: list[tuple[float, float, int]]
) -> list[tuple[float, float, float]]:
    """Per push followed by another: (gap to the next push's start, the end of this push's
    update after its last byte, the next push's start after that update's end), seconds."""
    rows = []
    ordered = sorted(pushes, key=lambda t: t["start"])
    for push, after in itertools.pairwise(ordered):
        own = [u for u in updates if u[2] == int(push["worker"]) and u[0] >= push["end"] - 1e-4]
        if not own:
            continue
        update_end = min(own)[1]
        rows.append(
            (after["start"] - push["end"], update_end - push["end"], after["start"] - update_end)
        )
    return rows


def print_handoffs(runs: list[tuple[Any, ...]], only: str | None) -> int:
    print(f"{'model':12} {'N':>3} pushes  gap ms  update ends ms  next go after it ms")
    for model, strategy, workers, extra, config, run_dir in runs:
        name = model.split(":")[-1]
        settings = json.loads(config)
        if (only and name != only) or strategy != "ps-async" or not settings.get("ps_semaphore"):
            continue
        if settings.get("servers") != "central":
            continue
        server = server_record(json.loads(extra), workers) or {}
        pushes = [t for t in server.get("transfers", []) if t["direction"] == "push"]
        rows = handoffs(pushes, updates_of(run_dir or "", workers))
        if not rows:
            print(f"{name[:12]:12} {workers:3} no update records (run directory gone?)")
            continue
        gap, update_end, after = (median(r[i] for r in rows) * 1e3 for i in range(3))
        print(
            f"{name[:12]:12} {workers:3} {len(rows):6} {gap:7.2f} {update_end:15.2f} {after:20.2f}"
        )
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
