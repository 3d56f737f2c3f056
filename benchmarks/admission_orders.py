"""Do the units of a sharded server let the workers through in the same order?

    python benchmarks/admission_orders.py STORE [--model M] [--strategy ps-sync-join]
        [--skip 2] [--handover | --timeline STEP]

For every stored ok run with a sharded server that recorded its transfers, per direction:
how well the units' orders agree step by step (the mean Kendall tau over every pair of
units: 1 the same order everywhere, 0 unrelated), and when the mean worker was done with
its transfers of a step, as a share of the whole phase (from the first request to the
last transfer's end: a worker through in the same place at every unit is done, on
average, about half-way; one that waits for its last unit, near the end).

Why it matters: behind the semaphore a worker's pull is done when its last unit has let
it through. Where the units draw their orders apart, nearly every worker waits for
nearly the whole phase. The simulator draws the order of pulls that reach a unit at the
same moment anew at each unit (``engine.Admission``); this script measures what the real
server's units did. The first ``--skip`` steps (default 2) are left out: the start.

``--timeline K`` prints instead, for every run, each unit's transfers of step K in the
order they began (L3: a pull to worker 3, P3: worker 3's push; start-end in ms from the
step's first request) and, step by step, the worker whose push reached the most units
last: a synchronous step waits for it, and a worker last step after step is a convoy.

``--handover`` prints instead, for every unit, its shard's megabytes and its median pull
as a share of the shard's time alone on the run's link (``--network``'s rate): a pull's
record ends when the unit's send returned, so a share near 0 says the kernel's send
buffer took the whole shard at once, near 1 or more that it did not before the end.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from itertools import combinations
from pathlib import Path
from statistics import fmean, median
from typing import Any

from distbench.netem.spec import parse_network

Transfer = dict[str, Any]


def kendall_tau(first: dict[int, int], second: dict[int, int]) -> float:
    """Kendall's tau of two rankings (worker -> place) over the workers both hold."""
    common = [w for w in first if w in second]
    agree = disagree = 0
    for x, y in combinations(common, 2):
        sign = (first[x] - first[y]) * (second[x] - second[y])
        agree += sign > 0
        disagree += sign < 0
    return (agree - disagree) / (agree + disagree) if agree + disagree else 1.0


