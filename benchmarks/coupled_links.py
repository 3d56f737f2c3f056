"""How much does it matter that the simulator moves a message on each of its links on its
own? A sharded server's push phase, replayed from the units' records.

    python benchmarks/coupled_links.py STORE [--model M] [--skip 3]

The simulator's links (``simulator.links.FairLink``) are processor-sharing servers, one
per direction of a host's link, and a message crosses two of them (the sender's uplink,
the receiver's downlink) independently: it ends when both have carried its bytes, each
at its own share. Where every transfer starts at once this is what max-min fair rates on
both links give too. Where they start apart it is not: a worker that pushes alone sends
to every unit at once, so each of its pushes gets a fraction of its uplink, yet on the
receiving unit's downlink the same push is served at the whole rate, and the downlink is
counted as free for the pushes that come later.

For every stored ok synchronous sharded run without the semaphore, at its largest unit,
step by step (the first ``--skip`` steps left out): the push phase as measured (from the
first push's start to the last one's end, the unit's own records; and beside it the rest
of the step there: from the unit's first pull to the first push reaching it, and from the
last push's end to its next pull) and the same phase
from a fluid model of the pushes alone, every worker sending each unit its shard from
the moment its push reached the largest unit (the unit's own worker: the median
moment), at the rate of the profile's largest link transfer (as the simulator's links):
per-link processor sharing (the simulator's) and max-min fair rates over both links of
each push. It prints the medians over steps. The fluid phases leave out everything but
the pushes (the next pulls from units already updated share the same downlinks), so
both are below the measurement; the gap between them is what coupling the links would
add.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from admission_orders import per_worker, unit_records  # a sibling benchmark
from distbench.profiling.profiles import find_profile

#: A rate this close to a link's remaining capacity saturates it (float rounding).
EPSILON = 1e-9


@dataclass
class Push:
    """One worker's push to one unit: its links and the bytes left."""

    up: int
    down: int
    left: float
    start: float
    end: float = 0.0


def _processor_sharing(pushes: list[Push], rate: float) -> None:
    """Each link shares its rate equally among the pushes on it, each link on its own; a
    push ends when both its links have carried it (the simulator's links)."""
    for side in ("up", "down"):
        by_link: dict[int, list[Push]] = {}
        for push in pushes:
            by_link.setdefault(getattr(push, side), []).append(push)
        for on_link in by_link.values():
            ends = _one_link(on_link, rate)
            for push, end in zip(on_link, ends, strict=True):
                push.end = max(push.end, end)


def _one_link(pushes: list[Push], rate: float) -> list[float]:
    """End times of ``pushes`` (their starts and sizes) through one processor-sharing link."""
    left = {i: p.left for i, p in enumerate(pushes)}
    order = sorted(left, key=lambda i: pushes[i].start)
    active: set[int] = set()
    ends = [0.0] * len(pushes)
    now = 0.0
    while order or active:
        arrival = pushes[order[0]].start if order else float("inf")
        share = rate / len(active) if active else 0.0
        finish = now + min(left[i] for i in active) / share if active else float("inf")
        until = min(arrival, finish)
        for i in list(active):
            left[i] -= share * (until - now)
            if left[i] <= EPSILON * pushes[i].left:
                active.discard(i)
                ends[i] = until
        now = until
        while order and pushes[order[0]].start <= now:
            active.add(order.pop(0))
    return ends


def _max_min_rates(active: list[Push], rate: float) -> list[float]:
    """Max-min fair rates of ``active`` over their two links (progressive filling)."""
    rates = [0.0] * len(active)
    room: dict[tuple[str, int], float] = {}
    for push in active:
        room[("up", push.up)] = rate
        room[("down", push.down)] = rate
    growing = set(range(len(active)))
    while growing:
        count: dict[tuple[str, int], int] = {}
        for i in growing:
            for link in (("up", active[i].up), ("down", active[i].down)):
                count[link] = count.get(link, 0) + 1
        step = min(room[link] / n for link, n in count.items())
        for i in growing:
            rates[i] += step
        for link, n in count.items():
            room[link] -= step * n
        full = {link for link in count if room[link] <= EPSILON * rate}
        growing = {
            i
            for i in growing
            if ("up", active[i].up) not in full and ("down", active[i].down) not in full
        }
    return rates


