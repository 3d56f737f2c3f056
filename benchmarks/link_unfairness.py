"""What-if: transfers that share a link unequally, as TCP flows do.

    python benchmarks/link_unfairness.py emulated.db [--unfairness 0,0.05,0.1] [--seeds 10]

The simulator's links share their rate exactly equally among the transfers in flight, so
transfers that start together end together and workers that start together stay in a
convoy until their compute jitter breaks it. Plain TCP flows through the emulated
network's fair queues do not end together (docs/network.md: 8 flows from one host to 8
hosts end between 0.93 and 1.00 of the last), and a server's own records show a run's
first convoy breaking up that way (``benchmarks/server_transfers.py``). ``Links.unfairness``
weights each transfer's share by a draw from ``[1 - u, 1 + u]``; nothing in the profile or
the two-host link probe measures ``u``, so no prediction uses it, and this script only
shows how much it would matter.

For every stored ok parameter-server run with emulated compute: the measured step (as
``validate`` compares it) and, for each ``u``, the simulator's replay of the run as
``validate`` makes it (its warm-up and steps from a common start, the mean of ``--seeds``
simulations) with its error; then the median and largest |error| per ``u``, and what
each ``u`` does to 8 equal transfers started together on one link: the first one's end
over the last one's, the mean over 200 draws (plain TCP's in docs/network.md).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from statistics import fmean

import simpy

from async_seeds import replayable  # a sibling benchmark: run as python benchmarks/...
from distbench.config import RunConfig
from distbench.predict.simulated import sim_spec
from distbench.simulator import SimSpec, simulate
from distbench.simulator.links import FairLink
from distbench.store.db import open_store
from distbench.store.result import RunResult


def stored_ps_runs(db: str) -> list[RunResult] | None:
    """Every stored ok ps-* run of ``db``; ``None`` (and a line on stderr) when there is
    no such store (opening one would create it empty)."""
    if not Path(db).is_file():
        print(f"link_unfairness: no such store: {db}", file=sys.stderr)
        return None
    store = open_store(db)
    try:
        return [r for r in store.query(status="ok") if r.strategy.startswith("ps-")]
    finally:
        store.close()


def replay_step(spec: SimSpec, unfairness: float, seeds: int) -> float:
    links = replace(spec.links, unfairness=unfairness)
    return fmean(simulate(replace(spec, links=links, seed=seed)).step_time for seed in range(seeds))


def first_over_last(unfairness: float, flows: int = 8, draws: int = 200) -> float:
    """Equal transfers started together on one link: the first end over the last."""
    rng = random.Random(1)
    ratios = []
    for _ in range(draws):
        env = simpy.Environment()
        link = FairLink(env, rate=1.0)
        ends: list[float] = []
        for _ in range(flows):
            weight = rng.uniform(1 - unfairness, 1 + unfairness)
            env.process(timed_transfer(env, link, weight, ends))
        env.run()
        ratios.append(min(ends) / max(ends))
    return fmean(ratios)


def timed_transfer(
    env: simpy.Environment, link: FairLink, weight: float, ends: list[float]
) -> Generator[simpy.Event, None, None]:
    yield link.transfer(1.0, weight=weight)
    ends.append(env.now)


def variant(cfg: RunConfig) -> str:
    return (
        cfg.strategy
        + (f" {cfg.servers}" if cfg.servers != "central" else "")
        + (" sem" if cfg.ps_semaphore else "")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db")
    parser.add_argument("--unfairness", default="0,0.05,0.1")
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    try:
        levels = [float(u) for u in args.unfairness.split(",")]
        for u in levels:
            if not 0.0 <= u < 1.0:
                raise ValueError(u)
    except ValueError:
        print(
            f"link_unfairness: --unfairness takes values in [0, 1), got {args.unfairness!r}",
            file=sys.stderr,
        )
        return 2
    rows = stored_ps_runs(args.db)
    if rows is None:
        return 2
    print(
        f"{'model':12} {'strategy':24} {'N':>3} {'measured':>9}"
        + "".join(f" {'u=' + str(u):>15}" for u in levels)
        + "   (ms, error)"
    )
    errors: list[list[float]] = [[] for _ in levels]
    for row in rows:
        found = replayable(args.db, row)
        if found is None:
            continue
        cfg, case, measured, profile = found
        spec = sim_spec(case, profile, max(1, case.steps), warmup=max(0, case.warmup))[0]
        cells = []
        for u, errs in zip(levels, errors, strict=True):
            step = replay_step(spec, u, args.seeds)
            errs.append(step / measured - 1)
            cells.append(f" {step * 1e3:8.1f} {step / measured - 1:+6.1%}")
        print(
            f"{cfg.model.split(':')[-1][:12]:12} {variant(cfg):24} {cfg.workers:3}"
            f" {measured * 1e3:9.1f}" + "".join(cells)
        )
    for u, errs in zip(levels, errors, strict=True):
        if errs:
            size = [abs(e) for e in errs]
            print(
                f"u={u}: {len(errs)} runs, median |error| {statistics.median(size):.1%},"
                f" max {max(size):.1%}; 8 flows started together end at"
                f" {first_over_last(u):.2f} of the last"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