def unit_records(extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Every unit's server record of a sharded run (the first worker's and the others')."""
    records = [extra.get("server")] + [r.get("server") for r in (extra.get("ranks") or {}).values()]
    return [r for r in records if r and r.get("transfers")]


def per_worker(record: dict[str, Any], direction: str) -> dict[int, list[Transfer]]:
    """A unit's transfers in ``direction``, worker by worker, in the order they came."""
    out: dict[int, list[Transfer]] = {}
    for transfer in record["transfers"]:
        if transfer["direction"] == direction:
            out.setdefault(transfer["worker"], []).append(transfer)
    return out


def step_agreement(units: list[dict[int, list[Transfer]]], step: int) -> tuple[list[float], float]:
    """(the tau of every pair of units, the mean worker's done share of the phase) at
    ``step``."""
    places = [
        {w: place for place, w in enumerate(sorted(u, key=lambda w: u[w][step]["start"]))}
        for u in units
    ]
    taus = [kendall_tau(a, b) for a, b in combinations(places, 2)]
    asked = min(t[step]["start"] - t[step]["queued"] for u in units for t in u.values())
    done: dict[int, float] = {}
    for unit in units:
        for worker, transfers in unit.items():
            done[worker] = max(done.get(worker, asked), transfers[step]["end"])
    phase = max(done.values()) - asked
    share = fmean((end - asked) / phase for end in done.values()) if phase > 0 else 0.0
    return taus, share


def handover_shares(record: dict[str, Any], skip: int, rate_bytes_s: float) -> float:
    """A unit's median pull over its shard's time alone at ``rate_bytes_s``."""
    pulls = [t["end"] - t["start"] for t in record["transfers"] if t["direction"] == "pull"]
    workers = len({t["worker"] for t in record["transfers"]})
    alone = 4 * record["elements"] / rate_bytes_s
    return median(pulls[skip * workers :]) / alone


def print_handover(
    name: str, strategy: str, workers: int, extra: dict[str, Any], config: dict[str, Any], skip: int
) -> None:
    rate = parse_network(config["network"]).rate_bit_s if config.get("network") else None
    if not rate:
        return
    shares = sorted(
        (4 * r["elements"] / 1e6, handover_shares(r, skip, rate / 8)) for r in unit_records(extra)
    )
    cells = " ".join(f"{mb:.1f}:{share:.2f}" for mb, share in shares)
    print(f"{name:12} {strategy:13} {workers:3d} {cells}")


def last_pusher_place(record: dict[str, Any], skip: int) -> float | None:
    """Where a unit lets in, step by step, the pull of the worker whose push of the step
    before reached it last (0 first, 1 last), on average; None without two workers."""
    pulls, pushes = per_worker(record, "pull"), per_worker(record, "push")
    if len(pulls) < 2 or set(pulls) != set(pushes):
        return None
    steps = min(min(len(t) for t in pulls.values()), min(len(t) for t in pushes.values()) + 1)
    places = []
    for k in range(max(skip, 1), steps):
        last = max(pushes, key=lambda w: pushes[w][k - 1]["end"])
        order = sorted(pulls, key=lambda w: pulls[w][k]["start"])
        places.append(order.index(last) / (len(order) - 1))
    return fmean(places) if places else None


def print_timeline(
    name: str, strategy: str, workers: int, records: list[dict[str, Any]], step: int
) -> None:
    print(f"{name} {strategy} x{workers}, step {step}:")
    pulls = [per_worker(r, "pull") for r in records]
    pushes = [per_worker(r, "push") for r in records]
    begun = [
        t[step]["start"] - t[step]["queued"] for u in pulls for t in u.values() if len(t) > step
    ]
    if not begun:
        print("  (fewer steps recorded)")
        return
    origin = min(begun)
    for record, unit_pulls, unit_pushes in zip(records, pulls, pushes, strict=True):
        cells = [
            (
                t[step]["start"],
                f"{mark}{w}:{(t[step]['start'] - origin) * 1e3:.0f}"
                f"-{(t[step]['end'] - origin) * 1e3:.0f}",
            )
            for mark, unit in (("L", unit_pulls), ("P", unit_pushes))
            for w, t in unit.items()
            if len(t) > step
        ]
        mb = 4 * record["elements"] / 1e6
        print(f"  unit {record['unit']} ({mb:.1f} MB): " + " ".join(c for _, c in sorted(cells)))
    print("  last pusher by step: " + " ".join(str(w) for w in last_pushers(pushes)))


def last_pushers(units: list[dict[int, list[Transfer]]]) -> list[int]:
    """Step by step, the worker whose push reached the most units last."""
    steps = min(len(t) for u in units for t in u.values())
    lasts = []
    for k in range(steps):
        votes = [max(u, key=lambda w: u[w][k]["end"]) for u in units if len(u) > 1]
        lasts.append(max(set(votes), key=votes.count))
    return lasts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db")
    parser.add_argument("--model", default=None)
    parser.add_argument("--strategy", default=None)
    parser.add_argument("--skip", type=int, default=2, metavar="STEPS")
    parser.add_argument("--handover", action="store_true")
    parser.add_argument("--timeline", type=int, default=None, metavar="STEP")
    args = parser.parse_args()
    if not Path(args.db).is_file():
        print(f"admission_orders: no such store: {args.db}", file=sys.stderr)
        return 2
    con = sqlite3.connect(args.db)
    query = (
        "select model, strategy, workers, extra, config from runs "
        "where status = 'ok' and strategy like 'ps-%' order by model, strategy, workers"
    )
    if args.timeline is not None:
        pass
    elif args.handover:
        print(f"{'model':12} {'strategy':13} {'N':>3} each unit: shard MB:median pull / alone")
    else:
        print(
            f"{'model':12} {'strategy':13} {'N':>3} {'sem':>3} dir   tau   done share  steps"
            "  last pusher's pull place"
        )
    for model, strategy, workers, extra, config in con.execute(query):
        name = model.split(":")[-1]
        if (args.model and name != args.model) or (args.strategy and strategy != args.strategy):
            continue
        settings = json.loads(config)
        records = unit_records(json.loads(extra))
        if settings.get("servers") != "sharded" or len(records) < 3:
            continue
        if args.timeline is not None:
            print_timeline(name, strategy, workers, records, args.timeline)
            continue
        if args.handover:
            print_handover(name, strategy, workers, json.loads(extra), settings, args.skip)
            continue
        semaphore = "yes" if settings.get("ps_semaphore") else "no"
        for direction in ("pull", "push"):
            units = [per_worker(r, direction) for r in records]
            steps = min(len(t) for u in units for t in u.values())
            rows = [step_agreement(units, k) for k in range(args.skip, steps)]
            if not rows:
                continue
            tau = fmean(t for taus, _ in rows for t in taus)
            share = fmean(s for _, s in rows)
            last = [last_pusher_place(r, args.skip) for r in records] if direction == "pull" else []
            known = [place for place in last if place is not None]
            place = f"{fmean(known):26.2f}" if known else ""
            print(
                f"{name:12} {strategy:13} {workers:3d} {semaphore:>3} {direction:4}"
                f" {tau:5.2f} {share:11.2f} {len(rows):6d}{place}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