def _max_min(pushes: list[Push], rate: float) -> None:
    """Every push at its max-min fair rate over both its links, recomputed at each start
    and end."""
    waiting = sorted(pushes, key=lambda p: p.start)
    active: list[Push] = []
    now = 0.0
    while waiting or active:
        rates = _max_min_rates(active, rate)
        arrival = waiting[0].start if waiting else float("inf")
        finish = min((p.left / r for p, r in zip(active, rates, strict=True)), default=float("inf"))
        until = min(arrival, now + finish)
        for push, r in zip(active, rates, strict=True):
            push.left -= r * (until - now)
            if push.left <= EPSILON * max(1.0, r):
                push.end = until
        active = [p for p in active if p.left > EPSILON * max(1.0, rate)]
        now = until
        while waiting and waiting[0].start <= now:
            active.append(waiting.pop(0))


def push_phase(
    shards: list[float], offsets: list[float], unit: int, rate: float, coupled: bool
) -> float:
    """Seconds until ``unit`` has every push, each worker pushing from its offset."""
    n = len(shards)
    pushes = [
        Push(up=w, down=j, left=shards[j], start=offsets[w])
        for w in range(n)
        for j in range(n)
        if j != w and shards[j] > 0
    ]
    (_max_min if coupled else _processor_sharing)(pushes, rate)
    return max(p.end for p in pushes if p.down == unit)


def link_rate(store: str, model: str) -> float | None:
    """The simulator's link rate: the profile's largest point-to-point transfer over its time."""
    profile = find_profile(store, model)
    if profile is None:
        return None
    sizes, seconds = profile.p2p.sizes, profile.p2p.seconds
    return sizes[-1] / seconds[-1] if sizes and seconds else None


def replay_run(extra: dict[str, Any], rate: float, skip: int) -> list[float] | None:
    """Medians over steps at the run's largest unit: the push phase measured, per-link and
    max-min; and, measured, from its first pull to the first push reaching it and from the
    last push's end to its next pull."""
    records = unit_records(extra)
    if not records:
        return None
    workers = len(records)
    shards = [0.0] * workers
    for record in records:
        shards[record["unit"]] = 4.0 * record["elements"]
    largest = max(records, key=lambda r: r["elements"])
    pushes, pulls = per_worker(largest, "push"), per_worker(largest, "pull")
    steps = min(min(len(t) for t in pushes.values()), min(len(t) for t in pulls.values()) - 1)
    phases = []
    for k in range(skip, steps):
        starts = {w: t[k]["start"] for w, t in pushes.items()}
        first = min(starts.values())
        offsets = [starts.get(w, 0.0) - first for w in range(workers)]
        offsets[largest["unit"]] = median(s - first for s in starts.values())
        measured = max(t[k]["end"] for t in pushes.values()) - first
        unit = largest["unit"]
        pulled = min(t[k]["start"] for t in pulls.values())
        next_pull = min(t[k + 1]["start"] for t in pulls.values())
        phases.append(
            (
                measured,
                push_phase(shards, offsets, unit, rate, coupled=False),
                push_phase(shards, offsets, unit, rate, coupled=True),
                first - pulled,
                next_pull - first - measured,
            )
        )
    if not phases:
        return None
    return [median(p[i] for p in phases) for i in range(5)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store")
    parser.add_argument("--model")
    parser.add_argument("--skip", type=int, default=3)
    args = parser.parse_args()
    if not Path(args.store).exists():
        print(f"coupled_links: no store at {args.store}", file=sys.stderr)
        return 2
    query = (
        "select model, strategy, workers, extra, config from runs where status='ok'"
        " and strategy in ('ps-sync-join', 'ps-sync-split') order by model, workers, created_at"
    )
    print("model        strategy        N  at the largest unit, median ms over steps:")
    print("                                push phase: measured  per-link (simulator)  max-min;")
    print("                                measured: its first pull to the first push in,")
    print("                                the last push in to its next pull")
    with sqlite3.connect(args.store) as db:
        rows = db.execute(query).fetchall()
    for model, strategy, workers, extra, config in rows:
        cfg = json.loads(config)
        if args.model and model != args.model:
            continue
        if cfg.get("servers") != "sharded" or cfg.get("ps_semaphore"):
            continue
        rate = link_rate(args.store, model)
        replay = replay_run(json.loads(extra), rate, args.skip) if rate else None
        if replay is None:
            continue
        measured, per_link, max_min, pull_to_push, gap = (s * 1e3 for s in replay)
        print(
            f"{model:12} {strategy:14} {workers:3d} {measured:21.0f} {per_link:21.0f}"
            f" {max_min:8.0f}; {pull_to_push:.0f}, {gap:.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
